/**
 * The physical limits a benchmark result is compared against, measured in
 * the same run on the same machine: binary COPY of the very rows the
 * pipeline writes, and Kafka produce / consume / round-trip rates of the very
 * messages it reads.
 */
import { Client, type PoolClient } from 'pg';
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../../src/kafka/client-config';
import { copyIn } from '../../src/db/sql/copy-in';
import { EVENT_COLUMNS } from '../../src/codec/rows';
import { decideShard } from '../../src/pipeline/commands/decide-shard';
import type { AccountState } from '../../src/domain/types';
import { Packer } from '../../src/pipeline/pack';
import { Workload } from '../../dev/loadgen/generator';

/** Event rows exactly as the pipeline encodes them (every column of EVENT_COLUMNS), in batches of `batch` rows. */
export function encodedEventBatches(rows: number, batch: number): Array<{ rows: number; data: Uint8Array }> {
  const w = new Workload({ accounts: Math.max(1, Math.floor(rows / 40)), commands: Math.floor(rows / 40) + rows, invalidRatio: 0, duplicateRatio: 0, seed: 11 });
  const out: Array<{ rows: number; data: Uint8Array }> = [];
  let pending: { key: string; value: string }[] = [];
  const states = new Map<string, AccountState>();
  const flush = () => {
    const p = new Packer(1 << 20);
    for (const c of pending) p.message(0, 0, Buffer.from(c.key), Buffer.from(c.value));
    const r = decideShard({ msgs: p.finish(), states: [...states.values()], known: null, replayBelow: null, maxMessageBytes: 65536, nowMs: Date.now(), hashSeed: 0 });
    for (const st of r.states) states.set(st.accountId, st);
    out.push({ rows: r.eventCount, data: r.events });
    pending = [];
  };
  for (let c = w.next(); c; c = w.next()) {
    if (c.expect !== 'accepted') continue;
    pending.push(c);
    if (pending.length === batch) flush();
  }
  if (pending.length) flush();
  return out;
}

/** rows/s of durable COPY transactions (BEGIN; COPY; COMMIT) into a fresh events table. */
export async function copyLimit(url: string, batches: Array<{ rows: number; data: Uint8Array }>): Promise<number> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('TRUNCATE events, command_rejections, consumer_offsets');
    let rows = 0;
    for (const b of batches) rows += b.rows;
    const t0 = performance.now();
    for (const b of batches) {
      await c.query('BEGIN');
      await copyIn(c as unknown as PoolClient, 'events', EVENT_COLUMNS, [b.data]);
      await c.query('COMMIT');
    }
    return rows / ((performance.now() - t0) / 1000);
  } finally {
    await c.end();
  }
}

function connect<T extends { connect: (o: object, cb: (e: unknown) => void) => unknown }>(c: T): Promise<T> {
  return new Promise((res, rej) => c.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res(c))));
}

export function commandMessages(n: number): Array<{ key: string; value: Buffer }> {
  const w = new Workload({ accounts: Math.max(1, Math.floor(n / 40)), commands: n, seed: 5 });
  const out: Array<{ key: string; value: Buffer }> = [];
  for (let c = w.next(); c; c = w.next()) out.push({ key: c.key, value: Buffer.from(c.value) });
  return out;
}

/** msgs/s that one node-rdkafka producer gets acknowledged (delivery reports). */
export async function produceLimit(brokers: string, topic: string, msgs: Array<{ key: string; value: Buffer }>): Promise<number> {
  const p = await connect(new Kafka.Producer({ 'bootstrap.servers': brokers, 'dr_cb': true, 'linger.ms': 2, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4' } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG));
  try {
    let acked = 0;
    const done = new Promise<void>((res) => p.on('delivery-report', () => { if (++acked === msgs.length) res(); }));
    p.setPollInterval(5);
    const t0 = performance.now();
    for (const m of msgs) {
      for (;;) { try { p.produce(topic, null, m.value, m.key); break; } catch { p.poll(); await new Promise((r) => setTimeout(r, 1)); } }
    }
    await done;
    return msgs.length / ((performance.now() - t0) / 1000);
  } finally {
    p.setPollInterval(0); // no poll() while disconnect() deletes the native handle (src/kafka/producer.ts)
    await new Promise<void>((r) => p.disconnect(() => r()));
  }
}

/** msgs/s that one node-rdkafka consumer hands to JavaScript (consume(n) batches), reading a preloaded topic. */
export async function consumeLimit(brokers: string, topic: string, expected: number): Promise<number> {
  const c = await connect(new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': `limit-${process.pid}-${Date.now()}`, 'enable.auto.commit': false, 'fetch.queue.backoff.ms': 5, 'queued.min.messages': 100000 } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' }));
  try {
    c.subscribe([topic]);
    c.setDefaultConsumeTimeout(100);
    let got = 0;
    let t0 = 0;
    const deadline = Date.now() + 60000;
    while (got < expected && Date.now() < deadline) {
      const msgs = await new Promise<Kafka.Message[]>((res) => c.consume(5000, (_e, m) => res(m ?? [])));
      if (msgs.length && t0 === 0) t0 = performance.now();
      got += msgs.length;
    }
    return got / ((performance.now() - t0) / 1000);
  } finally {
    // node-rdkafka can crash (SIGSEGV) on a disconnect right after a consume returned (Blizzard/node-rdkafka#1057): let it settle
    c.unsubscribe();
    await new Promise((r) => setTimeout(r, 200));
    await new Promise<void>((r) => c.disconnect(() => r()));
  }
}
