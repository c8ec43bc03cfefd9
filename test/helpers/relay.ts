/**
 * A CDC relay under test, in-process: its own database (migrated) and event
 * topic, a DaemonContext built the way src/daemon.ts builds one (with a
 * producer whose deliveries a test can hold back), a pg client, and writers
 * of valid §2.4 envelopes into `events`. `release()` frees all of it.
 */
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, type ClientBase } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { loadConfig, type Config } from '../../src/config';
import { createLogger, type Logger } from '../../src/logger';
import { createMetrics, type Metrics } from '../../src/metrics';
import { Health } from '../../src/health';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { Lifecycle } from '../../src/lifecycle';
import { ProducerClient, type OutMessage } from '../../src/kafka/producer';
import { SCHEMA_VERSION, encodeEnvelope, type EventEnvelope } from '../../src/codec/envelope';
import type { DaemonContext } from '../../src/daemon';
import { createTestDatabase, testStack, uniqueTopic, type TestDb } from './stack';
import { packageRoot } from '../../src/paths';
import { producer as testProducer } from './kafka';

/** A producer whose deliveries can be held back: held sends reach Kafka only on release(). */
export class GatedProducer extends ProducerClient {
  private holding = false;
  private readonly held: Array<() => void> = [];

  hold(): void { this.holding = true; }
  get heldCount(): number { return this.held.length; }
  release(): void {
    this.holding = false;
    for (const go of this.held.splice(0)) go();
  }

  override send(m: OutMessage): Promise<void> {
    if (!this.holding) return super.send(m);
    return new Promise<void>((resolve, reject) => {
      this.held.push(() => { super.send(m).then(resolve, reject); });
    });
  }
}

export interface RelayFixture {
  db: TestDb;
  topic: string;
  config: Config;
  ctx: DaemonContext;
  producer: GatedProducer;
  pg: Client;
  metrics: Metrics;
  release(): Promise<void>;
}

export async function relayFixture(name: string, mode: 'relay' | 'poller'): Promise<RelayFixture> {
  const s = testStack();
  const db = await createTestDatabase(name);
  const topic = uniqueTopic(`${name}.events`);
  const cleanup: Array<() => Promise<unknown>> = [() => db.drop()];
  try {
    const { config } = loadConfig({ env: { ...process.env, DATABASE_URL: db.url, KAFKA_BROKERS: s.kafka.brokers, KAFKA_TOPIC_EVENTS: topic, CDC_MODE: mode, LOG_LEVEL: 'warn' } });
    const log: Logger = createLogger({ level: config.log.level, name: `test-${name}` });
    const metrics = createMetrics(new Registry(), { defaultMetrics: false });
    const health = new Health(metrics);
    const lifecycle = new Lifecycle(log, 10000, () => undefined);
    const pool = createPool({ url: config.db.url, max: 4, statementTimeoutMs: config.db.statementTimeoutMs }, log);
    cleanup.push(() => pool.end());
    await migrate(pool);
    // the mock cluster creates the topic (4 partitions) on first metadata request
    const tp = await testProducer(s.kafka.brokers);
    try { await tp.ensureTopics([topic]); } finally { await tp.close(); }
    const producer = new GatedProducer(config, log, metrics);
    cleanup.push(() => producer.close(5000));
    await producer.connect();
    const pg = new Client({ connectionString: db.url });
    pg.on('error', () => undefined);
    await pg.connect();
    cleanup.push(() => pg.end());
    const ctx: DaemonContext = { config, log, metrics, health, pool, producer, lifecycle };
    return {
      db, topic, config, ctx, producer, pg, metrics,
      async release() {
        for (const c of cleanup.reverse()) await c().catch(() => undefined);
      },
    };
  } catch (e) {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    throw e;
  }
}

/** Hands out the next version per account, so writers produce valid event streams. */
export class Accounts {
  private readonly versions = new Map<string, number>();
  readonly ids: string[];
  constructor(n: number) {
    this.ids = Array.from({ length: n }, () => randomUUID());
  }
  next(accountId: string): EventEnvelope {
    const version = (this.versions.get(accountId) ?? 0) + 1;
    this.versions.set(accountId, version);
    return envelope(accountId, version);
  }
  /** Forgets versions handed out to a transaction that rolled back. */
  rollback(evs: EventEnvelope[]): void {
    for (const e of evs) this.versions.set(e.accountId, Math.min(this.versions.get(e.accountId) ?? 0, e.version - 1));
  }
  version(accountId: string): number { return this.versions.get(accountId) ?? 0; }
}

export function envelope(accountId: string, version: number): EventEnvelope {
  const data = version === 1
    ? { ownerName: 'Relay Test', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }
    : { amount: '1.00', currency: 'USD', balanceAfter: String((version - 1) * 100) };
  return { eventId: randomUUID(), accountId, version, type: version === 1 ? 'AccountCreated' : 'MoneyDeposited', data, commandId: randomUUID(), recordedAt: new Date().toISOString(), schemaVersion: SCHEMA_VERSION };
}

/** Inserts the events on `db` (in whatever transaction it is in); tx_id and position take their defaults. */
export async function insertEvents(db: ClientBase, evs: EventEnvelope[]): Promise<void> {
  await db.query(
    `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::uuid[], $7::timestamptz[])`,
    [evs.map((e) => e.accountId), evs.map((e) => e.version), evs.map((e) => e.eventId), evs.map((e) => e.type), evs.map((e) => encodeEnvelope(e)), evs.map((e) => e.commandId), evs.map((e) => e.recordedAt)],
  );
}

/** One committed transaction holding `evs`. */
export async function commitEvents(db: Client, evs: EventEnvelope[]): Promise<void> {
  await db.query('BEGIN');
  try {
    await insertEvents(db, evs);
    await db.query('COMMIT');
  } catch (e) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** COPY (text format) of `n` events over `accounts` fresh accounts, in `txs` transactions; returns the count. */
export async function copyEvents(db: Client, n: number, accounts: number, txs: number): Promise<number> {
  const acc = new Accounts(accounts);
  const perTx = Math.ceil(n / txs);
  let written = 0;
  for (let t = 0; t < txs && written < n; t++) {
    const rows: string[] = [];
    for (let i = 0; i < perTx && written < n; i++, written++) {
      const e = acc.next(acc.ids[written % accounts]);
      rows.push([e.accountId, e.version, e.eventId, e.type, encodeEnvelope(e).replace(/\\/g, '\\\\'), e.commandId, e.recordedAt].join('\t') + '\n');
    }
    await db.query('BEGIN');
    await pipeline(Readable.from(rows), db.query(copyFrom('COPY events (account_id, version, event_id, event_type, payload, command_id, recorded_at) FROM STDIN')));
    await db.query('COMMIT');
  }
  return written;
}

/** Polls `pred` every 50 ms until it holds; rejects after timeoutMs naming `what`. */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`${what}: not met after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The stored payload text (jsonb's own form) of every event, by event id. */
export async function storedPayloads(db: Client): Promise<Map<string, { accountId: string; version: number; payload: string }>> {
  const { rows } = await db.query<{ event_id: string; account_id: string; version: string; payload: string }>('SELECT event_id::text, account_id::text, version::text, payload::text FROM events');
  return new Map(rows.map((r) => [r.event_id, { accountId: r.account_id, version: Number(r.version), payload: r.payload }]));
}

/**
 * The envelopes an older release wrote (version 1: no schemaVersion; test/fixtures/events-v1.ndjson), stored
 * as that release stored them (the payload as jsonb), in one transaction; returns their event ids.
 */
export async function insertVersion1Events(db: Client): Promise<string[]> {
  const lines = fs.readFileSync(path.join(packageRoot(), 'test', 'fixtures', 'events-v1.ndjson'), 'utf8').split('\n').filter(Boolean);
  const evs = lines.map((l) => JSON.parse(l) as EventEnvelope);
  if (evs.some((e) => 'schemaVersion' in e)) throw new Error('the fixture holds only version-1 envelopes');
  await db.query(
    `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::uuid[], $7::timestamptz[])`,
    [evs.map((e) => e.accountId), evs.map((e) => e.version), evs.map((e) => e.eventId), evs.map((e) => e.type), lines, evs.map((e) => e.commandId), evs.map((e) => e.recordedAt)],
  );
  return evs.map((e) => e.eventId);
}

/** Each of `ids` was published (first copy) with the stored payload's text as its value: no schemaVersion added on the way. */
export async function assertPublishedAsStored(db: Client, messages: ReadonlyArray<{ value?: unknown; raw?: Buffer | null }>, ids: readonly string[]): Promise<void> {
  const stored = await storedPayloads(db);
  for (const id of ids) {
    const m = messages.find((x) => (x.value as { eventId?: string } | undefined)?.eventId === id);
    const raw = m?.raw?.toString('utf8');
    assert.is(raw, stored.get(id)!.payload, `event ${id}: the value is the payload as stored`);
    assert.not.match(raw!, /schemaVersion/, 'no version added on the way');
  }
}
