/**
 * The end-to-end limit of the projection job on this machine: the least any
 * projector does per event, and nothing more. Consume an event, write one
 * transaction row per event with binary COPY, one folded account row per
 * account per flush through the same staging-table upsert, and the consumer
 * offsets, in ONE durable transaction per flush, rows in key order like the
 * projector's; flushes are collected while the previous one commits. No JSON
 * parsing (the account comes from the key,
 * the version is counted), no validation, no skipping; amounts, ids and times
 * are constants of realistic size. The bench measures it exactly as it
 * measures the projector. argv: brokers eventsTopic databaseUrl
 */
import Kafka from 'node-rdkafka';
import { randomUUID } from 'node:crypto';
import { Client, type PoolClient } from 'pg';
import { CopyWriter } from '../src/codec/pgcopy';
import { copyIn } from '../src/db/sql/copy-in';
import { upsertOffsets } from '../src/db/sql/consumer-offsets';
import { upsertAccountProjections } from '../src/db/sql/upsert-account-projections';
import { TRANSACTION_COLUMNS } from '../src/codec/rows';

const [brokers, events, dbUrl] = process.argv.slice(2);
const GROUP = `projection-limit-${process.pid}`;
// the projector's own defaults (projections.batchSize / batchTimeMs): a flush is 20,000 events or 50 ms old
const FLUSH = 20_000;
const FLUSH_MS = 50;
const COMMAND_ID = randomUUID();

const db = new Client({ connectionString: dbUrl });
const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': GROUP, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
const versions = new Map<string, number>();
let batch: Kafka.Message[] = [];
let batchStarted = 0;
let committing = false;

async function commit(msgs: Kafka.Message[]): Promise<void> {
  const tx = new CopyWriter(msgs.length * 160);
  const folded = new Map<string, number>();
  const next = new Map<number, number>();
  const now = Date.now();
  const rows: Array<[string, number]> = [];
  for (const m of msgs) {
    const account = m.key!.toString();
    const v = (versions.get(account) ?? 0) + 1;
    versions.set(account, v);
    folded.set(account, v);
    rows.push([account, v]);
    if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
  }
  // key order, as the projector writes them (project-shard.ts): Postgres inserts sorted keys faster
  rows.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
  for (const [account, v] of rows) tx.row(9).uuid(account).int8(v).uuid(randomUUID()).text('MoneyDeposited').int8(123456).int8(98765432).text('USD').uuid(COMMAND_ID).timestamptz(now);
  const accounts = new CopyWriter(folded.size * 120);
  for (const [account, v] of [...folded].sort((x, y) => (x[0] < y[0] ? -1 : 1))) accounts.row(9).uuid(account).text('Owner').text('USD').int8(98765432).text('open').int8(v).timestamptz(now).timestamptz(now).null();
  const client = db as unknown as PoolClient;
  await db.query('BEGIN');
  await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, [tx.finish()]);
  await upsertAccountProjections(client, [accounts.finish()]);
  await upsertOffsets(client, GROUP, events, [...next].map(([partition, n]) => ({ partition, next: n, published: null })));
  await db.query('COMMIT');
}

/** Commits flushes one transaction at a time; a flush is taken when full or FLUSH_MS old, and what arrives meanwhile is the next one. */
async function drain(): Promise<void> {
  if (committing) return;
  committing = true;
  while (batch.length) {
    const age = Date.now() - batchStarted;
    if (batch.length < FLUSH && age < FLUSH_MS) await new Promise((r) => setTimeout(r, FLUSH_MS - age));
    const msgs = batch.length > FLUSH ? batch.splice(0, FLUSH) : batch;
    if (msgs === batch) batch = [];
    batchStarted = Date.now();
    await commit(msgs);
  }
  committing = false;
}

void db.connect().then(() => c.connect({}, () => {
  c.subscribe([events]);
  c.setDefaultConsumeTimeout(10);
  c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
  const loop = () => c.consume(5000, (_e, msgs) => {
    if (batch.length === 0 && msgs?.length) batchStarted = Date.now();
    for (const m of msgs ?? []) batch.push(m);
    if (batch.length) void drain();
    setImmediate(loop);
  });
  loop();
}));
process.on('SIGTERM', () => void db.end().finally(() => process.exit(0)));
