/**
 * The end-to-end limit of the command job on this machine: the least any
 * implementation of the contract must do per command, and nothing more.
 * Consume a command, write one event row per command with binary COPY and
 * the consumer offsets in ONE durable transaction per batch, then produce an
 * outcome per command. No parsing beyond the ids, no state, no decision;
 * re-sent commands are recognised by an in-memory set only (no row); the
 * payload is one pre-encoded envelope of realistic size. Batches are collected while the previous one commits (the same
 * overlap banking-es has). The load driver against it shows what Kafka,
 * Postgres and the driver leave for banking-es's own work.
 * argv: brokers commandsTopic resultsTopic databaseUrl
 */
import Kafka from 'node-rdkafka';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { CopyWriter } from '../src/codec/pgcopy';
import { encodeEnvelope } from '../src/codec/envelope';
import { copyIn } from '../src/db/sql/copy-in';
import { upsertOffsets } from '../src/db/sql/consumer-offsets';
import type { PoolClient } from 'pg';

const [brokers, commands, results, dbUrl] = process.argv.slice(2);
const GROUP = `e2e-limit-${process.pid}`;
const BATCH = 5000;
const COLUMNS = 'account_id, version, event_id, event_type, payload, command_id, recorded_at';
const payload = encodeEnvelope({ eventId: randomUUID(), accountId: randomUUID(), version: 1, type: 'MoneyDeposited',
  data: { amount: '1234.56', balanceAfter: '987654.32', currency: 'USD' }, commandId: randomUUID(), recordedAt: new Date().toISOString() });

const db = new Client({ connectionString: dbUrl });
const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': GROUP, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
const p = new Kafka.Producer({ 'bootstrap.servers': brokers, 'linger.ms': 2, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4' } as Kafka.ProducerGlobalConfig);
const versions = new Map<string, number>();
const seen = new Set<string>();
let batch: Kafka.Message[] = [];
let committing = false;

async function commit(msgs: Kafka.Message[]): Promise<void> {
  const rows = new CopyWriter(msgs.length * (payload.length + 160));
  const next = new Map<number, number>();
  const now = Date.now();
  for (const m of msgs) {
    const account = m.key!.toString();
    const command = m.value!.toString('latin1', 14, 50);
    if (!seen.has(command)) {
      seen.add(command);
      const v = (versions.get(account) ?? 0) + 1;
      versions.set(account, v);
      rows.row(7).uuid(account).int8(v).uuid(randomUUID()).text('MoneyDeposited').jsonb(payload).uuid(command).timestamptz(now);
    }
    if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
  }
  await db.query('BEGIN');
  await copyIn(db as unknown as PoolClient, 'events', COLUMNS, [rows.finish()]);
  await upsertOffsets(db as unknown as PoolClient, GROUP, commands, [...next].map(([partition, n]) => ({ partition, next: n, published: null })));
  await db.query('COMMIT');
  for (const m of msgs) {
    const id = m.value!.toString('latin1', 14, 50); // {"commandId":"<uuid>"…
    for (;;) { try { p.produce(results, null, Buffer.from(`{"commandId":"${id}","status":"accepted"}`), m.key ?? undefined); break; } catch { p.poll(); } }
  }
}

/** Commits what has been collected, one transaction at a time; what arrives meanwhile is the next batch. */
async function drain(): Promise<void> {
  if (committing) return;
  committing = true;
  while (batch.length) {
    const msgs = batch.length > BATCH ? batch.splice(0, BATCH) : batch;
    if (msgs === batch) batch = [];
    await commit(msgs);
  }
  committing = false;
}

void db.connect().then(() => p.connect({}, () => {
  p.setPollInterval(5);
  c.connect({}, () => {
    c.subscribe([commands]);
    c.setDefaultConsumeTimeout(10);
    c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
    const loop = () => c.consume(2000, (_e, msgs) => {
      for (const m of msgs ?? []) batch.push(m);
      if (batch.length) void drain();
      setImmediate(loop);
    });
    loop();
  });
}));
process.on('SIGTERM', () => p.flush(2000, () => void db.end().finally(() => process.exit(0))));
