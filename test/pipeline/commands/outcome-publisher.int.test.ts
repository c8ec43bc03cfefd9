/**
 * The outcome publisher's bookkeeping against a real producer and a real
 * (private, mock) Kafka cluster that stops answering: an outcome Kafka never
 * acknowledged must keep its partition's published offset below it, even
 * when later batches are acknowledged, so it is published again (by a rewind
 * of its partition, a restart or the next owner). Before, one failed delivery cleared the in-order list and
 * the next acknowledged batch moved published_offset past the lost outcomes.
 * Then the rewind: when it is due, to which offset, that only a batch begun
 * after the seek thaws the partition, the backoff of a rewind that failed,
 * the log start as a floor, and a rewind again when nothing thawed it.
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

test('a failed delivery freezes its partition\'s published offset until the rewound replay is acknowledged, or the partition is assigned again', async () => {
  kafka = await startMockKafka();
  const { config } = loadConfig({ env: { NODE_ENV: 'test', KAFKA_BROKERS: kafka.brokers, DATABASE_URL: 'postgres://unused@127.0.0.1:1/unused' } });
  const log = createLogger({ level: 'fatal' });
  const metrics = createMetrics(new Registry(), { defaultMetrics: false });
  producer = new ProducerClient(config, log, metrics, {}, { 'message.timeout.ms': 1500 });
  await producer.connect();
  const topic = 'publisher-freeze.results';
  await producer.send({ topic, key: 'warm', value: Buffer.from('{}') }); // the topic exists and its leaders are known
  const publisher = new OutcomePublisher(producer, topic, metrics, log, 'commands', 1500);
  // each batch covers the 10 offsets below its next (partition 1: 5 below)
  const batch = (next: Array<[number, number]>, outcomes: number, from?: Array<[number, number]>) => {
    const b = publisher.beginBatch(new Map(next), new Map(from ?? next.map(([p, n]) => [p, Math.max(0, n - 10)])));
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
  const failedAt = performance.now();
  process.kill(kafka.pid, 'SIGCONT');
  assert.equal(publisher.dueRewinds(failedAt), [], 'no rewind before its backoff (1 s)');
  assert.equal(publisher.dueRewinds(failedAt + 1100), [{ partition: 0, offset: 10 }], 'then one, from the first lost outcome');

  // later batches are acknowledged, on the failed partition and another
  batch([[0, 30], [1, 8]], 20);
  await publisher.flushed(15000);
  await until(() => publisher.publishedOffsets().get(1) === 8, 15000, 'the third batch acknowledged');
  assert.is(publisher.publishedOffsets().get(0), 10, 'partition 0 stays below the outcomes that never reached Kafka');
  assert.is(publisher.publishedOffsets().get(1), 8, 'partition 1 goes on');

  // the rewind. A batch begun before the seek, even one that reaches down to the lost offsets (a consume
  // result that arrived late and was batched with replayed messages), never thaws the partition: above a
  // gap in it lie outcomes not yet published again
  const late = publisher.beginBatch(new Map([[0, 50]]), new Map([[0, 5]]));
  assert.is(publisher.beginRewind(0, 0), 10, 'the consumer is sought to the first lost outcome');
  assert.equal(publisher.dueRewinds(), [], 'asked once');
  for (let i = 0; i < 3; i++) late.add(Buffer.from(`late${i}`), Buffer.from('{}'));
  late.end();
  await publisher.flushed(15000);
  assert.is(publisher.publishedOffsets().get(0), 10, 'still held below the lost outcomes');
  // the replay's first batch is acknowledged: the partition thaws and moves on. It starts at 12: offsets 10
  // and 11 hold no message (compacted away, or transaction markers), and the seek to 10 delivers 12 first
  batch([[0, 35]], 5, [[0, 12]]);
  await until(() => publisher.publishedOffsets().get(0) === 35, 15000, 'partition 0 to thaw with the replay');

  // again; this time the rewind cannot be done, then the seek is done but nothing thaws the partition
  process.kill(kafka.pid, 'SIGSTOP');
  failed = 0;
  batch([[0, 45]], 5);
  await until(() => failed >= 5, 10000, 'a batch to fail again');
  process.kill(kafka.pid, 'SIGCONT');
  const due = performance.now() + 1100;
  assert.equal(publisher.dueRewinds(due), [{ partition: 0, offset: 35 }]);
  publisher.rewindFailed(0);
  assert.equal(publisher.dueRewinds(due), [], 'backed off (2 s after a failed rewind)');
  assert.equal(publisher.dueRewinds(performance.now() + 2100), [{ partition: 0, offset: 35 }]);
  // Kafka no longer holds offsets below 40: rewound to the log start, the outcomes below it are lost for good
  assert.is(publisher.beginRewind(0, 40), 40);
  assert.equal(publisher.dueRewinds(performance.now() + 30_000), [], 'the replay has message.timeout.ms and a minute to thaw the partition');
  assert.equal(publisher.dueRewinds(performance.now() + 62_000), [{ partition: 0, offset: 40 }], 'then it is rewound again');

  // a new assignment starts again from the stored offsets: partition 0 advances again, partition 2 is no longer owned
  publisher.assigned([0, 1]);
  batch([[0, 60]], 5);
  await until(() => publisher.publishedOffsets().get(0) === 60, 15000, 'partition 0 to advance after the new assignment');
  publisher.assigned([1]);
  assert.equal([...publisher.publishedOffsets().keys()], [1], 'a partition no longer owned is forgotten');
  console.log(`${failed} deliveries failed while Kafka was stopped; partition 0 held at 10 until its replay was acknowledged`);
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
        const batch = p.beginBatch(new Map([[0, round * 10], [1, round * 10 + 1]]), new Map([[0, round * 10 - 10], [1, round * 10 - 9]]));
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
