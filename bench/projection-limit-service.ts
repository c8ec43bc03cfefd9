/**
 * The end-to-end limit of the projection job on this machine: the least any
 * projector does per event, and nothing more. Consume an event, write one
 * transaction row per event with binary COPY, one folded account row per
 * account per flush through the same staging-table upsert, and the consumer
 * offsets, in ONE durable transaction per flush, rows in key order like the
 * projector's. Like the projector, a flush is encoded while the one before it
 * commits (the projector prepares ahead in workers), so the encoding is never
 * on Postgres's clock; and like limit.e2e, it never waits for itself:
 * partitions are split over LANES lanes, each with its own connection,
 * committing its own flushes (an account's events are all in one partition,
 * so lanes never touch the same rows): a ceiling of what Kafka and Postgres
 * allow for this work with two connections, where the projector commits one
 * flush at a time. No JSON parsing (the account comes from the key, the
 * version is counted), no validation, no skipping, no random ids per row;
 * amounts, ids and times are constants of realistic size. The bench measures
 * it exactly as it measures the projector, and banking-es's projector beating
 * it means this limit is wrong. argv: brokers eventsTopic databaseUrl [lanes]
 */
import Kafka from 'node-rdkafka';
import { randomUUID } from 'node:crypto';
import { Client, type PoolClient } from 'pg';
import { CopyWriter } from '../src/codec/pgcopy';
import { copyIn } from '../src/db/sql/copy-in';
import { upsertOffsets } from '../src/db/sql/consumer-offsets';
import { upsertAccountProjections } from '../src/db/sql/upsert-account-projections';
import { TRANSACTION_COLUMNS } from '../src/codec/rows';

const [brokers, events, dbUrl, lanesArg] = process.argv.slice(2);
const LANES = Number(lanesArg ?? 2);
if (!Number.isInteger(LANES) || LANES < 1) throw new Error(`lanes must be a positive integer, not ${lanesArg}`);
const GROUP = `projection-limit-${process.pid}`;
// the projector's own defaults (projections.batchSize / batchTimeMs): a flush is 20,000 events or 50 ms old
const FLUSH = 20_000;
const FLUSH_MS = 50;
// event ids are not unique in transaction_projections (its key is account and version): a few suffice
const EVENT_IDS = Array.from({ length: 64 }, () => randomUUID());
const COMMAND_ID = randomUUID();

const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': GROUP, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
const versions = new Map<string, number>();

interface Encoded { tx: Buffer; accounts: Buffer; next: Map<number, number> }

function encode(msgs: Kafka.Message[]): Encoded {
  const folded = new Map<string, number>();
  const next = new Map<number, number>();
  const now = Date.now();
  const rows: Array<[string, number]> = [];
  for (const m of msgs) {
    const account = m.key!.toString('latin1');
    const v = (versions.get(account) ?? 0) + 1;
    versions.set(account, v);
    folded.set(account, v);
    rows.push([account, v]);
    if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
  }
  // key order, as the projector writes them (project-shard.ts): Postgres inserts sorted keys faster
  rows.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
  const tx = new CopyWriter(msgs.length * 160);
  for (let i = 0; i < rows.length; i++) tx.row(11).uuid(rows[i][0]).int8(rows[i][1]).uuid(EVENT_IDS[i & 63]).text('MoneyDeposited').int8(123456).int8(98765432).text('USD').uuid(COMMAND_ID).timestamptz(now).null().null();
  const accounts = new CopyWriter(folded.size * 120);
  for (const [account, v] of [...folded].sort((x, y) => (x[0] < y[0] ? -1 : 1))) accounts.row(9).uuid(account).text('Owner').text('USD').int8(98765432).text('open').int8(v).timestamptz(now).timestamptz(now).null();
  return { tx: tx.finish(), accounts: accounts.finish(), next };
}

class Lane {
  readonly db = new Client({ connectionString: dbUrl });
  batch: Kafka.Message[] = [];
  started = 0;
  private sealing = false;

  private async write(e: Encoded): Promise<void> {
    const client = this.db as unknown as PoolClient;
    await this.db.query('BEGIN');
    await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, [e.tx]);
    await upsertAccountProjections(client, [e.accounts]);
    await upsertOffsets(client, GROUP, events, [...e.next].map(([partition, n]) => ({ partition, next: n, published: null })));
    await this.db.query('COMMIT');
  }

  /**
   * Seals flushes (full, or FLUSH_MS old) and encodes each at once, then commits them one transaction at a
   * time: flush N+1 is encoded while N commits, and what arrives meanwhile is the flush after.
   */
  async seal(): Promise<void> {
    if (this.sealing) return;
    this.sealing = true;
    let committing: Promise<void> = Promise.resolve();
    while (this.batch.length) {
      const age = Date.now() - this.started;
      if (this.batch.length < FLUSH && age < FLUSH_MS) await new Promise((r) => setTimeout(r, FLUSH_MS - age));
      const msgs = this.batch.length > FLUSH ? this.batch.splice(0, FLUSH) : this.batch;
      if (msgs === this.batch) this.batch = [];
      this.started = Date.now();
      const encoded = encode(msgs);
      await committing;
      committing = this.write(encoded);
    }
    await committing;
    this.sealing = false;
    if (this.batch.length) void this.seal();
  }
}

const lanes = Array.from({ length: LANES }, () => new Lane());
void Promise.all(lanes.map((l) => l.db.connect())).then(() => c.connect({}, () => {
  c.subscribe([events]);
  c.setDefaultConsumeTimeout(10);
  c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
  const loop = () => c.consume(5000, (_e, msgs) => {
    for (const m of msgs ?? []) {
      const lane = lanes[m.partition % LANES];
      if (lane.batch.length === 0) lane.started = Date.now();
      lane.batch.push(m);
    }
    for (const l of lanes) if (l.batch.length) void l.seal();
    setImmediate(loop);
  });
  loop();
}));
process.on('SIGTERM', () => void Promise.all(lanes.map((l) => l.db.end())).finally(() => process.exit(0)));
