/**
 * GroupConsumer.close() with the group coordinator gone (src/kafka/native-close.ts):
 * offset commits issued after the cluster died stay outstanding, and
 * librdkafka's close would wait for them (session.timeout.ms here, up to
 * socket.timeout.ms for one that was on the wire) on a libuv pool thread that
 * process.exit() joins. close() must return within its bounds without leaving
 * a native close running. With a live cluster it leaves the group for real.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createMetrics } from '../../src/metrics';
import { GroupConsumer, type Tp } from '../../src/kafka/consumer';
import { closesStillRunning } from '../../src/kafka/native-close';
import { isAlive } from '../../dev/stack/process';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../helpers/faults';
import { uniqueTopic } from '../helpers/stack';
import { producer } from '../helpers/kafka';
import { sleep } from '../helpers/reliability';

let kafka: MockKafka | undefined;

test.after(async () => {
  await releaseMockKafka(kafka);
  // the first test's consumer is left unclosed on purpose and keeps the event loop alive; end as the
  // daemon does. process.exit() returns at once only if no native close is left on a pool thread.
  setTimeout(() => process.exit(), 200).unref();
});

async function assignedConsumer(brokers: string, name: string): Promise<{ consumer: GroupConsumer; topic: string }> {
  const { config } = loadConfig({ env: { KAFKA_BROKERS: brokers, LOG_LEVEL: 'silent' }, ignoreStack: true });
  const topic = uniqueTopic(name);
  const p = await producer(brokers);
  try { await p.ensureTopics([topic], 4); } finally { await p.close(); }
  let assigned: Tp[] = [];
  const consumer = new GroupConsumer(config, createLogger({ level: 'silent' }), createMetrics(new Registry(), { defaultMetrics: false }),
    { groupId: `${topic}-group`, topic, name }, {
      resolveStart: async (tps) => tps.map((tp) => ({ ...tp, offset: 'beginning' as const, stored: false })),
      onAssigned: (starts) => { assigned = starts; },
      onRevoke: async () => undefined,
      onMessages: () => undefined,
    });
  await consumer.connect();
  consumer.start();
  const deadline = Date.now() + 30000;
  while (assigned.length === 0) {
    if (Date.now() > deadline) throw new Error('no partitions assigned within 30 s');
    await sleep(50);
  }
  return { consumer, topic };
}

test('with the coordinator gone, close() returns at once and leaves no native close running', async () => {
  kafka = await startMockKafka();
  const { consumer, topic } = await assignedConsumer(kafka.brokers, 'closegone');
  process.kill(kafka.pid, 'SIGKILL');
  while (isAlive(kafka.pid)) await sleep(20);
  // commits the consumer cannot deliver: librdkafka's close would wait for every one of them
  for (let i = 1; i <= 5; i++) consumer.commitToKafka([0, 1, 2, 3].map((partition) => ({ topic, partition, offset: i })));
  const t = Date.now();
  await consumer.close();
  const took = Date.now() - t;
  console.log(`close() with the coordinator gone: ${took} ms; native closes still running: ${JSON.stringify(closesStillRunning())}`);
  assert.ok(took < 2000, `close took ${took} ms`);
  assert.equal(closesStillRunning(), [], 'process.exit() would wait for a native close');
});

test('with the cluster up, close() leaves the group within its bound', async () => {
  const live = await startMockKafka();
  try {
    const { consumer, topic } = await assignedConsumer(live.brokers, 'closelive');
    consumer.commitToKafka([0, 1, 2, 3].map((partition) => ({ topic, partition, offset: 1 })));
    const t = Date.now();
    await consumer.close();
    console.log(`close() with the cluster up: ${Date.now() - t} ms`);
    assert.is(consumer.raw.isConnected(), false, 'the consumer disconnected (left its group)');
    assert.equal(closesStillRunning(), []);
  } finally {
    await releaseMockKafka(live);
  }
});

test.run();
