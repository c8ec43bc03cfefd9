/**
 * Events committed before the logical relay's slot existed are not in its
 * stream; the relay publishes them from a snapshot when it creates the slot,
 * and repeats that if it stopped before finishing (the marker stays pending).
 * Also: the default slot name is per database, so two databases on one
 * server can both run the relay.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LogicalRelay } from '../../src/relay/logical-relay';
import { relaySlotName } from '../../src/relay';
import { TopicReader } from '../helpers/kafka';
import { testStack } from '../helpers/stack';
import { Accounts, commitEvents, relayFixture, until, type RelayFixture } from '../helpers/relay';

let f: RelayFixture;
let reader: TopicReader;
let relay: LogicalRelay | undefined;
let slotName: string;

const eventIds = () => new Set(reader.messages.map((m) => (m.value as { eventId?: string })?.eventId).filter(Boolean));

test.before(async () => {
  f = await relayFixture('relay_backfill', 'relay');
  reader = await TopicReader.open(testStack().kafka.brokers, f.topic);
  slotName = relaySlotName(f.config.cdc.slot, f.config.db.url);
});

test.after(async () => {
  await relay?.stop().catch(() => undefined);
  await reader?.close();
  if (f) {
    await until(async () => (await f.pg.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NULL', [slotName])).rowCount === 1, 10000, 'slot released').catch(() => undefined);
    await f.pg.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]).catch(() => undefined);
    await f.release();
  }
});

test('the default slot is named after the database and differs between databases', () => {
  assert.is(slotName, `banking_es_relay_${f.db.name.toLowerCase()}`);
  assert.is.not(relaySlotName('', 'postgres://u:p@h:5432/other_db'), slotName);
  assert.is(relaySlotName('', 'postgres://u:p@h:5432/Bank-Prod'), 'banking_es_relay_bank_prod');
  assert.is(relaySlotName('my_slot', 'postgres://u:p@h:5432/x'), 'my_slot');
});

test('events written before the slot existed are published, then new ones stream', async () => {
  const acc = new Accounts(10);
  const before: string[] = [];
  for (let t = 0; t < 30; t++) {
    const evs = acc.ids.filter((_, i) => (t + i) % 2 === 0).map((id) => acc.next(id));
    await commitEvents(f.pg, evs);
    before.push(...evs.map((e) => e.eventId));
  }
  relay = new LogicalRelay(f.ctx, { slot: slotName, lagPollMs: 200, feedbackMs: 200 });
  await relay.start();
  try {
    const after: string[] = [];
    for (let t = 0; t < 10; t++) {
      const evs = acc.ids.map((id) => acc.next(id));
      await commitEvents(f.pg, evs);
      after.push(...evs.map((e) => e.eventId));
    }
    await until(() => { const got = eventIds(); return [...before, ...after].every((id) => got.has(id)); }, 30000, 'every event, old and new, on the topic');
    const marker = await f.pg.query('SELECT position FROM relay_checkpoints WHERE relay = $1', [`logical-backfill:${slotName}`]);
    assert.is(Number(marker.rows[0].position), 1, 'backfill marked complete');
    // per account, the first occurrence of each version arrives in order
    for (const a of acc.ids) {
      const versions = reader.messages.filter((m) => m.key === a).map((m) => (m.value as { version: number }).version);
      let max = 0;
      for (const v of versions) { assert.ok(v <= max + 1, `account ${a}: ${versions.join(',')}`); if (v === max + 1) max = v; }
      assert.is(max, acc.version(a));
    }
  } finally {
    await relay.stop();
    relay = undefined;
  }
});

test('a backfill that did not finish is repeated at the next start', async () => {
  await f.pg.query("UPDATE relay_checkpoints SET position = 0 WHERE relay = $1", [`logical-backfill:${slotName}`]);
  const total = Number((await f.pg.query('SELECT count(*) FROM events')).rows[0].count);
  const seenBefore = reader.messages.length;
  relay = new LogicalRelay(f.ctx, { slot: slotName, lagPollMs: 200, feedbackMs: 200 });
  await relay.start();
  await until(() => reader.messages.length - seenBefore >= total, 30000, 'the whole table published again');
  const marker = await f.pg.query('SELECT position FROM relay_checkpoints WHERE relay = $1', [`logical-backfill:${slotName}`]);
  assert.is(Number(marker.rows[0].position), 1);
});

test.run();
