/**
 * The polling relay (docs/architecture.md §3) against the stack's real Postgres and the
 * Kafka mock cluster, in-process: a transaction that commits late is never
 * skipped (later transactions wait below the snapshot's xmin), the checkpoint
 * lives in Postgres, and a restart resumes from it without loss.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Client } from 'pg';
import { PollingRelay, POLLER_INDEX, type PollingRelayOptions } from '../../src/relay/poller';
import { TopicReader } from '../helpers/kafka';
import { testStack } from '../helpers/stack';
import { Accounts, commitEvents, copyEvents, assertPublishedAsStored, insertEvents, insertVersion1Events, relayFixture, storedPayloads, until, type RelayFixture } from '../helpers/relay';

const WAIT_MS = 30000;
const OPTS: Partial<PollingRelayOptions> = { idleMs: 20 };

let f: RelayFixture;
let reader: TopicReader;
let relay: PollingRelay | undefined;

function countsByEventId(): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of reader.messages) {
    const id = (m.value as { eventId?: string } | undefined)?.eventId;
    if (id) out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

async function waitForAll(ids: string[], what: string): Promise<void> {
  await until(() => { const got = countsByEventId(); return ids.every((id) => got.has(id)); }, WAIT_MS, what);
}

async function startRelay(): Promise<PollingRelay> {
  const r = new PollingRelay(f.ctx, OPTS);
  relay = r;
  await r.start();
  return r;
}

async function storedCheckpoint(): Promise<{ tx_id: string; position: string } | undefined> {
  const { rows } = await f.pg.query<{ tx_id: string; position: string }>("SELECT tx_id::text, position::text FROM relay_checkpoints WHERE relay = 'banking_es_poller'");
  return rows[0];
}

test.before(async () => {
  f = await relayFixture('poller', 'poller');
  reader = await TopicReader.open(testStack().kafka.brokers, f.topic);
});

test.after(async () => {
  await relay?.stop().catch(() => undefined);
  await reader?.close();
  await f?.release();
});

test('creates its (tx_id, position) index at start, not in a migration', async () => {
  const idx = async () => (await f.pg.query('SELECT indexdef FROM pg_indexes WHERE indexname = $1', [POLLER_INDEX])).rows;
  assert.is((await idx()).length, 0, 'migrations leave the index out');
  await startRelay();
  const rows = await idx();
  assert.is(rows.length, 1);
  assert.match(rows[0].indexdef, /\(tx_id, "?position"?\)/);
});

test('a transaction that commits late is not skipped: later commits wait for it', async () => {
  const r = relay!;
  const acc = new Accounts(1);
  const [x] = acc.ids;
  const [eA, eB, eC] = [acc.next(x), acc.next(x), acc.next(x)];
  const a = new Client({ connectionString: f.db.url });
  await a.connect();
  try {
    // A takes its transaction id first and holds it open
    await a.query('BEGIN');
    await insertEvents(a, [eA]);
    await commitEvents(f.pg, [eB]);
    await commitEvents(f.pg, [eC]);
    const { rows } = await f.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE event_id = ANY($1::uuid[])', [[eB.eventId, eC.eventId]]);
    assert.is(rows[0].n, 2, 'B and C are committed and visible');
    // while A is open, B and C sit at or above the snapshot xmin: several polls publish nothing
    const published = r.stats.published;
    const polls = r.stats.polls;
    await until(() => r.stats.polls >= polls + 10, WAIT_MS, 'poller keeps polling');
    assert.is(r.stats.published, published, 'nothing published while A is open');
    const seen = countsByEventId();
    assert.not.ok(seen.has(eB.eventId) || seen.has(eC.eventId), 'B and C not on the topic while A is open');
    await a.query('COMMIT');
  } finally {
    await a.query('ROLLBACK').catch(() => undefined);
    await a.end();
  }
  await waitForAll([eA.eventId, eB.eventId, eC.eventId], 'A, B and C published after A commits');
  // one account, one partition: A (lowest tx_id) first, exactly once each, exactly as stored
  const order = reader.messages.filter((m) => m.key === x).map((m) => (m.value as { eventId: string }).eventId);
  assert.equal(order, [eA.eventId, eB.eventId, eC.eventId]);
  const stored = await storedPayloads(f.pg);
  for (const m of reader.messages.filter((mm) => mm.key === x)) {
    const id = (m.value as { eventId: string }).eventId;
    assert.is(m.raw!.toString('utf8'), stored.get(id)!.payload);
  }
  // the checkpoint in Postgres is C's (tx_id, position)
  await until(async () => (await storedCheckpoint())?.position !== undefined && r.stats.published >= 3, WAIT_MS, 'checkpoint stored');
  const cp = await storedCheckpoint();
  const c = await f.pg.query<{ tx_id: string; position: string }>('SELECT tx_id::text, position::text FROM events WHERE event_id = $1', [eC.eventId]);
  assert.equal(cp, c.rows[0]);
});

test('stop and restart mid-stream: resumes from the stored checkpoint; nothing lost, nothing published twice', async () => {
  const acc = new Accounts(5);
  const committed: string[] = [];
  let written = 0;
  let stopWriting = false;
  let writerError: unknown;
  const w = new Client({ connectionString: f.db.url });
  await w.connect();
  const writer = (async () => {
    for (let i = 0; !stopWriting && i < 5000; i++) {
      const evs = acc.ids.filter((_, j) => (i * 3 + j) % 3 === 0).map((id) => acc.next(id));
      await commitEvents(w, evs);
      committed.push(...evs.map((e) => e.eventId));
      written++;
      // TopicReader's consume(5000) returns only after 5000 messages or a 50 ms lull, so leave lulls
      await new Promise((res) => setTimeout(res, i % 20 === 19 ? 80 : 5));
    }
  })().catch((e) => { writerError = e; });
  const writing = (n: number, what: string) => until(() => { if (writerError) throw writerError; return written >= n; }, WAIT_MS, what);
  try {
    const r1 = relay!;
    await writing(30, 'writer running');
    await r1.stop();
    const cp = await storedCheckpoint();
    assert.equal({ txId: cp!.tx_id, position: cp!.position }, r1.stats.checkpoint, 'the checkpoint in Postgres is the last acknowledged batch');
    const at = written;
    await writing(at + 20, 'writes continue while the relay is down');
    const r2 = await startRelay();
    assert.equal(r2.stats.checkpoint, r1.stats.checkpoint, 'resumes from the stored checkpoint');
    await until(() => r2.stats.published >= 20, WAIT_MS, 'restarted relay publishing');
    stopWriting = true;
    await writer;
    if (writerError) throw writerError;
  } finally {
    stopWriting = true;
    await writer;
    await w.end();
  }
  await waitForAll(committed, 'every committed event published');
  const counts = countsByEventId();
  const twice = committed.filter((id) => counts.get(id)! > 1);
  assert.equal(twice, [], 'a graceful stop stores the checkpoint of everything acknowledged: nothing is re-sent');
  for (const a of acc.ids) {
    const versions = reader.messages.filter((m) => m.key === a).map((m) => (m.value as { version: number }).version);
    assert.equal(versions, Array.from({ length: acc.version(a) }, (_, i) => i + 1), `account ${a} in version order`);
  }
});

test('envelopes an older release wrote (version 1, no schemaVersion) are published as stored', async () => {
  const ids = await insertVersion1Events(f.pg);
  await waitForAll(ids, 'every version-1 event on the topic');
  await assertPublishedAsStored(f.pg, reader.messages, ids);
});

test('throughput: 100k events written by COPY in 4 transactions while stopped, time until Kafka acknowledged all', async () => {
  await reader.close();
  await relay!.stop();
  const t0 = Date.now();
  const n = await copyEvents(f.pg, 100_000, 2000, 4);
  const copyMs = Date.now() - t0;
  const r = new PollingRelay(f.ctx, OPTS);
  relay = r;
  const t1 = Date.now();
  await r.start();
  await until(() => r.stats.published >= n, 120000, `all ${n} events acknowledged and checkpointed (so far ${r.stats.published}, checkpoint ${JSON.stringify(r.stats.checkpoint)})`);
  const ms = Date.now() - t1;
  console.log(`    poller: ${n} events in ${ms} ms = ${Math.round(n / (ms / 1000))} events/s (COPY took ${copyMs} ms)`);
  assert.is(r.stats.published, n);
});

test.run();
