/**
 * Every producer in the project partitions as Kafka's Java client does
 * (src/kafka/client-config.ts PRODUCER_TOPIC_CONFIG), so an account lands on
 * the same partition whether banking-es, Kafka Connect, Debezium or a Java
 * service produced it. The vectors are Kafka's own (clients UtilsTest
 * testMurmur2: key → murmur2 hash); the Java default partitioner puts a keyed
 * record on `(hash & 0x7fffffff) % partitions`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Kafka from 'node-rdkafka';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createMetrics } from '../../src/metrics';
import { ProducerClient } from '../../src/kafka/producer';
import { packageRoot } from '../../src/paths';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../helpers/faults';
import { producer as testProducer, TopicReader } from '../helpers/kafka';
import { uniqueTopic } from '../helpers/stack';

/** Kafka's UtilsTest.testMurmur2 vectors: key bytes → the Java client's murmur2. */
const MURMUR2: Array<[string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];
const PARTITIONS = 4; // the mock cluster auto-creates topics with 4
const javaPartition = (hash: number) => (hash & 0x7fffffff) % PARTITIONS;

let kafka: MockKafka | undefined;
test.before(async () => { kafka = await startMockKafka(); });
test.after(async () => { await releaseMockKafka(kafka); });

/** Where each vector key was stored, read back by a consumer (what the cluster holds, not what a report says). */
async function partitionsOf(topic: string, produce: (key: string) => Promise<void>): Promise<Map<string, number>> {
  for (const [key] of MURMUR2) await produce(key);
  const reader = await TopicReader.open(kafka!.brokers, topic);
  try {
    const got = await reader.waitFor((m) => m.length >= MURMUR2.length, 20000, 'the vector keys');
    return new Map(got.map((m) => [String(m.key), m.partition]));
  } finally {
    await reader.close();
  }
}

test('the vectors tell the partitioners apart (librdkafka\'s default CRC32 puts some keys elsewhere)', async () => {
  const topic = uniqueTopic('partitioner-default');
  const p = new Kafka.Producer({ 'bootstrap.servers': kafka!.brokers, 'dr_cb': true } as Kafka.ProducerGlobalConfig);
  await new Promise<void>((res, rej) => p.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  p.setPollInterval(5);
  try {
    const got = await partitionsOf(topic, (key) => new Promise((res, rej) => {
      p.once('delivery-report', (err) => (err ? rej(err) : res()));
      p.produce(topic, null, Buffer.from('{}'), key);
    }));
    const differing = MURMUR2.filter(([key, h]) => got.get(key) !== javaPartition(h));
    assert.ok(differing.length > 0, 'with no partitioner set every vector key landed where murmur2 puts it: the test could not fail');
  } finally {
    p.setPollInterval(0);
    await new Promise<void>((res) => p.disconnect(() => res()));
  }
});

test('the daemon\'s producer (outcomes, relays, dead letters) puts each key where the Java client does', async () => {
  const topic = uniqueTopic('partitioner-daemon');
  const { config } = loadConfig({ env: { KAFKA_BROKERS: kafka!.brokers, LOG_LEVEL: 'silent' }, ignoreStack: true });
  const p = new ProducerClient(config, createLogger({ level: 'silent' }), createMetrics(new Registry(), { defaultMetrics: false }));
  await p.connect();
  try {
    const got = await partitionsOf(topic, (key) => p.send({ topic, key, value: Buffer.from('{}') }));
    for (const [key, h] of MURMUR2) assert.is(got.get(key), javaPartition(h), `key ${key}`);
  } finally {
    await p.close(5000);
  }
});

test('the tests\' and the load driver\'s producer does too', async () => {
  const topic = uniqueTopic('partitioner-test');
  const p = await testProducer(kafka!.brokers);
  try {
    const got = await partitionsOf(topic, async (key) => { await p.send(topic, key, '{}'); });
    for (const [key, h] of MURMUR2) assert.is(got.get(key), javaPartition(h), `key ${key}`);
  } finally {
    await p.close();
  }
});

test('no producer in the project is built without the Java partitioner', () => {
  const root = packageRoot();
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else if (f.endsWith('.ts')) files.push(f);
    }
  };
  for (const d of ['src', 'dev', 'bench', 'test']) walk(path.join(root, d));
  const bare: string[] = [];
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    for (let i = text.indexOf('new Kafka.Producer('); i >= 0; i = text.indexOf('new Kafka.Producer(', i + 1)) {
      const call = text.slice(i, text.indexOf(');', i) + 2);
      const rel = path.relative(root, f);
      // the mock cluster's host process produces nothing; this file's first test is the control case
      if (rel === path.join('dev', 'stack', 'kafka-mock-host.ts') || rel === path.join('test', 'kafka', 'partitioner.int.test.ts')) continue;
      if (!call.includes('PRODUCER_TOPIC_CONFIG')) bare.push(`${rel}: ${call.slice(0, 80)}`);
    }
  }
  assert.ok(files.length > 50, 'the sources were found');
  assert.equal(bare, []);
});

test.run();
