/**
 * Drives a Workload through Kafka: produces commands (at a fixed rate or as
 * fast as a bounded window allows, so the mock cluster's small retention is
 * never outrun) and reads outcomes, measuring produce→outcome latency.
 */
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../../src/kafka/client-config';
import { OutcomeChecker } from './outcome-checker';
import type { Workload } from './generator';

export interface DriveOptions {
  brokers: string;
  commandsTopic: string;
  resultsTopic: string;
  /** commands per second; 0 = as fast as the window allows */
  rate: number;
  /** max commands sent but not yet answered */
  window: number;
  timeoutMs: number;
  onProgress?: (p: Progress) => void;
}

export interface Progress { sent: number; answered: number; total: number; elapsedMs: number }

export interface DriveResult {
  sent: number;
  answered: number;
  byStatus: Record<string, number>;
  expectedByStatus: Record<string, number>;
  mismatches: number;
  /** the first few differences from the model */
  mismatchSamples: string[];
  /** copies of an outcome already received (re-published after a hand-over or crash: at-least-once), not answers */
  republished: number;
  elapsedMs: number;
  latenciesMs: Float64Array;
  /** the same, of Transfers only (first sends and re-sends): produce → final outcome */
  transferLatenciesMs: Float64Array;
  timedOut: boolean;
  /** [seconds since start, outcomes in that second] for charts */
  perSecond: number[];
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function metadata(client: Kafka.Producer | Kafka.KafkaConsumer, topic: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.getMetadata({ topic, timeout: 10000 }, (err, md) => {
      if (err) return reject(err);
      const t = md.topics.find((x) => x.name === topic);
      resolve(t?.partitions.length ?? 0);
    });
  });
}

/** Asks for the topics' metadata until the (auto-creating) cluster has them. */
export async function ensureTopics(brokers: string, topics: string[]): Promise<void> {
  const p = new Kafka.Producer({ 'bootstrap.servers': brokers, 'allow.auto.create.topics': true } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  await new Promise<void>((res, rej) => p.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  try {
    for (const t of topics) {
      for (let i = 0; i < 50 && (await metadata(p, t).catch(() => 0)) === 0; i++) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await new Promise<void>((r) => p.disconnect(() => r()));
  }
}

export async function drive(w: Workload, o: DriveOptions): Promise<DriveResult> {
  const producer = new Kafka.Producer({ 'bootstrap.servers': o.brokers, 'linger.ms': 2, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4' } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': o.brokers, 'group.id': `loadgen-${process.pid}-${Date.now()}`, 'enable.auto.commit': false, 'fetch.wait.max.ms': 5 } as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((res, rej) => producer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  await new Promise<void>((res, rej) => consumer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  producer.setPollInterval(10);
  const partitions = await metadata(consumer, o.resultsTopic);
  const starts = await Promise.all(Array.from({ length: partitions }, (_, p) => new Promise<number>((res, rej) =>
    consumer.queryWatermarkOffsets(o.resultsTopic, p, 10000, (e, wm) => (e ? rej(e) : res(wm.highOffset))))));
  consumer.assign(starts.map((offset, partition) => ({ topic: o.resultsTopic, partition, offset })));

  const expectedByStatus: Record<string, number> = {};
  const byStatus: Record<string, number> = {};
  const lat: number[] = [];
  const transferLat: number[] = [];
  /** commandIds of the Transfers sent: their latencies are also reported on their own */
  const transfers = new Set<string>();
  const perSecond: number[] = [];
  let sent = 0;
  const checker = new OutcomeChecker();
  const t0 = performance.now();
  let running = true;

  const consumeLoop = (async () => {
    let idle = true;
    while (running) {
      // wait for one outcome, then drain what is queued (consume(n) would otherwise hold a trickle until n arrive)
      consumer.setDefaultConsumeTimeout(idle ? 20 : 0);
      const msgs = await new Promise<Kafka.Message[]>((res) => consumer.consume(idle ? 1 : 5000, (_e, m) => res(m ?? [])));
      idle = msgs.length === 0;
      const now = performance.now();
      for (const m of msgs) {
        const out = JSON.parse(m.value!.toString()) as { commandId: string; status: string; reason?: string; processedAt?: string };
        const r = checker.received(out, now);
        if (r.kind !== 'answer') continue;
        lat.push(r.latencyMs);
        if (transfers.has(out.commandId)) transferLat.push(r.latencyMs);
        byStatus[out.status] = (byStatus[out.status] ?? 0) + 1;
        const sec = Math.floor((now - t0) / 1000);
        perSecond[sec] = (perSecond[sec] ?? 0) + 1;
      }
    }
  })();

  const deadline = Date.now() + o.timeoutMs;
  let rateFrom = { at: t0, sent: 0 };
  const progressTimer = setInterval(() => o.onProgress?.({ sent, answered: checker.answered, total: w.total, elapsedMs: performance.now() - t0 }), 200);
  try {
    while (!w.done && Date.now() < deadline) {
      const now = performance.now();
      // the accounts exist before traffic that needs them elsewhere (a transfer's destination is on another partition)
      const setup = w.setupCommands;
      const allowedBySetup = sent < setup ? setup - sent : checker.answered < setup ? 0 : Infinity;
      // the rate's clock starts again once the setup is answered: no burst to make up for the wait
      if (allowedBySetup === Infinity && rateFrom.sent < setup) rateFrom = { at: now, sent };
      const allowedByRate = o.rate > 0 ? Math.floor(((now - rateFrom.at) / 1000) * o.rate) - (sent - rateFrom.sent) : Infinity;
      const allowedByWindow = o.window - (sent - checker.answered);
      let n = Math.min(allowedByRate, allowedByWindow, allowedBySetup, 2000);
      if (n <= 0) { await new Promise((r) => setTimeout(r, o.rate > 0 ? 1 : 2)); continue; }
      const ts = performance.now();
      while (n-- > 0) {
        const c = w.next();
        if (!c) break;
        expectedByStatus[c.expect] = (expectedByStatus[c.expect] ?? 0) + 1;
        checker.sent(c.commandId, c.expect, ts, c.reason);
        if (c.transfer) transfers.add(c.commandId);
        for (;;) {
          try { producer.produce(o.commandsTopic, null, Buffer.from(c.value), c.key, Date.now()); break; }
          catch { producer.poll(); await new Promise((r) => setTimeout(r, 1)); }
        }
        sent++;
      }
      await new Promise((r) => setImmediate(r));
    }
    while (checker.answered < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  } finally {
    clearInterval(progressTimer);
    o.onProgress?.({ sent, answered: checker.answered, total: w.total, elapsedMs: performance.now() - t0 });
    running = false;
    await consumeLoop;
    await new Promise<void>((r) => producer.flush(5000, () => r()));
    producer.setPollInterval(0); // no poll() while disconnect() deletes the native handle (see src/kafka/producer.ts)
    await new Promise<void>((r) => producer.disconnect(() => r()));
    await new Promise<void>((r) => consumer.disconnect(() => r()));
  }
  const latencies = Float64Array.from(lat).sort();
  const { answered, mismatches, republished, mismatchSamples } = checker;
  return { sent, answered, byStatus, expectedByStatus, mismatches, mismatchSamples, republished, elapsedMs: performance.now() - t0, latenciesMs: latencies, transferLatenciesMs: Float64Array.from(transferLat).sort(), timedOut: answered < sent, perSecond: Array.from(perSecond, (x) => x ?? 0) };
}
