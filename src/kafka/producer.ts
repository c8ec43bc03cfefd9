/**
 * One node-rdkafka producer per process for outcomes and dead letters.
 * `send` resolves when Kafka acknowledged the message (delivery report), so
 * callers can order "acknowledged" before "offset committed".
 */
import Kafka from 'node-rdkafka';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { recordRdkafkaStats } from '../metrics';
import { baseKafkaConfig, PRODUCER_TOPIC_CONFIG } from './client-config';
import { closeWithin } from './native-close';

export interface OutMessage {
  topic: string;
  key: string | Buffer | null;
  value: Buffer | null;
  headers?: Array<Record<string, string | Buffer>>;
}

type Pending = { resolve: () => void; reject: (e: Error) => void };

export class ProducerClient {
  readonly raw: Kafka.Producer;

  /**
   * @param extra global librdkafka properties over ours
   * @param topicConfig topic properties (`message.timeout.ms`, …): node-rdkafka gives every topic this
   *   configuration, so a topic property set among the global ones is silently ignored
   */
  constructor(config: Config, private readonly log: Logger, metrics: Metrics, extra: Record<string, string | number | boolean> = {}, topicConfig: Kafka.ProducerTopicConfig = {}) {
    this.raw = new Kafka.Producer({
      ...baseKafkaConfig(config, 'producer'),
      'dr_cb': true,
      'linger.ms': 2,
      'batch.num.messages': 10000,
      'queue.buffering.max.messages': 500000,
      'queue.buffering.max.kbytes': 262144,
      'compression.type': 'lz4',
      'enable.idempotence': true,
      'message.send.max.retries': 2147483647,
      ...extra,
    } as Kafka.ProducerGlobalConfig, { ...topicConfig, ...PRODUCER_TOPIC_CONFIG }); // the partitioner is not the caller's to change
    this.raw.on('delivery-report', (err, report) => {
      const p = report.opaque as Pending | undefined;
      if (!p || typeof p.resolve !== 'function') return; // other trackers (outcome batches) listen too
      // librdkafka's code travels with it, so the error is classified (a timeout is transient)
      if (err) p.reject(Object.assign(new Error(`delivery failed: ${err.message}`), { code: err.code }));
      else p.resolve();
    });
    this.raw.on('event.error', (err) => log.warn({ err }, 'kafka producer error'));
    this.raw.on('event.stats', (s) => recordRdkafkaStats(metrics, 'producer', s.message));
  }

  connect(timeoutMs = 15000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.raw.connect({ timeout: timeoutMs }, (err) => {
        if (err) return reject(new Error(`kafka producer could not connect: ${err.message}`));
        this.raw.setPollInterval(5);
        resolve();
      });
    });
  }

  /** Queues one message; the promise settles on its delivery report. */
  send(m: OutMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { resolve, reject };
      for (;;) {
        try {
          this.raw.produce(m.topic, null, m.value, m.key ?? undefined, Date.now(), pending, m.headers);
          return;
        } catch (e) {
          // local queue full: let librdkafka drain, then retry (bounded by the queue settings above)
          if ((e as { code?: number }).code === Kafka.CODES.ERRORS.ERR__QUEUE_FULL) {
            this.raw.poll();
            const until = Date.now() + 5;
            while (Date.now() < until) { /* brief spin while the broker drains */ }
            continue;
          }
          reject(e as Error);
          return;
        }
      }
    });
  }

  flush(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => this.raw.flush(timeoutMs, (err) => (err ? reject(err) : resolve())));
  }

  /** Readiness probe: the cluster answers a metadata request. */
  probe(timeoutMs = 2000): Promise<string> {
    return new Promise((resolve, reject) => {
      if (!this.raw.isConnected()) return reject(new Error('producer not connected'));
      this.raw.getMetadata({ timeout: timeoutMs }, (err, md) => {
        if (err) return reject(new Error(`kafka metadata failed: ${err.message}`));
        resolve(`${md.brokers.length} brokers`);
      });
    });
  }

  async close(timeoutMs: number): Promise<void> {
    if (!this.raw.isConnected()) return;
    await this.flush(timeoutMs).catch((err) => this.log.warn({ err }, 'producer flush incomplete at shutdown'));
    // the poll timer must stop first: node-rdkafka's poll() reaches the native handle without its lock while
    // disconnect() deletes that handle on a pool thread, and a poll in that window is a SIGSEGV at shutdown
    this.raw.setPollInterval(0);
    // disconnect(0): node-rdkafka's disconnect() otherwise flushes again for 5 s, on a pool thread that
    // process.exit() waits for (native-close.ts). We have flushed; what Kafka has not acknowledged by now is
    // re-sent after restart (published_offset, the relay's confirmed LSN).
    await closeWithin('kafka-producer', 2000, (done) => this.raw.disconnect(0, done));
  }
}
