/**
 * The rig of the reliability scenarios (docs/reliability.md): one command
 * pipeline with its own database, topics and consumer group, like
 * PipelineFixture, but pointable at private brokers or a private Postgres,
 * able to run several daemons at once, and built for long streams: outcomes go
 * straight into a CommandOracle instead of being kept, and the producer never
 * runs more than `maxAhead` commands ahead of the outcomes (the mock cluster
 * keeps only a few MB per partition).
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Kafka from 'node-rdkafka';
import { Client } from 'pg';
import { createTestDatabase, testStack, uniqueTopic, type TestDb } from './stack';
import { closeReader, producer, testConsumer, TopicReader, type TestProducer } from './kafka';
import { Daemon } from './daemon';
import { commandsDaemonEnv } from './pipeline';
import { verifyAccountProjections, verifyTransactionProjections, type CommandOracle, type OutcomeJson } from './oracle';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads every partition of a topic from the beginning and hands each parsed value to `sink`; keeps nothing. */
export class OutcomeTap {
  private running = true;
  private loop: Promise<void> = Promise.resolve();
  count = 0;

  private constructor(private readonly raw: Kafka.KafkaConsumer) {}

  static async open(brokers: string, topic: string, partitions: number, sink: (o: OutcomeJson | undefined) => void): Promise<OutcomeTap> {
    const raw = await testConsumer(brokers, 'banking-es-test-tap', `test-tap-${randomUUID()}`);
    raw.assign(Array.from({ length: partitions }, (_, partition) => ({ topic, partition, offset: 0 })));
    const tap = new OutcomeTap(raw);
    raw.setDefaultConsumeTimeout(50);
    tap.loop = new Promise<void>((resolve) => {
      const next = () => {
        if (!tap.running) return resolve();
        raw.consume(5000, (_err, msgs) => {
          for (const m of msgs ?? []) {
            tap.count++;
            let v: OutcomeJson | undefined;
            try { v = m.value ? (JSON.parse(m.value.toString('utf8')) as OutcomeJson) : undefined; } catch { v = undefined; }
            sink(v);
          }
          if (!tap.running) return resolve();
          setImmediate(next);
        });
      };
      next();
    });
    return tap;
  }

  async close(): Promise<void> {
    this.running = false;
    await closeReader(this.raw, this.loop);
  }
}

export interface RigOptions {
  name: string;
  /** Brokers of a private mock cluster; default the test stack's. */
  brokers?: string;
  /** A private Postgres database URL; default a fresh database on the test stack's Postgres. */
  dbUrl?: string;
  /** Env of every daemon started by this rig (over the defaults below). */
  env?: Record<string, string>;
  partitions?: number;
  /**
   * Run every role (commands, projections, relay with CDC_MODE=relay) on this
   * rig's own event topic, event DLQ and projection group. The logical relay's
   * replication slot is cluster-wide: `release()` drops this database's slots.
   */
  projections?: boolean;
  /** Create the topics before any daemon starts (default). false: the daemons meet a cluster without them, as a new user does. */
  createTopics?: boolean;
}

/** How far the read models are behind the event store (all zero = caught up). */
export interface ProjectionProgress { events: number; projectedVersions: number; movements: number; transactionRows: number }

export class Rig {
  readonly daemons: Daemon[] = [];
  private taps: OutcomeTap[] = [];
  private released = false;
  private dlqReader: TopicReader | undefined;

  private constructor(
    readonly brokers: string,
    readonly dbUrl: string,
    readonly pg: Client,
    readonly producer: TestProducer,
    readonly topics: { commands: string; results: string; dlq: string; transfers: string; transfersDlq: string; events?: string; eventsDlq?: string },
    readonly env: Record<string, string>,
    readonly partitions: number,
    private readonly db: TestDb | undefined,
  ) {}

  static async create(opts: RigOptions): Promise<Rig> {
    const brokers = opts.brokers ?? testStack().kafka.brokers;
    const partitions = opts.partitions ?? 4;
    const commands = uniqueTopic(`${opts.name}.commands`);
    const topics = {
      // the transfer steps' topics are named after the command topic (commandsDaemonEnv)
      commands, results: uniqueTopic(`${opts.name}.results`), dlq: uniqueTopic(`${opts.name}.dlq`), transfers: `${commands}.transfers`, transfersDlq: `${commands}.transfers-dlq`,
      ...(opts.projections ? { events: uniqueTopic(`${opts.name}.events`), eventsDlq: uniqueTopic(`${opts.name}.events-dlq`) } : {}),
    };
    const cleanup: Array<() => Promise<unknown>> = [];
    try {
      const db = opts.dbUrl ? undefined : await createTestDatabase(opts.name);
      if (db) cleanup.push(() => db.drop());
      const dbUrl = opts.dbUrl ?? db!.url;
      const pg = new Client({ connectionString: dbUrl });
      pg.on('error', () => undefined);
      await pg.connect();
      cleanup.push(() => pg.end());
      const prod = await producer(brokers);
      cleanup.push(() => prod.close());
      if (opts.createTopics !== false) await prod.ensureTopics([topics.commands, topics.results, topics.dlq, topics.transfers, topics.transfersDlq, ...(topics.events ? [topics.events, topics.eventsDlq!] : [])], partitions);
      const projectionEnv: Record<string, string> = topics.events ? {
        // projections before relay: a standby relay's start() waits up to 15 s for the slot, and would hold back the projection consumer
        ROLES: 'commands,projections,relay',
        CDC_MODE: 'relay',
        KAFKA_TOPIC_EVENTS: topics.events,
        KAFKA_TOPIC_EVENTS_DLQ: topics.eventsDlq!,
        KAFKA_PROJECTION_GROUP_ID: `${opts.name}-proj-${randomUUID().slice(0, 8)}`,
      } : {};
      const env = {
        ...commandsDaemonEnv(dbUrl, topics, opts.name),
        BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR ?? '',
        KAFKA_BROKERS: brokers,
        ...projectionEnv,
        ...opts.env,
      };
      return new Rig(brokers, dbUrl, pg, prod, topics, env, partitions, db);
    } catch (e) {
      for (const c of cleanup.reverse()) await c().catch(() => undefined);
      throw e;
    }
  }

  /** Feeds every outcome on the results topic to the oracle. */
  async tap(oracle: CommandOracle): Promise<OutcomeTap> {
    const t = await OutcomeTap.open(this.brokers, this.topics.results, this.partitions, (o) => oracle.observe(o));
    this.taps.push(t);
    return t;
  }

  async dlq(): Promise<TopicReader> {
    this.dlqReader ??= await TopicReader.open(this.brokers, this.topics.dlq, this.partitions);
    return this.dlqReader;
  }

  /** Starts a daemon; with `partitions` set, waits until it logs owning that many. */
  async start(env: Record<string, string> = {}, opts: { partitions?: number | null; timeoutMs?: number } = {}): Promise<Daemon> {
    const d = Daemon.start({ ...this.env, ...env });
    this.daemons.push(d);
    const partitions = opts.partitions === undefined ? this.partitions : opts.partitions;
    if (partitions !== null) await d.assigned(partitions, opts.timeoutMs ?? 45000);
    return d;
  }

  /**
   * Sends the oracle's stream in chunks until `stop()` says so or `total` were
   * sent, never more than `maxAhead` commands ahead of the outcomes.
   */
  async stream(oracle: CommandOracle, opts: { total?: number; stop?: () => boolean; chunk?: number; pauseMs?: number; maxAhead?: number }): Promise<number> {
    const chunk = opts.chunk ?? 200;
    const maxAhead = opts.maxAhead ?? 100_000;
    const total = opts.total ?? Number.POSITIVE_INFINITY;
    let n = 0;
    const stopped = () => this.released || (opts.stop?.() ?? false);
    while (n < total && !stopped()) {
      while (oracle.outstanding + chunk > maxAhead && !stopped()) await sleep(20);
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < chunk && n < total; i++, n++) {
        const c = oracle.nextCommand();
        sends.push(this.producer.send(this.topics.commands, c.accountId, c.json));
      }
      await Promise.all(sends);
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
    return n;
  }

  /** Waits until every command sent has its outcomes; rejects naming some that are missing. */
  async complete(oracle: CommandOracle, timeoutMs: number): Promise<number> {
    const start = Date.now();
    while (!oracle.complete) {
      if (Date.now() - start > timeoutMs) throw new Error(`not every command answered after ${timeoutMs} ms: ${oracle.summary()}; missing e.g. ${oracle.missing().join(', ')}`);
      await sleep(50);
    }
    return Date.now() - start;
  }

  /** Events in the store against what the read models hold (the projection pipeline's progress). */
  async projectionProgress(): Promise<ProjectionProgress> {
    const { rows: [r] } = await this.pg.query<{ events: number; projected: number; movements: number; rows: number }>(
      `SELECT (SELECT count(*)::int FROM events) AS events,
              (SELECT coalesce(sum(version), 0)::int FROM account_projections) AS projected,
              (SELECT count(*)::int FROM events WHERE event_type <> 'AccountClosed') AS movements,
              (SELECT count(*)::int FROM transaction_projections) AS rows`);
    return { events: r.events, projectedVersions: r.projected, movements: r.movements, transactionRows: r.rows };
  }

  /**
   * Polls until the read models hold every event in the store (each account's
   * projected version sums to the event count, one transaction row per money
   * movement), then compares them with the oracle and the fold of the events
   * table. Returns the catch-up time and every difference found (empty = equal).
   */
  async projectionsCaughtUp(oracle: CommandOracle, timeoutMs: number): Promise<{ ms: number; caughtUp: boolean; progress: ProjectionProgress; problems: string[] }> {
    const start = Date.now();
    let progress = await this.projectionProgress();
    const done = (p: ProjectionProgress) => p.projectedVersions === p.events && p.transactionRows === p.movements;
    while (!done(progress) && Date.now() - start < timeoutMs) {
      await sleep(250);
      progress = await this.projectionProgress();
    }
    const ms = Date.now() - start;
    const caughtUp = done(progress);
    const problems = [
      ...(caughtUp ? [] : [`projections did not catch up within ${timeoutMs} ms: ${JSON.stringify(progress)}`]),
      ...(await verifyAccountProjections(this.pg, oracle)),
      ...(await verifyTransactionProjections(this.pg)),
    ];
    return { ms, caughtUp, progress, problems };
  }

  /**
   * Drops this database's replication slots (the logical relay's), so the
   * database can be dropped. A slot still held by a walsender (its relay was
   * just SIGKILLed) is freed by terminating that walsender first.
   */
  async dropReplicationSlots(timeoutMs = 15000): Promise<string[]> {
    const dropped: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.pg.query<{ slot_name: string; active_pid: number | null }>(
        'SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = current_database()');
      if (rows.length === 0) return dropped;
      for (const r of rows) {
        try {
          if (r.active_pid !== null) await this.pg.query('SELECT pg_terminate_backend($1)', [r.active_pid]);
          else {
            await this.pg.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]);
            dropped.push(r.slot_name);
          }
        } catch (e) {
          if (Date.now() > deadline) throw e; // e.g. "replication slot … is active for PID …": the walsender is still exiting
        }
      }
      if (Date.now() > deadline) throw new Error(`replication slots of this database still present after ${timeoutMs} ms: ${rows.map((r) => r.slot_name).join(', ')}`);
      await sleep(100);
    }
  }

  /** Log lines at level >= 50 (error, fatal) of every daemon this rig started. */
  errorLines(): string[] {
    return this.daemons.flatMap((d) => d.logs().filter((l) => (l.level ?? 0) >= 50).map((l) => JSON.stringify(l)));
  }

  /**
   * What the commit's check said of the states the daemons read from Redis: how many they read there
   * (over the daemons still answering) and every warning that one was not a state Postgres holds. A
   * daemon killed and started again reads Redis: under kills and hand-overs every state it finds there
   * must be one its own ledger wrote (docs/architecture.md §6).
   */
  async redisStates(): Promise<{ read: number; unknown: string[] }> {
    let read = 0;
    for (const d of this.daemons) read += (await d.metric('banking_es_state_lookups_total{answered="redis"}').catch(() => undefined)) ?? 0;
    const unknown = this.daemons.flatMap((d) => d.logs().filter((l) => /not one Postgres holds/.test(String(l.msg))).map((l) => JSON.stringify(l)));
    return { read, unknown };
  }

  /** Writes every daemon's output to <dir>/<name>-<n>.log, for a failed run. */
  dumpLogs(name: string, dir = process.env.RELIABILITY_LOG_DIR ?? os.tmpdir()): string[] {
    return this.daemons.map((d, i) => {
      const file = path.join(dir, `${name}-daemon-${i}.log`);
      fs.writeFileSync(file, d.output());
      return file;
    });
  }

  async release(): Promise<void> {
    this.released = true; // ends any stream still running
    for (const d of this.daemons) await d.kill().catch(() => undefined);
    for (const t of this.taps) await t.close().catch(() => undefined);
    await this.dlqReader?.close().catch(() => undefined);
    await this.producer.close().catch(() => undefined);
    if (this.topics.events) await this.dropReplicationSlots().catch((e: unknown) => console.error('could not drop the replication slots of the test database', e));
    await this.pg.end().catch(() => undefined);
    await this.db?.drop().catch((e: unknown) => console.error('could not drop test database', e));
  }
}
