/**
 * One projection pipeline under test: its own database, events and DLQ
 * topics and consumer group, a producer, a DLQ reader, a pg client, and
 * projectors (in-process or as a child process, which can be SIGKILLed).
 * Events are written to the events table AND produced to the topic, so the
 * read models can be compared with the fold of the event store.
 * `release()` frees all of it.
 */
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { createTestDatabase, testStack, uniqueTopic, waitForExit, waitForOutput, type TestDb } from './stack';
import { producer, TopicReader, type Delivered, type Headers, type TestProducer } from './kafka';
import { startProjector, type RunningProjector } from './projector';
import { foldHistory, type ExpectedAccount, type ExpectedTransaction, type HistoryEvent } from './event-history';
import { migrate } from '../../src/db/migrate';
import { createPool } from '../../src/db/pool';
import { createLogger } from '../../src/logger';
import type { EventEnvelope } from '../../src/codec/envelope';
import { packageRoot } from '../../src/paths';

export interface OutEvent { key: string | Buffer | null; value: string | Buffer | null; headers?: Headers }

export type Child = ReturnType<typeof spawn> & { output(): string };

export class ProjectionFixture {
  /** partition -> next offset produced so far (max offset + 1). */
  readonly produced = new Map<number, number>();
  private readonly inProcess: RunningProjector[] = [];
  private readonly children: Child[] = [];

  private constructor(
    readonly db: TestDb,
    readonly pg: Client,
    readonly producer: TestProducer,
    readonly dlq: TopicReader,
    readonly topics: { events: string; dlq: string },
    readonly group: string,
    readonly env: Record<string, string>,
  ) {}

  static async create(name: string, env: Record<string, string> = {}): Promise<ProjectionFixture> {
    const s = testStack();
    const topics = { events: uniqueTopic(`${name}.events`), dlq: uniqueTopic(`${name}.events-dlq`) };
    const db = await createTestDatabase(name);
    const cleanup: Array<() => Promise<unknown>> = [() => db.drop()];
    try {
      const silent = createLogger({ level: 'silent' });
      const pool = createPool({ url: db.url, max: 1 }, silent);
      await migrate(pool).finally(() => pool.end());
      const pg = new Client({ connectionString: db.url });
      pg.on('error', () => undefined);
      await pg.connect();
      cleanup.push(() => pg.end());
      const prod = await producer(s.kafka.brokers);
      cleanup.push(() => prod.close());
      await prod.ensureTopics([topics.events, topics.dlq]);
      const dlq = await TopicReader.open(s.kafka.brokers, topics.dlq);
      const group = `${name}-${randomUUID().slice(0, 8)}`;
      const baseEnv = {
        BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR ?? '',
        NODE_ENV: 'test',
        DATABASE_URL: db.url,
        METRICS_PORT: '0',
        LOG_LEVEL: 'warn',
        PIPELINE_WORKERS: '1',
        KAFKA_TOPIC_EVENTS: topics.events,
        KAFKA_TOPIC_EVENTS_DLQ: topics.dlq,
        KAFKA_PROJECTION_GROUP_ID: group,
        SHUTDOWN_TIMEOUT_MS: '10000',
        ...env,
      };
      return new ProjectionFixture(db, pg, prod, dlq, topics, group, baseEnv);
    } catch (e) {
      for (const c of cleanup.reverse()) await c().catch(() => undefined);
      throw e;
    }
  }

  /** A projector in this process (stop it with its stop(); release() stops any left). */
  async startInProcess(env: Record<string, string> = {}): Promise<RunningProjector> {
    const p = await startProjector({ ...process.env, ...this.env, ...env });
    this.inProcess.push(p);
    return p;
  }

  /** A projector child process; resolves once it owns all 4 partitions. */
  async spawnChild(env: Record<string, string> = {}, assignTimeoutMs = 30000): Promise<Child> {
    const file = path.join(packageRoot(), 'dist', 'test', 'helpers', 'projector-child.js');
    const child = spawn(process.execPath, [file], { env: { ...process.env, ...this.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { out += d; });
    const c = Object.assign(child, { output: () => out });
    this.children.push(c);
    // the child reports the partitions it owns over IPC (projector-child.ts)
    let owned = 0;
    child.on('message', (m: { type?: string; count?: number }) => { if (m.type === 'partitions-owned') owned = m.count ?? 0; });
    try {
      await waitForOutput(c, (o) => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`projector child exited (${c.exitCode ?? c.signalCode}):\n${o}`);
        return owned === 4;
      }, assignTimeoutMs);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    return c;
  }

  async kill(c: Child): Promise<void> {
    if (c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await waitForExit(c, 10000).catch(() => undefined);
  }

  /** Writes the events into the event store (as the command pipeline would have). */
  async insertEvents(events: EventEnvelope[]): Promise<void> {
    for (let i = 0; i < events.length; i += 5000) {
      const chunk = events.slice(i, i + 5000);
      await this.pg.query(
        `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::uuid[], $7::timestamptz[])`,
        [chunk.map((e) => e.accountId), chunk.map((e) => e.version), chunk.map((e) => e.eventId), chunk.map((e) => e.type),
          chunk.map((e) => JSON.stringify(e)), chunk.map((e) => e.commandId), chunk.map((e) => e.recordedAt)],
      );
    }
  }

  /** Produces in order (same key, same partition) and waits for every delivery report. */
  async produce(msgs: OutEvent[]): Promise<Delivered[]> {
    const ds = await Promise.all(msgs.map((m) => this.producer.send(this.topics.events, m.key, m.value, m.headers)));
    for (const d of ds) if ((this.produced.get(d.partition) ?? 0) < d.offset + 1) this.produced.set(d.partition, d.offset + 1);
    return ds;
  }

  produceEvents(events: HistoryEvent[]): Promise<Delivered[]> {
    return this.produce(events.map((e) => ({ key: e.envelope.accountId, value: e.json })));
  }

  /** Next offsets this consumer committed in Postgres, per partition. */
  async committed(): Promise<Map<number, number>> {
    const { rows } = await this.pg.query<{ partition: number; next_offset: string }>(
      'SELECT partition, next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2', [this.group, this.topics.events]);
    return new Map(rows.map((r) => [r.partition, Number(r.next_offset)]));
  }

  async committedTotal(): Promise<number> {
    let n = 0;
    for (const v of (await this.committed()).values()) n += v;
    return n;
  }

  /** Polls until the projector committed everything produced so far. */
  async caughtUp(timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.committed();
      const behind = [...this.produced].filter(([p, n]) => (c.get(p) ?? 0) < n);
      if (behind.length === 0) return;
      if (Date.now() > deadline) throw new Error(`projector did not catch up within ${timeoutMs} ms: ${behind.map(([p, n]) => `p${p} ${c.get(p) ?? 0}/${n}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Every difference between the read models and the fold of the events table (empty = equal). */
  async diffWithEventStore(): Promise<string[]> {
    return diffProjections(this.pg);
  }

  async counts(): Promise<{ accounts: number; transactions: number; events: number }> {
    const { rows: [r] } = await this.pg.query(`SELECT (SELECT count(*)::int FROM account_projections) AS accounts,
      (SELECT count(*)::int FROM transaction_projections) AS transactions, (SELECT count(*)::int FROM events) AS events`);
    return r;
  }

  async release(): Promise<void> {
    for (const c of this.children) await this.kill(c).catch(() => undefined);
    for (const p of this.inProcess) await p.stop().catch(() => undefined);
    await this.dlq.close().catch(() => undefined);
    await this.producer.close().catch(() => undefined);
    await this.pg.end().catch(() => undefined);
    await this.db.drop().catch((e: unknown) => console.error('could not drop test database', e));
  }
}

/** How the read models differ from the fold of the events table (empty when they agree), one line per difference. */
export async function diffProjections(pg: Client): Promise<string[]> {
  const { rows: evs } = await pg.query<{ payload: EventEnvelope }>('SELECT payload FROM events ORDER BY account_id, version');
  const want = foldHistory(evs.map((r) => r.payload));
  const iso = (d: Date | null) => (d === null ? null : d.toISOString());
  const { rows: accs } = await pg.query('SELECT account_id::text, owner_name, currency, balance::text, status, version::text, opened_at, updated_at, closed_at FROM account_projections');
  const { rows: txs } = await pg.query('SELECT account_id::text, version::text, event_id::text, event_type, amount::text, balance_after::text, currency, command_id::text, recorded_at, transfer_id::text, counterparty_id::text FROM transaction_projections');
  const diffs: string[] = [];
  const seenA = new Set<string>();
  for (const r of accs) {
    const got: ExpectedAccount = { ...r, opened_at: iso(r.opened_at)!, updated_at: iso(r.updated_at)!, closed_at: iso(r.closed_at) };
    const w = want.accounts.get(r.account_id);
    seenA.add(r.account_id);
    if (!w) diffs.push(`account ${r.account_id} projected but not in the event store`);
    else if (JSON.stringify(got) !== JSON.stringify(w)) diffs.push(`account ${r.account_id}: got ${JSON.stringify(got)} want ${JSON.stringify(w)}`);
  }
  for (const id of want.accounts.keys()) if (!seenA.has(id)) diffs.push(`account ${id} missing`);
  const seenT = new Set<string>();
  for (const r of txs) {
    const k = `${r.account_id}/${r.version}`;
    const got: ExpectedTransaction = { ...r, recorded_at: iso(r.recorded_at)! };
    const w = want.transactions.get(k);
    seenT.add(k);
    if (!w) diffs.push(`transaction ${k} projected but not in the fold`);
    else if (JSON.stringify(got) !== JSON.stringify(w)) diffs.push(`transaction ${k}: got ${JSON.stringify(got)} want ${JSON.stringify(w)}`);
  }
  for (const k of want.transactions.keys()) if (!seenT.has(k)) diffs.push(`transaction ${k} missing`);
  return diffs;
}

/** Waits (up to `timeoutMs`) for the read models to be the fold of the events table; returns what still differs. */
export async function diffOnceCaughtUp(pg: Client, timeoutMs = 60000): Promise<string[]> {
  for (const until = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 200))) {
    const diffs = await diffProjections(pg);
    if (diffs.length === 0 || Date.now() > until) return diffs;
  }
}
