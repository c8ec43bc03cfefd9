/**
 * The outcome publisher's bookkeeping against a real producer and a real
 * (private, mock) Kafka cluster that stops answering: an outcome Kafka never
 * acknowledged must keep its partition's published offset below it, even
 * when later batches are acknowledged, so a restart (or the next owner)
 * re-publishes it. Before, one failed delivery cleared the in-order list and
 * the next acknowledged batch moved published_offset past the lost outcomes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config';
import { createLogger } from '../../../src/logger';
import { createMetrics } from '../../../src/metrics';
import { ProducerClient } from '../../../src/kafka/producer';
import { OutcomePublisher } from '../../../src/pipeline/commands/outcome-publisher';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../../helpers/faults';
import { sleep } from '../../helpers/reliability';

let kafka: MockKafka | undefined;
let producer: ProducerClient | undefined;

test.after(async () => {
  if (kafka) { try { process.kill(kafka.pid, 'SIGCONT'); } catch { /* gone */ } }
  await producer?.close(2000).catch(() => undefined);
  await releaseMockKafka(kafka);
});

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('a failed delivery freezes its partition\'s published offset until the partition is assigned again', async () => {
  kafka = await startMockKafka();
  const { config } = loadConfig({ env: { NODE_ENV: 'test', KAFKA_BROKERS: kafka.brokers, DATABASE_URL: 'postgres://unused@127.0.0.1:1/unused' } });
  const log = createLogger({ level: 'fatal' });
  const metrics = createMetrics(new Registry(), { defaultMetrics: false });
  producer = new ProducerClient(config, log, metrics, {}, { 'message.timeout.ms': 1500 });
  await producer.connect();
  const topic = 'publisher-freeze.results';
  await producer.send({ topic, key: 'warm', value: Buffer.from('{}') }); // the topic exists and its leaders are known
  const publisher = new OutcomePublisher(producer, topic, metrics, log);
  const batch = (next: Array<[number, number]>, outcomes: number) => {
    const b = publisher.beginBatch(new Map(next));
    for (let i = 0; i < outcomes; i++) b.add(Buffer.from(`k${i}`), Buffer.from(`{"i":${i}}`));
    b.end();
  };
  let failed = 0;
  producer.raw.on('delivery-report', (err) => { if (err) failed++; });

  batch([[0, 10], [1, 5]], 20);
  await until(() => publisher.publishedOffsets().get(0) === 10, 10000, 'the first batch acknowledged');

  // Kafka stops answering: the second batch's outcomes time out
  process.kill(kafka.pid, 'SIGSTOP');
  batch([[0, 20]], 20);
  await until(() => failed >= 20, 10000, 'the second batch to fail');
  process.kill(kafka.pid, 'SIGCONT');

  // later batches are acknowledged, on the failed partition and another
  batch([[0, 30], [1, 8]], 20);
  await publisher.flushed(15000);
  await until(() => publisher.publishedOffsets().get(1) === 8, 15000, 'the third batch acknowledged');
  assert.is(publisher.publishedOffsets().get(0), 10, 'partition 0 stays below the outcomes that never reached Kafka');
  assert.is(publisher.publishedOffsets().get(1), 8, 'partition 1 goes on');

  // a new assignment starts again from the stored offsets: partition 0 advances again, partition 2 is no longer owned
  publisher.assigned([0, 1]);
  batch([[0, 40]], 5);
  await until(() => publisher.publishedOffsets().get(0) === 40, 15000, 'partition 0 to advance after the new assignment');
  publisher.assigned([1]);
  assert.equal([...publisher.publishedOffsets().keys()], [1], 'a partition no longer owned is forgotten');
  console.log(`${failed} deliveries failed while Kafka was stopped; partition 0 held at 10 until assigned again`);
});

test('two publishers on one producer (the command and transfer roles) each count only their own deliveries', async () => {
  // before, every publisher's listener decremented every batch: counts went below zero, never settled,
  // and the published offsets stopped, so each restart re-published everything since
  const { config } = loadConfig({ env: { NODE_ENV: 'test', KAFKA_BROKERS: kafka!.brokers, DATABASE_URL: 'postgres://unused@127.0.0.1:1/unused' } });
  const log = createLogger({ level: 'fatal' });
  const metrics = createMetrics(new Registry(), { defaultMetrics: false });
  const shared = new ProducerClient(config, log, metrics);
  await shared.connect();
  try {
    const topic = 'publisher-shared.results';
    await shared.send({ topic, key: 'warm', value: Buffer.from('{}') });
    const a = new OutcomePublisher(shared, topic, metrics, log, 'commands');
    const b = new OutcomePublisher(shared, topic, metrics, log, 'transfers');
    for (let round = 1; round <= 5; round++) {
      for (const [p, n] of [[a, 3], [b, 7]] as const) {
        const batch = p.beginBatch(new Map([[0, round * 10], [1, round * 10 + 1]]));
        for (let i = 0; i < n; i++) batch.add(Buffer.from(`k${i}`), Buffer.from('{}'), i % 2 ? topic : 'publisher-shared.steps');
        batch.end();
      }
    }
    await Promise.all([a.flushed(15000), b.flushed(15000)]);
    for (const p of [a, b]) assert.equal([...p.publishedOffsets()].sort(), [[0, 50], [1, 51]], 'every batch settled, in order');
  } finally {
    await shared.close(2000).catch(() => undefined);
  }
});

test.run();
