/**
 * The projection pipeline end to end (docs/architecture.md §1, §2.4, §4) against real
 * Postgres and the Kafka mock cluster: events written to the event store
 * and produced to the events topic, the read models compared row by row
 * with the fold of the event store. One database and one events topic for
 * the file; every test adds its own accounts and compares everything.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ProjectionFixture, type OutEvent } from '../../helpers/projections';
import { generateHistory, type HistoryEvent } from '../../helpers/event-history';
import type { RunningProjector } from '../../helpers/projector';
import { waitForExit } from '../../helpers/stack';
import { encodeEnvelope, type EventEnvelope } from '../../../src/codec/envelope';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../../src/paths';
import { jsonbText } from '../../../bench/lib/events';

let f: ProjectionFixture;
let p: RunningProjector | undefined;

test.before(async () => {
  f = await ProjectionFixture.create('projections');
  p = await f.startInProcess();
});

test.after(async () => {
  await f?.release();
});

async function assertConsistent(what: string): Promise<void> {
  const diffs = await f.diffWithEventStore();
  assert.equal(diffs.slice(0, 5), [], `${what}: ${diffs.length} differences`);
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await p!.metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

const historyA = generateHistory({ accounts: 200, commands: 5000, seed: 11 });

test('(a) the read models equal the fold of the event store: every account row, every transaction row', async () => {
  await f.insertEvents(historyA.map((e) => e.envelope));
  await f.produceEvents(historyA);
  await f.caughtUp(60000);
  await assertConsistent('after the first pass');
  const c = await f.counts();
  assert.is(c.accounts, 200);
  assert.ok(c.transactions > 3000, `transactions: ${c.transactions}`);
  assert.ok(historyA.some((e) => e.envelope.type === 'AccountClosed'), 'some accounts closed');
  assert.is(await metric('banking_es_projection_events_total', { result: 'applied' }), historyA.length);
  assert.is(await metric('banking_es_projection_events_total', { result: 'stale' }), 0);
  assert.ok((await metric('banking_es_projection_lag_seconds')) > 0, 'projection lag set from recordedAt');
  assert.ok((await metric('banking_es_batch_size', { sink: 'projections' })) >= historyA.length, 'batch sizes observed per sink');
});

test('(b) re-sending every event changes nothing: no row rewritten', async () => {
  const snapshot = async () => (await f.pg.query("SELECT string_agg(account_id::text || ':' || xmin::text, ',' ORDER BY account_id) AS s FROM account_projections")).rows[0].s as string;
  const txSnapshot = async () => (await f.pg.query("SELECT count(*)::int AS n, string_agg(xmin::text, ',' ORDER BY account_id, version) AS s FROM transaction_projections")).rows[0] as { n: number; s: string };
  const [before, txBefore] = [await snapshot(), await txSnapshot()];
  const stale0 = await metric('banking_es_projection_events_total', { result: 'stale' });
  await f.produceEvents(historyA);
  await f.caughtUp(60000);
  assert.is(await metric('banking_es_projection_events_total', { result: 'stale' }) - stale0, historyA.length, 'every re-sent event dropped as stale');
  assert.is(await snapshot(), before, 'no account row was updated');
  assert.equal(await txSnapshot(), txBefore, 'no transaction row added or rewritten');
  await assertConsistent('after re-sending');
});

// Debezium's renderings of an events row (PostgreSQL connector: uuid as
// string, jsonb as an io.debezium.data.Json string, timestamptz as ZonedTimestamp).
function debeziumRow(e: EventEnvelope, json: string) {
  return {
    account_id: e.accountId, version: e.version, event_id: e.eventId, event_type: e.type, payload: json,
    command_id: e.commandId, recorded_at: e.recordedAt.replace('Z', '000Z'),
  };
}
const source = (e: EventEnvelope) => ({
  version: '2.7.3.Final', connector: 'postgresql', name: 'banking', ts_ms: Date.parse(e.recordedAt), snapshot: 'false', db: 'banking',
  sequence: '["24023928","24023992"]', schema: 'public', table: 'events', txId: 771, lsn: 24023992, xmin: null,
});
const keySchema = { type: 'struct', optional: false, name: 'banking.public.events.Key', fields: [{ type: 'string', optional: false, name: 'io.debezium.data.Uuid', field: 'account_id' }] };
const valueSchema = { type: 'struct', optional: false, name: 'banking.public.events.Envelope', version: 2, fields: [] };

/**
 * The shapes Debezium produces for the events table, one per account (a
 * connector's settings do not change between one account's events, and its
 * key decides the partition, hence the order).
 */
function debeziumShaped(h: HistoryEvent, i: number, shape: number): OutEvent {
  const e = h.envelope;
  const change = { before: null, after: debeziumRow(e, h.json), source: source(e), op: i % 2 ? 'c' : 'r', ts_ms: Date.parse(e.recordedAt) + 5, transaction: null };
  switch (shape) {
    case 0: // raw change event, JsonConverter schemas.enable=true, message.key.columns=public.events:account_id
      return { key: JSON.stringify({ schema: keySchema, payload: { account_id: e.accountId } }), value: JSON.stringify({ schema: valueSchema, payload: change }) };
    case 1: // raw change event, schemas.enable=false
      return { key: JSON.stringify({ account_id: e.accountId }), value: JSON.stringify(change) };
    case 2: // outbox event router, payload column as a JSON string (StringConverter)
      return { key: e.accountId, value: JSON.stringify(h.json) };
    case 3: // outbox event router, JsonConverter schemas.enable=true, payload not expanded
      return { key: e.accountId, value: JSON.stringify({ schema: { type: 'string', optional: false, name: 'io.debezium.data.Json', version: 1 }, payload: h.json }) };
    default: // outbox event router with expand.json.payload=true, schemas.enable=false: the envelope itself
      return { key: e.accountId, value: h.json };
  }
}

test('(c) Debezium change envelopes and outbox-router values project the same; deletes and tombstones are skipped', async () => {
  const h = generateHistory({ accounts: 30, commands: 800, seed: 12 });
  await f.insertEvents(h.map((e) => e.envelope));
  const shapeOf = new Map<string, number>();
  for (const e of h) if (!shapeOf.has(e.envelope.accountId)) shapeOf.set(e.envelope.accountId, shapeOf.size % 5);
  const msgs = h.map((e, i) => debeziumShaped(e, i, shapeOf.get(e.envelope.accountId)!));
  // someone deleted a row: Debezium emits a delete change event, then a tombstone
  const last = h[h.length - 1].envelope;
  const del = { before: debeziumRow(last, h[h.length - 1].json), after: null, source: source(last), op: 'd', ts_ms: 1 };
  msgs.push({ key: JSON.stringify({ account_id: last.accountId }), value: JSON.stringify({ schema: valueSchema, payload: del }) });
  msgs.push({ key: JSON.stringify({ account_id: last.accountId }), value: null });
  const tomb0 = await metric('banking_es_projection_events_total', { result: 'tombstone' });
  const dlq0 = f.dlq.messages.length;
  await f.produce(msgs);
  await f.caughtUp(60000);
  await assertConsistent('after the Debezium-shaped events');
  assert.is(await metric('banking_es_projection_events_total', { result: 'tombstone' }) - tomb0, 2);
  assert.is(await metric('banking_es_projection_events_total', { result: 'dlq' }), 0, 'nothing dead-lettered');
  assert.is(f.dlq.messages.length, dlq0);
});

/**
 * What Kafka Connect publishes for connectors/debezium-postgres.json, built from that file: the
 * outbox router's key (table.field.event.key), value (the payload column as jsonb prints it,
 * expanded or as a string), the `id` header (table.field.event.id) and the additional placements.
 * The initial snapshot reads `events` with the connector's snapshot override and its ORDER BY (in
 * heap order, shuffled here, without one); streaming then repeats what the snapshot already had
 * (at least once) and goes on in commit order. This is the stream as Debezium's documentation
 * describes it for that file, built here; Connect itself cannot run on this machine.
 */
function fromConnectorConfig(history: HistoryEvent[], snapshotCount: number): OutEvent[] {
  const c = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'connectors', 'debezium-postgres.json'), 'utf8')) as Record<string, string>;
  const t = 'transforms.outbox.';
  const row = (e: EventEnvelope): Record<string, string | number> => ({ account_id: e.accountId, version: e.version, event_id: e.eventId, event_type: e.type, command_id: e.commandId });
  const message = (h: HistoryEvent): OutEvent => {
    const r = row(h.envelope);
    const payload = jsonbText(JSON.parse(h.json)); // the jsonb column's text
    const headers: Record<string, string> = { id: String(r[c[`${t}table.field.event.id`]]) };
    for (const p of (c[`${t}table.fields.additional.placement`] ?? '').split(',').filter(Boolean)) {
      const [col, where, name] = p.split(':');
      if (where === 'header') headers[name] = String(r[col]);
    }
    return { key: String(r[c[`${t}table.field.event.key`]]), value: c[`${t}table.expand.json.payload`] === 'true' ? payload : JSON.stringify(payload), headers };
  };
  const snap = history.slice(0, snapshotCount);
  const override = c[`snapshot.select.statement.overrides.${c['snapshot.select.statement.overrides']}`] ?? '';
  const order = /ORDER BY (.+)$/i.exec(override)?.[1].split(',').map((x) => x.trim()) ?? [];
  if (order.join() === 'account_id,version') snap.sort((a, b) => (a.envelope.accountId < b.envelope.accountId ? -1 : a.envelope.accountId > b.envelope.accountId ? 1 : a.envelope.version - b.envelope.version));
  else snap.sort((a, b) => (a.envelope.eventId < b.envelope.eventId ? -1 : 1)); // no order: as the heap happens to hold them
  const overlap = Math.floor(snapshotCount / 4); // the last snapshot rows arrive again from the slot
  return [...snap.map(message), ...history.slice(snapshotCount - overlap).map(message)];
}

test('(c2) the stream connectors/debezium-postgres.json makes, its snapshot included, projects the same as the event store', async () => {
  const h = generateHistory({ accounts: 40, commands: 1200, seed: 21 });
  await f.insertEvents(h.map((e) => e.envelope));
  const stale0 = await metric('banking_es_projection_events_total', { result: 'stale' });
  const msgs = fromConnectorConfig(h, Math.floor(h.length * 0.6));
  assert.ok(msgs.every((m) => m.headers && m.headers.id && m.headers.eventType && m.headers.version), 'router headers');
  await f.produce(msgs);
  await f.caughtUp(60000);
  await assertConsistent('after the connector-shaped snapshot and stream');
  assert.is(await metric('banking_es_projection_events_total', { result: 'dlq' }), 0, 'nothing dead-lettered');
  assert.is(await metric('banking_es_projection_events_total', { result: 'stale' }) - stale0, msgs.length - h.length, 'only the repeated events were dropped');
});

test('(d) an unreadable event goes to the events DLQ with its source; the partition keeps flowing', async () => {
  const h = generateHistory({ accounts: 1, commands: 12, seed: 13 });
  assert.ok(h.length >= 4, 'a few events');
  const acct = h[0].envelope.accountId;
  const other = generateHistory({ accounts: 1, commands: 2, seed: 14 })[0];
  await f.insertEvents(h.map((e) => e.envelope));
  const bad: Array<{ code: string; m: OutEvent }> = [
    { code: 'NOT_JSON', m: { key: acct, value: '{"eventId": nope', headers: { 'x-case': 'NOT_JSON' } } },
    { code: 'INVALID_ENVELOPE', m: { key: acct, value: JSON.stringify({ ...h[1].envelope, version: 'two' }), headers: { 'x-case': 'INVALID_ENVELOPE' } } },
    { code: 'KEY_MISMATCH', m: { key: acct, value: other.json, headers: { 'x-case': 'KEY_MISMATCH' } } },
    { code: 'INVALID_DATA', m: { key: acct, value: encodeEnvelope({ ...h[1].envelope, data: { ...h[1].envelope.data, balanceAfter: '1.5' } }), headers: { 'x-case': 'INVALID_DATA' } } },
  ];
  const [first] = await f.produceEvents(h.slice(0, 1));
  const badAt = await f.produce(bad.map((b) => b.m));
  const rest = await f.produceEvents(h.slice(1));
  assert.ok([...badAt, ...rest].every((d) => d.partition === first.partition), 'one partition');
  await f.caughtUp(60000);
  await assertConsistent('after the dead letters');
  await f.dlq.waitFor((ms) => bad.every((b) => ms.some((x) => x.headers['x-case'] === b.code)), 30000, 'every unreadable event dead-lettered');
  for (const [i, b] of bad.entries()) {
    const got = f.dlq.messages.filter((x) => x.headers['x-case'] === b.code);
    assert.is(got.length, 1, `${b.code}: one dead letter`);
    const d = got[0];
    assert.is(d.headers['error.code'], b.code, JSON.stringify(d.headers));
    assert.ok((d.headers['error.message'] ?? '').length > 0);
    assert.is(d.headers['source.topic'], f.topics.events);
    assert.is(d.headers['source.partition'], String(badAt[i].partition));
    assert.is(d.headers['source.offset'], String(badAt[i].offset));
    assert.is(d.key, acct, 'original key');
    assert.ok(d.raw !== null && d.raw.equals(Buffer.from(b.m.value as string)), 'original value bytes');
  }
  assert.is(await metric('banking_es_dlq_messages_total', { topic: f.topics.dlq }), bad.length);
  const { rows } = await f.pg.query('SELECT version::int AS v FROM account_projections WHERE account_id = $1', [acct]);
  assert.equal(rows, [{ v: h[h.length - 1].envelope.version }], 'the events after the dead letters were projected');
  const { rows: o } = await f.pg.query('SELECT count(*)::int AS n FROM account_projections WHERE account_id = $1', [other.envelope.accountId]);
  assert.is(o[0].n, 0, 'the mismatched event was not projected');
});

test('consumer lag is reported for the projection group', async () => {
  const deadline = Date.now() + 10000;
  let labels: Record<string, string | number>[] = [];
  while (Date.now() < deadline) {
    const m = await p!.metrics.registry.getSingleMetric('banking_es_consumer_lag_messages')!.get();
    labels = m.values.filter((v) => v.labels.group === f.group).map((v) => ({ ...v.labels, value: v.value }));
    if (labels.length === 4 && labels.every((l) => l.value === 0)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.is(labels.length, 4, JSON.stringify(labels));
  assert.ok(labels.every((l) => l.topic === f.topics.events && l.value === 0), JSON.stringify(labels));
});

test('(e) SIGKILL mid-stream, twice: nothing lost or duplicated after restarts', async () => {
  await p!.stop();
  p = undefined;
  const h = generateHistory({ accounts: 300, commands: 24000, seed: 15 });
  await f.insertEvents(h.map((e) => e.envelope));
  const start = await f.committedTotal();
  let child = await f.spawnChild({ PROJECTIONS_BATCH_SIZE: '500' });
  let sent = 0;
  const produce = (async () => {
    for (let i = 0; i < h.length; i += 500) {
      await f.produceEvents(h.slice(i, i + 500));
      sent = Math.min(h.length, i + 500);
      await new Promise((r) => setTimeout(r, 30));
    }
  })();
  const poll = async (n: number) => {
    const deadline = Date.now() + 60000;
    while ((await f.committedTotal()) < start + n) {
      if (Date.now() > deadline) throw new Error(`projector did not commit ${n} events:\n${child.output()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await poll(4000);
  await f.kill(child);
  const sentAtKill = sent;
  const committedAtKill = (await f.committedTotal()) - start;
  assert.ok(sentAtKill < h.length, `killed after the whole stream was sent (${sentAtKill})`);
  child = await f.spawnChild({ PROJECTIONS_BATCH_SIZE: '500' }, 45000);
  await poll(committedAtKill + 4000);
  await f.kill(child);
  const committedAtSecond = (await f.committedTotal()) - start;
  await produce;
  child = await f.spawnChild({}, 45000);
  await f.caughtUp(90000);
  console.log(`killed at ${committedAtKill} and ${committedAtSecond} committed (${sentAtKill}/${h.length} sent at the first kill)`);
  await assertConsistent('after two crashes');
  const { rows } = await f.pg.query('SELECT count(*)::int AS n FROM transaction_projections t JOIN account_projections a USING (account_id) WHERE t.version > a.version');
  assert.is(rows[0].n, 0, 'no transaction row ahead of its account row');
  child.kill('SIGTERM');
  const r = await waitForExit(child, 20000);
  assert.equal([r.code, r.signal], [0, null], `graceful stop:\n${child.output().slice(-2000)}`);
});

test.run();
