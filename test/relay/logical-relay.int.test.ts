/**
 * The logical-replication relay (docs/architecture.md §1, §3) against the stack's real
 * Postgres (wal_level=logical) and the Kafka mock cluster, in-process: every
 * committed event reaches the topic exactly as stored, keyed by account, in
 * per-account order; rolled-back events never do; an LSN is confirmed only
 * after Kafka acknowledged everything up to it; a stop/restart and a dropped
 * replication connection lose nothing and re-send only what came after the
 * position they resumed from.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Client } from 'pg';
import { LogicalRelay, type LogicalRelayOptions } from '../../src/relay/logical-relay';
import { parseLsn } from '../../src/relay/lsn';
import { RELAY_SLOT } from '../../src/db/sql/replication-slot';
import type { EventEnvelope } from '../../src/codec/envelope';
import { TopicReader } from '../helpers/kafka';
import { testStack } from '../helpers/stack';
import { Accounts, commitEvents, copyEvents, assertPublishedAsStored, insertEvents, insertVersion1Events, relayFixture, storedPayloads, until, type RelayFixture } from '../helpers/relay';

const WAIT_MS = 30000;
const OPTS: Partial<LogicalRelayOptions> = { lagPollMs: 200, feedbackMs: 200 };

let f: RelayFixture;
let reader: TopicReader;
let relay: LogicalRelay | undefined;
/** Commit-position bound of every committed transaction, by event id: pg_current_wal_lsn() right after its COMMIT. */
const committedAt = new Map<string, bigint>();

async function slot(): Promise<{ confirmed: bigint; activePid: number | null } | undefined> {
  const { rows } = await f.pg.query<{ confirmed_flush_lsn: string; active_pid: number | null }>('SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots WHERE slot_name = $1', [RELAY_SLOT]);
  return rows[0] ? { confirmed: parseLsn(rows[0].confirmed_flush_lsn), activePid: rows[0].active_pid } : undefined;
}

async function currentLsn(db: Client = f.pg): Promise<bigint> {
  const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn(rows[0].lsn);
}

/** Commits one transaction and records, for its events, an LSN at or after its commit record's end. */
async function commitTx(evs: EventEnvelope[]): Promise<void> {
  await commitEvents(f.pg, evs);
  const at = await currentLsn();
  for (const e of evs) committedAt.set(e.eventId, at);
}

async function startRelay(): Promise<LogicalRelay> {
  const r = new LogicalRelay(f.ctx, OPTS);
  relay = r;
  await r.start();
  assert.ok(r.stats.streaming, 'relay streams after start()');
  return r;
}

/** Every message on the topic read so far, by event id. */
function byEventId(): Map<string, Array<{ key: string | null; raw: string }>> {
  const out = new Map<string, Array<{ key: string | null; raw: string }>>();
  for (const m of reader.messages) {
    const v = m.value as { eventId?: string } | undefined;
    if (!v?.eventId || !m.raw) continue;
    const list = out.get(v.eventId) ?? [];
    list.push({ key: m.key, raw: m.raw.toString('utf8') });
    out.set(v.eventId, list);
  }
  return out;
}

async function waitForAll(ids: Iterable<string>, what: string): Promise<void> {
  const want = [...ids];
  await until(() => { const got = byEventId(); return want.every((id) => got.has(id)); }, WAIT_MS, what);
}

/**
 * Per account, in topic order: every message is either the next new version
 * or a re-send of one already seen (at-least-once), and the first occurrences
 * run 1..n without a gap.
 */
function assertAccountOrder(accounts: string[], expectVersions: (a: string) => number): void {
  for (const a of accounts) {
    const versions = reader.messages.filter((m) => m.key === a).map((m) => (m.value as { version: number }).version);
    let max = 0;
    for (const v of versions) {
      assert.ok(v <= max + 1, `account ${a}: version ${v} arrived after only ${max} (sequence ${versions.join(',')})`);
      if (v === max + 1) max = v;
    }
    assert.is(max, expectVersions(a), `account ${a}: highest version`);
  }
}

test.before(async () => {
  f = await relayFixture('logical_relay', 'relay');
  reader = await TopicReader.open(testStack().kafka.brokers, f.topic);
});

test.after(async () => {
  await relay?.stop().catch(() => undefined);
  await reader?.close();
  if (f) {
    // a database with a logical slot cannot be dropped; the walsender may take a moment to let go of it
    await until(async () => (await slot())?.activePid == null, 10000, 'slot released').catch(() => undefined);
    await f.pg.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [RELAY_SLOT]).catch(() => undefined);
    await f.release();
  }
});

test('publishes every committed event as stored, keyed by account, in per-account order; rolled back events never appear', async () => {
  await startRelay();
  const pub = await f.pg.query("SELECT pubname FROM pg_publication_tables WHERE tablename = 'events' ORDER BY pubname");
  // the relay's own, and the Debezium connector's from the migrations (it retains nothing while unused)
  assert.equal(pub.rows.map((r) => r.pubname), ['banking_es_debezium', 'banking_es_events']);

  const acc = new Accounts(5);
  const [a, b, c, d, e] = acc.ids;
  const committed: string[] = [];
  const tx = async (ids: string[]) => {
    const evs = ids.map((id) => acc.next(id));
    await commitTx(evs);
    committed.push(...evs.map((x) => x.eventId));
  };
  await tx([a, a, b]);
  await tx([c]);
  // rolled back: never reaches Kafka
  const rolled = [acc.next(d), acc.next(a)];
  await f.pg.query('BEGIN');
  await insertEvents(f.pg, rolled);
  await f.pg.query('ROLLBACK');
  acc.rollback(rolled);
  await tx([a, d, e, b]);
  for (let i = 0; i < 20; i++) await tx(acc.ids.filter((_, j) => (i + j) % 3 === 0));

  await waitForAll(committed, 'every committed event on the topic');
  const got = byEventId();
  const stored = await storedPayloads(f.pg);
  for (const id of committed) {
    const msgs = got.get(id)!;
    assert.is(msgs.length, 1, `event ${id} published once (no restart happened)`);
    assert.is(msgs[0].raw, stored.get(id)!.payload, 'value is the payload exactly as stored');
    assert.is(msgs[0].key, stored.get(id)!.accountId, 'key is account_id');
  }
  for (const r of rolled) assert.not.ok(got.has(r.eventId), 'rolled back event is not published');
  assert.is(reader.messages.length, committed.length);
  assertAccountOrder(acc.ids, (x) => acc.version(x));
  const published = (await f.metrics.relayEventsPublished.get()).values.find((v) => v.labels.mode === 'relay');
  assert.is(published?.value, committed.length);
});

test('confirms an LSN only after Kafka acknowledged every event up to it; reports slot lag', async () => {
  const r = relay!;
  await until(() => r.stats.inFlight === 0, WAIT_MS, 'relay idle');
  const acc = new Accounts(2);
  const evs = [acc.next(acc.ids[0]), acc.next(acc.ids[1]), acc.next(acc.ids[0])];
  f.producer.hold();
  // pre: a bound below the commit record (written after it); anything confirmed past it confirms this transaction
  await f.pg.query('BEGIN');
  await insertEvents(f.pg, evs);
  const pre = parseLsn((await f.pg.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn);
  await f.pg.query('COMMIT');
  await until(() => f.producer.heldCount === evs.length, WAIT_MS, 'relay sent the transaction to the producer');
  // the deliveries are held: for a while (several feedback rounds), nothing past the transaction is confirmed
  const watchUntil = Date.now() + 1500;
  while (Date.now() < watchUntil) {
    const s = await slot();
    assert.ok(s && s.confirmed <= pre, `confirmed_flush_lsn ${s?.confirmed} must not pass ${pre} before Kafka acknowledged`);
    assert.ok(parseLsn(r.stats.confirmedLsn) <= pre, 'relay has not confirmed the held transaction');
    await new Promise((res) => setTimeout(res, 100));
  }
  f.producer.release();
  await until(async () => ((await slot())?.confirmed ?? 0n) > pre, WAIT_MS, 'confirmed_flush_lsn passes the transaction once Kafka acknowledged it');
  await waitForAll(evs.map((e) => e.eventId), 'held events delivered');
  // slot lag: polled into the gauge every lagPollMs
  await until(async () => (await f.metrics.relaySlotLagBytes.get()).values.some((v) => v.labels.slot === RELAY_SLOT && v.value >= 0), WAIT_MS, 'slot lag gauge set');
  const lag = (await f.metrics.relaySlotLagBytes.get()).values.find((v) => v.labels.slot === RELAY_SLOT)!.value;
  assert.ok(lag >= 0 && lag < 64 * 1024 * 1024, `lag ${lag} bytes`);
});

test('stop and restart mid-stream, then a dropped replication connection: nothing lost; re-sends only after the resume position', async () => {
  const acc = new Accounts(6);
  const committed: string[] = [];
  let written = 0;
  let stopWriting = false;
  let writerError: unknown;
  const writer = (async () => {
    const w = new Client({ connectionString: f.db.url });
    await w.connect();
    try {
      for (let i = 0; !stopWriting && i < 5000; i++) {
        const evs = acc.ids.filter((_, j) => (i * 7 + j) % 4 === 0).map((id) => acc.next(id));
        await commitEvents(w, evs);
        const at = await currentLsn(w);
        for (const e of evs) committedAt.set(e.eventId, at);
        committed.push(...evs.map((x) => x.eventId));
        written++;
        // TopicReader's consume(5000) returns only after 5000 messages or a 50 ms lull, so leave lulls
        await new Promise((res) => setTimeout(res, i % 20 === 19 ? 80 : 5));
      }
    } catch (e) {
      writerError = e;
      throw e;
    } finally {
      await w.end();
    }
  })();
  writer.catch(() => undefined); // awaited below; a failure also shows in the waits' messages
  const writing = (n: number, what: string) => until(() => { if (writerError) throw writerError; return written >= n; }, WAIT_MS, what);

  const r1 = relay!;
  await writing(20, 'writer running');
  await waitForAll(committed.slice(0, 10), 'first writes published');
  const firstTen = committedAt.get(committed[9])!;
  await r1.stop();
  const afterStop = await slot();
  assert.is(afterStop!.confirmed, parseLsn(r1.stats.confirmedLsn), 'slot holds exactly what the relay confirmed at stop');
  assert.ok(afterStop!.confirmed >= firstTen, 'a graceful stop confirmed what Kafka had acknowledged');
  const writtenAtStop = written;
  await writing(writtenAtStop + 10, 'writes continue while the relay is down');

  const r2 = await startRelay();
  assert.ok(parseLsn(r2.stats.resumedFrom) >= afterStop!.confirmed, 'restart resumes from the confirmed position');
  const resume1 = parseLsn(r2.stats.resumedFrom);
  await until(() => r2.stats.published >= 10, WAIT_MS, 'restarted relay publishing');

  // the replication connection drops (as on a Postgres restart or network cut): the relay reconnects with backoff
  const pid = (await slot())!.activePid;
  assert.ok(pid, 'walsender active');
  await f.pg.query('SELECT pg_terminate_backend($1)', [pid]);
  await until(() => r2.stats.sessions >= 2 && r2.stats.streaming, WAIT_MS, 'relay reconnected');
  const resume2 = parseLsn(r2.stats.resumedFrom);
  await until(() => r2.stats.published >= 30, WAIT_MS, 'publishing after reconnect');
  stopWriting = true;
  await writer;

  await waitForAll(committed, 'every committed event on the topic after restart and reconnect');
  const got = byEventId();
  const stored = await storedPayloads(f.pg);
  let dups = 0;
  for (const id of committed) {
    const msgs = got.get(id)!;
    for (const m of msgs) assert.is(m.raw, stored.get(id)!.payload);
    if (msgs.length > 1) {
      dups++;
      // a re-send is allowed only for a transaction that was not confirmed when a session resumed
      const at = committedAt.get(id)!;
      assert.ok(at > resume1 || at > resume2, `event ${id} re-sent although its transaction (≤ ${at}) was confirmed before resuming (${resume1}, ${resume2})`);
    }
  }
  assertAccountOrder(acc.ids, (x) => acc.version(x));
  console.log(`    restart/reconnect: ${committed.length} events in ${written} transactions, ${dups} re-sent`);
});

test('envelopes an older release wrote (version 1, no schemaVersion) are published as stored', async () => {
  const ids = await insertVersion1Events(f.pg);
  await waitForAll(ids, 'every version-1 event on the topic');
  await assertPublishedAsStored(f.pg, reader.messages, ids);
});

test('throughput: 100k events written by COPY in 4 transactions while stopped, time until Kafka acknowledged all', async () => {
  await reader.close(); // not needed from here; keeps 100k messages out of this process
  await relay!.stop();
  const before = relay!.stats.published;
  const t0 = Date.now();
  const n = await copyEvents(f.pg, 100_000, 2000, 4);
  const copyMs = Date.now() - t0;
  const r = new LogicalRelay(f.ctx, OPTS);
  relay = r;
  const t1 = Date.now();
  await r.start();
  await until(() => r.stats.published >= n, 120000, `all ${n} events acknowledged (published so far: ${r.stats.published}, before ${before})`);
  const ms = Date.now() - t1;
  await until(async () => ((await slot())?.confirmed ?? 0n) >= parseLsn(r.stats.confirmedLsn), WAIT_MS, 'slot confirmed');
  console.log(`    logical relay: ${n} events in ${ms} ms = ${Math.round(n / (ms / 1000))} events/s (COPY took ${copyMs} ms)`);
  assert.is(r.stats.published, n);
});

test.run();
