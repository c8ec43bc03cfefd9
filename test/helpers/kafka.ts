/**
 * Kafka for integration tests, against the stack's mock cluster: a producer
 * whose `send` resolves with the delivery report (partition and offset), a
 * reader that assigns every partition of a topic from the beginning (no group,
 * so no rebalance wait) and keeps what it read, and `collect` for one-shot
 * reads. Every client has a `close`.
 */
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../../src/kafka/client-config';

export type Headers = Record<string, string>;

export interface Delivered { topic: string; partition: number; offset: number }

export interface TestProducer {
  send(topic: string, key: string | Buffer | null, value: string | Buffer | null, headers?: Headers): Promise<Delivered>;
  /** Asks the cluster for the topics' metadata until each has `partitions` partitions (the mock cluster creates them on request). */
  ensureTopics(topics: string[], partitions?: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

type Pending = { resolve: (d: Delivered) => void; reject: (e: Error) => void };

function connect(client: Kafka.Producer | Kafka.KafkaConsumer, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    client.connect({ timeout: 15000 }, (err) => (err ? reject(new Error(`${what} could not connect: ${err.message}`)) : resolve()));
  });
}

/** A connected manual-assign consumer for reading a topic back in tests (errors swallowed: the reader's caller times out instead). */
export async function testConsumer(brokers: string, clientId: string, groupId: string): Promise<Kafka.KafkaConsumer> {
  const raw = new Kafka.KafkaConsumer({
    'bootstrap.servers': brokers,
    'client.id': clientId,
    'group.id': groupId,
    'enable.auto.commit': false,
    'enable.partition.eof': false,
    'fetch.wait.max.ms': 10,
    'log.connection.close': false,
  } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
  raw.on('event.error', () => undefined);
  await connect(raw, clientId);
  return raw;
}

function metadata(client: Kafka.Producer | Kafka.KafkaConsumer, topic: string): Promise<Kafka.Metadata> {
  return new Promise((resolve, reject) => {
    client.getMetadata({ topic, timeout: 5000 }, (err, md) => (err ? reject(err) : resolve(md)));
  });
}

async function partitionsOf(client: Kafka.Producer | Kafka.KafkaConsumer, topic: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const md = await metadata(client, topic);
      const t = md.topics.find((x) => x.name === topic);
      if (t && t.partitions.length > 0) return t.partitions.length;
    } catch { /* not there yet */ }
    if (Date.now() > deadline) throw new Error(`topic ${topic} has no partitions after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function producer(brokers: string): Promise<TestProducer> {
  const raw = new Kafka.Producer({
    'bootstrap.servers': brokers,
    'client.id': 'banking-es-test-producer',
    'dr_cb': true,
    'enable.idempotence': true, // keeps per-key order across retries
    'linger.ms': 2,
    'queue.buffering.max.messages': 200000,
    'log.connection.close': false,
  } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  raw.on('delivery-report', (err, report) => {
    const p = report.opaque as Pending | undefined;
    if (!p) return;
    if (err) p.reject(new Error(`delivery failed: ${err.message}`));
    else p.resolve({ topic: report.topic, partition: report.partition, offset: report.offset });
  });
  raw.on('event.error', () => undefined);
  await connect(raw, 'test producer');
  raw.setPollInterval(5);
  return {
    send(topic, key, value, headers) {
      return new Promise<Delivered>((resolve, reject) => {
        const hs = headers ? Object.entries(headers).map(([k, v]) => ({ [k]: v })) : undefined;
        const v = value === null ? null : Buffer.isBuffer(value) ? value : Buffer.from(value);
        for (let i = 0; ; i++) {
          try {
            raw.produce(topic, null, v, key ?? undefined, Date.now(), { resolve, reject } satisfies Pending, hs);
            return;
          } catch (e) {
            if ((e as { code?: number }).code !== Kafka.CODES.ERRORS.ERR__QUEUE_FULL || i > 100000) return reject(e as Error);
            raw.poll();
          }
        }
      });
    },
    async ensureTopics(topics, partitions = 4, timeoutMs = 20000) {
      for (const t of topics) {
        const n = await partitionsOf(raw, t, timeoutMs);
        if (n !== partitions) throw new Error(`topic ${t} has ${n} partitions, expected ${partitions}`);
      }
    },
    async close() {
      if (!raw.isConnected()) return;
      await new Promise<void>((resolve) => raw.flush(10000, () => resolve()));
      raw.setPollInterval(0); // no poll() while disconnect() deletes the native handle (see src/kafka/producer.ts)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        raw.disconnect(() => { clearTimeout(t); resolve(); });
      });
    },
  };
}

export interface ReadMessage<T = unknown> {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  /** Raw value bytes (null for a tombstone). */
  raw: Buffer | null;
  /** The value parsed as JSON, or undefined when it is not JSON. */
  value: T;
  headers: Headers;
}

function toHeaders(hs: Kafka.MessageHeader[] | undefined): Headers {
  const out: Headers = {};
  for (const h of hs ?? []) for (const [k, v] of Object.entries(h)) out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  return out;
}

function parse(raw: Buffer | null): unknown {
  if (raw === null) return undefined;
  try { return JSON.parse(raw.toString('utf8')) as unknown; } catch { return undefined; }
}

/** Reads every partition of one topic from the beginning for as long as it is open, keeping all messages in `messages`. */
export class TopicReader<T = unknown> {
  readonly messages: Array<ReadMessage<T>> = [];
  private running = true;
  private loop: Promise<void> = Promise.resolve();

  private constructor(private readonly raw: Kafka.KafkaConsumer, readonly topic: string) {}

  static async open<T = unknown>(brokers: string, topic: string, partitions?: number): Promise<TopicReader<T>> {
    const raw = await testConsumer(brokers, 'banking-es-test-reader', `test-reader-${topic}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    const r = new TopicReader<T>(raw, topic);
    try {
      const n = partitions ?? (await partitionsOf(raw, topic, 20000));
      raw.assign(Array.from({ length: n }, (_, partition) => ({ topic, partition, offset: 0 })));
    } catch (e) {
      await r.close();
      throw e;
    }
    r.start();
    return r;
  }

  private start(): void {
    this.raw.setDefaultConsumeTimeout(50);
    this.loop = new Promise<void>((resolve) => {
      const next = () => {
        if (!this.running) return resolve();
        this.raw.consume(5000, (_err, msgs) => {
          for (const m of msgs ?? []) {
            const raw = m.value ?? null;
            this.messages.push({
              topic: m.topic, partition: m.partition, offset: m.offset,
              key: m.key === undefined || m.key === null ? null : m.key.toString(),
              raw, value: parse(raw) as T, headers: toHeaders(m.headers),
            });
          }
          if (!this.running) return resolve();
          setImmediate(next);
        });
      };
      next();
    });
  }

  /** Polls until `pred(messages)` holds; rejects after timeoutMs, saying what was read. */
  async waitFor(pred: (msgs: Array<ReadMessage<T>>) => boolean, timeoutMs: number, what = 'condition'): Promise<Array<ReadMessage<T>>> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.messages)) {
      if (Date.now() > deadline) throw new Error(`${what}: not met after ${timeoutMs} ms on ${this.topic} (${this.messages.length} messages read)`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.messages;
  }

  async close(): Promise<void> {
    this.running = false;
    await closeReader(this.raw, this.loop);
  }
}

/**
 * Disconnects a test consumer once its consume loop ended. Disconnecting while a consume() is still
 * running on a pool thread is node-rdkafka's use-after-free (Blizzard/node-rdkafka#1057: SIGSEGV at
 * teardown), so a consumer whose loop did not end within 10 s is left to the process exit.
 */
export async function closeReader(raw: Kafka.KafkaConsumer, loop: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([loop.then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), 10000); })]);
  clearTimeout(timer);
  if (!ended || !raw.isConnected()) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 5000);
    raw.disconnect(() => { clearTimeout(t); resolve(); });
  });
}

/**
 * Reads `topic` from the beginning until `until` holds: a count of messages
 * matching nothing in particular, or a predicate over everything read so far.
 */
export async function collect<T = unknown>(brokers: string, topic: string, until: number | ((msgs: Array<ReadMessage<T>>) => boolean), timeoutMs: number): Promise<Array<ReadMessage<T>>> {
  const reader = await TopicReader.open<T>(brokers, topic);
  try {
    const pred = typeof until === 'number' ? (m: Array<ReadMessage<T>>) => m.length >= until : until;
    return [...(await reader.waitFor(pred, timeoutMs, `collect ${topic}`))];
  } finally {
    await reader.close();
  }
}
