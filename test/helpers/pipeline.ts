/**
 * One command pipeline under test: its own database, topics and consumer
 * group, a producer, readers of the outcome and dead-letter topics, a pg
 * client, and the daemon child (started, stopped, killed, restarted). Plus
 * command builders in the docs/architecture.md §2.1 wire shape. `release()` frees all of it.
 */
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { createTestDatabase, testStack, uniqueTopic, type TestDb } from './stack';
import { producer, TopicReader, type Delivered, type Headers, type ReadMessage, type TestProducer } from './kafka';
import { Daemon } from './daemon';

export interface Outcome {
  commandId: string;
  accountId: string;
  type: string;
  status: 'accepted' | 'rejected' | 'duplicate';
  reason?: string;
  detail?: string;
  version?: number;
  balance?: string;
  originalStatus?: 'accepted' | 'rejected';
  processedAt: string;
}

export type Cmd = Record<string, unknown> & { commandId: string; accountId: string; type: string };

export const cmd = {
  open: (accountId: string, initialBalance = '0', extra: Record<string, unknown> = {}): Cmd =>
    ({ commandId: randomUUID(), type: 'OpenAccount', accountId, ownerName: 'Test Owner', currency: 'USD', initialBalance, ...extra }),
  deposit: (accountId: string, amount: string, extra: Record<string, unknown> = {}): Cmd =>
    ({ commandId: randomUUID(), type: 'Deposit', accountId, amount, ...extra }),
  withdraw: (accountId: string, amount: string, extra: Record<string, unknown> = {}): Cmd =>
    ({ commandId: randomUUID(), type: 'Withdraw', accountId, amount, ...extra }),
  close: (accountId: string, extra: Record<string, unknown> = {}): Cmd =>
    ({ commandId: randomUUID(), type: 'CloseAccount', accountId, ...extra }),
};

/** Environment of a test daemon with the commands role on its own database, topics and consumer group. */
export function commandsDaemonEnv(dbUrl: string, topics: { commands: string; results: string; dlq: string }, name: string): Record<string, string> {
  return {
    DATABASE_URL: dbUrl,
    ROLES: 'commands',
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
    PIPELINE_WORKERS: '1',
    KAFKA_TOPIC_COMMANDS: topics.commands,
    KAFKA_TOPIC_RESULTS: topics.results,
    KAFKA_TOPIC_COMMANDS_DLQ: topics.dlq,
    // the transfer steps' topics, this test's own (the transfers role runs where ROLES names it)
    KAFKA_TOPIC_TRANSFERS: `${topics.commands}.transfers`,
    KAFKA_TOPIC_TRANSFERS_DLQ: `${topics.commands}.transfers-dlq`,
    KAFKA_TRANSFER_GROUP_ID: `${name}-xfer-${randomUUID().slice(0, 8)}`,
    KAFKA_GROUP_ID: `${name}-${randomUUID().slice(0, 8)}`,
    SHUTDOWN_TIMEOUT_MS: '10000',
  };
}

export class PipelineFixture {
  readonly brokers: string;
  readonly topics: { commands: string; results: string; dlq: string };
  readonly group: string;
  daemon: Daemon | undefined;
  private readonly daemons: Daemon[] = [];

  private constructor(
    readonly db: TestDb,
    readonly pg: Client,
    readonly producer: TestProducer,
    readonly outcomes: TopicReader<Outcome>,
    readonly dlq: TopicReader,
    topics: { commands: string; results: string; dlq: string },
    private readonly baseEnv: Record<string, string>,
  ) {
    this.brokers = testStack().kafka.brokers;
    this.topics = topics;
    this.group = baseEnv.KAFKA_GROUP_ID;
  }

  /** Creates the database, the three topics (4 partitions each) and the clients; starts no daemon. */
  static async create(name: string, env: Record<string, string> = {}): Promise<PipelineFixture> {
    const s = testStack();
    const topics = { commands: uniqueTopic(`${name}.commands`), results: uniqueTopic(`${name}.results`), dlq: uniqueTopic(`${name}.dlq`) };
    const db = await createTestDatabase(name);
    const cleanup: Array<() => Promise<unknown>> = [() => db.drop()];
    try {
      const pg = new Client({ connectionString: db.url });
      pg.on('error', () => undefined);
      await pg.connect();
      cleanup.push(() => pg.end());
      const prod = await producer(s.kafka.brokers);
      cleanup.push(() => prod.close());
      await prod.ensureTopics([topics.commands, topics.results, topics.dlq, `${topics.commands}.transfers`]);
      const outcomes = await TopicReader.open<Outcome>(s.kafka.brokers, topics.results);
      cleanup.push(() => outcomes.close());
      const dlq = await TopicReader.open(s.kafka.brokers, topics.dlq);
      const baseEnv = { ...commandsDaemonEnv(db.url, topics, name), ...env };
      return new PipelineFixture(db, pg, prod, outcomes, dlq, topics, baseEnv);
    } catch (e) {
      for (const c of cleanup.reverse()) await c().catch(() => undefined);
      throw e;
    }
  }

  /** Starts a daemon (env merged over the fixture's) and waits until it owns all 4 partitions. */
  async start(env: Record<string, string> = {}, assignTimeoutMs = 30000): Promise<Daemon> {
    const d = Daemon.start({ ...this.baseEnv, ...env });
    this.daemons.push(d);
    this.daemon = d;
    try {
      await d.assigned(4, assignTimeoutMs);
    } catch (e) {
      await d.kill();
      throw e;
    }
    return d;
  }

  /** The daemon's environment (database, topics, group), for the CLI against the same topics. */
  get env(): Record<string, string> {
    return { ...this.baseEnv };
  }

  /** Starts one more instance in the fixture's group next to the running one; the caller waits for its share. */
  join(env: Record<string, string> = {}): Daemon {
    const d = Daemon.start({ ...this.baseEnv, ...env });
    this.daemons.push(d);
    return d;
  }

  /** SIGTERM; asserts a clean exit 0. */
  async stop(): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    const r = await d.stop();
    this.daemon = undefined;
    if (r.code !== 0) throw new Error(`daemon exited with ${r.code ?? r.signal} on SIGTERM:\n${d.output()}`);
  }

  async restart(env: Record<string, string> = {}): Promise<Daemon> {
    await this.stop();
    return this.start(env);
  }

  send(c: Cmd | { key: string | Buffer | null; value: string | Buffer | null; headers?: Headers }): Promise<Delivered> {
    if ('commandId' in c) return this.producer.send(this.topics.commands, c.accountId, JSON.stringify(c));
    return this.producer.send(this.topics.commands, c.key, c.value, c.headers);
  }

  /** Sends all, in order (same key, same partition, idempotent producer), and waits for every delivery report. */
  sendAll(cs: Cmd[]): Promise<Delivered[]> {
    return Promise.all(cs.map((c) => this.send(c)));
  }

  /** Outcomes read so far for one command. */
  outcomesOf(commandId: string): Outcome[] {
    return this.outcomes.messages.filter((m) => m.value?.commandId === commandId).map((m) => m.value);
  }

  /** Waits until each command has at least `n` outcomes; returns the latest outcome of each, in the order given. */
  async outcomeFor(cs: Cmd[], timeoutMs = 30000, n = 1): Promise<Outcome[]> {
    const ids = new Set(cs.map((c) => c.commandId));
    const counts = new Map<string, number>();
    let scanned = 0;
    await this.outcomes.waitFor((msgs) => {
      for (; scanned < msgs.length; scanned++) {
        const id = msgs[scanned].value?.commandId;
        if (id && ids.has(id)) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return [...ids].every((id) => (counts.get(id) ?? 0) >= n);
    }, timeoutMs, `outcomes of ${ids.size} commands`);
    const last = new Map<string, Outcome>();
    for (const m of this.outcomes.messages) if (m.value?.commandId && ids.has(m.value.commandId)) last.set(m.value.commandId, m.value);
    return cs.map((c) => last.get(c.commandId)!);
  }

  dlqMessages(): ReadMessage[] {
    return this.dlq.messages;
  }

  async events(accountId: string): Promise<Array<{ version: number; event_type: string; command_id: string; payload: { data: Record<string, unknown>; version: number; commandId: string; type: string } }>> {
    const { rows } = await this.pg.query('SELECT version::int AS version, event_type, command_id::text AS command_id, payload FROM events WHERE account_id = $1 ORDER BY version', [accountId]);
    return rows;
  }

  async release(): Promise<void> {
    for (const d of this.daemons) await d.kill().catch(() => undefined);
    await this.outcomes.close().catch(() => undefined);
    await this.dlq.close().catch(() => undefined);
    await this.producer.close().catch(() => undefined);
    await this.pg.end().catch(() => undefined);
    await this.db.drop().catch((e: unknown) => console.error('could not drop test database', e));
  }
}
