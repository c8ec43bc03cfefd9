/**
 * The polling relay (cdc.mode = poller) while Kafka is away for longer than
 * message.timeout.ms, in-process against the stack's real Postgres and a
 * private librdkafka mock cluster whose host process is frozen with SIGSTOP
 * (brokers keep their ports and their logs, answer nothing) and thawed with
 * SIGCONT. Events keep being committed meanwhile, so the relay reads full
 * batches and has two of them in flight when their deliveries time out.
 *
 * Regression: the second failing batch's delivery promise used to be left
 * unobserved (the checkpoint chain only subscribed to it after the first batch
 * succeeded), which Node 20 turns into a crash. Here an unhandledRejection
 * hook records it instead, so the test can say so; the relay must then resume
 * from its stored checkpoint and publish every committed event (at least once,
 * none missing, bytes as stored).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Client } from 'pg';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createMetrics, type Metrics } from '../../src/metrics';
import { Health } from '../../src/health';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { Lifecycle } from '../../src/lifecycle';
import { ProducerClient, type OutMessage } from '../../src/kafka/producer';
import { isAlive } from '../../dev/stack/process';
import type { DaemonContext } from '../../src/daemon';
import { PollingRelay } from '../../src/relay/poller';
import { producer as testProducer, TopicReader } from '../helpers/kafka';
import { createTestDatabase, uniqueTopic, type TestDb } from '../helpers/stack';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../helpers/faults';
import { Accounts, commitEvents, storedPayloads, until } from '../helpers/relay';

const MESSAGE_TIMEOUT_MS = 1000;
const BATCH = 50;
const AWAY_MIN_MS = 6 * MESSAGE_TIMEOUT_MS;
const WAIT_MS = 60000;

/** The daemon's producer; counts delivery outcomes (observes, changes nothing). */
class CountingProducer extends ProducerClient {
  acked = 0;
  failed = 0;
  override send(m: OutMessage): Promise<void> {
    const p = super.send(m);
    p.then(() => { this.acked++; }, () => { this.failed++; });
    return p;
  }
}

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => { unhandled.push(reason); });

const warnings: string[] = [];
let kafka: MockKafka | undefined;
let frozen = false;
let db: TestDb | undefined;
let relay: PollingRelay | undefined;
let reader: TopicReader | undefined;
const cleanup: Array<() => Promise<unknown>> = [];

function freeze(k: MockKafka): void { process.kill(k.pid, 'SIGSTOP'); frozen = true; }
function thaw(k: MockKafka): void { if (frozen && isAlive(k.pid)) process.kill(k.pid, 'SIGCONT'); frozen = false; }

test.after(async () => {
  if (kafka) thaw(kafka);
  await relay?.stop().catch(() => undefined);
  await reader?.close().catch(() => undefined);
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await db?.drop().catch(() => undefined);
  await releaseMockKafka(kafka);
});

test('Kafka away > message.timeout.ms across several full batches: no unhandled rejection, resumes, nothing lost', async () => {
  kafka = await startMockKafka();
  db = await createTestDatabase('poller_kafka_away');
  const topic = uniqueTopic('poller-away.events');
  const { config } = loadConfig({ env: { ...process.env, DATABASE_URL: db.url, KAFKA_BROKERS: kafka.brokers, KAFKA_TOPIC_EVENTS: topic, CDC_MODE: 'poller', LOG_LEVEL: 'warn' } });
  // warnings (librdkafka errors while frozen, the relay's retries) are kept, not printed
  const log = createLogger({ level: 'warn', name: 'test-poller-away', destination: { write: (s: string) => { warnings.push(s); } } });
  const metrics: Metrics = createMetrics(new Registry(), { defaultMetrics: false });
  const pool = createPool({ url: config.db.url, max: 4, statementTimeoutMs: config.db.statementTimeoutMs }, log);
  cleanup.push(() => pool.end());
  await migrate(pool);
  const tp = await testProducer(kafka.brokers);
  try { await tp.ensureTopics([topic]); } finally { await tp.close(); }
  // a topic property: node-rdkafka drops topic properties given among the global ones
  const producer = new CountingProducer(config, log, metrics, {}, { 'message.timeout.ms': MESSAGE_TIMEOUT_MS });
  cleanup.push(() => producer.close(5000));
  await producer.connect();
  const ctx: DaemonContext = { config, log, metrics, health: new Health(metrics), pool, producer, lifecycle: new Lifecycle(log, 10000, () => undefined) };
  reader = await TopicReader.open(kafka.brokers, topic);
  const pg = new Client({ connectionString: db.url });
  pg.on('error', () => undefined);
  await pg.connect();
  cleanup.push(() => pg.end());

  relay = new PollingRelay(ctx, { batchSize: BATCH, idleMs: 20, pipelineDepth: 2 });
  await relay.start();
  const r = relay;

  // a writer commits 3 events per transaction over 6 accounts, the whole time
  const acc = new Accounts(6);
  const committed: string[] = [];
  let stopWriting = false;
  let writerError: unknown;
  const writer = (async () => {
    for (let i = 0; !stopWriting; i++) {
      const evs = [0, 1, 2].map((j) => acc.next(acc.ids[(i * 3 + j) % acc.ids.length]));
      await commitEvents(pg, evs);
      committed.push(...evs.map((e) => e.eventId));
      await new Promise((res) => setTimeout(res, 5));
    }
  })().catch((e) => { writerError = e; });
  const check = () => { if (writerError) throw writerError; };

  try {
    await until(() => { check(); return r.stats.published >= 2 * BATCH; }, WAIT_MS, 'relay publishing before Kafka goes away');

    freeze(kafka);
    const awayAt = Date.now();
    const retries = async () => (await metrics.retries.get()).values.filter((v) => v.labels.component === 'relay-poller').reduce((s, v) => s + v.value, 0);
    // a request the brokers answered just before SIGSTOP may still be acknowledged; from the first failed attempt on, nothing can be
    await until(async () => { check(); return (await retries()) >= 1; }, WAIT_MS, 'a first failed attempt while Kafka is away');
    const publishedBefore = r.stats.published;
    // away for several timeouts, and until at least two full batches' deliveries failed and the relay retried twice
    await until(async () => {
      check();
      return Date.now() - awayAt >= AWAY_MIN_MS && producer.failed >= 2 * BATCH && (await retries()) >= 2;
    }, WAIT_MS, 'deliveries failing while Kafka is away').catch(async (e: Error) => {
      throw new Error(`${e.message} (failed ${producer.failed}, acked ${producer.acked}, retries ${await retries()}, stats ${JSON.stringify(r.stats)}); last warnings:\n${warnings.slice(-5).join('')}`);
    });
    const awayMs = Date.now() - awayAt;
    const failed = producer.failed;
    const failures = await retries();
    assert.is(r.stats.published, publishedBefore, 'nothing is checkpointed while Kafka is away');
    thaw(kafka);

    // the relay resumes: it checkpoints again after Kafka is back
    await until(() => { check(); return r.stats.published > publishedBefore; }, WAIT_MS, 'relay publishing again after Kafka is back');
    await new Promise((res) => setTimeout(res, 500));
    stopWriting = true;
    await writer;
    check();

    // every committed event reaches the topic; the stored checkpoint reaches the last committed event
    const last = await pg.query<{ tx_id: string; position: string }>('SELECT tx_id::text, position::text FROM events e ORDER BY e.tx_id DESC, e.position DESC LIMIT 1');
    await until(() => r.stats.checkpoint.txId === last.rows[0].tx_id && r.stats.checkpoint.position === last.rows[0].position, WAIT_MS,
      `checkpoint reaches the last committed event (at ${JSON.stringify(r.stats.checkpoint)}, want ${JSON.stringify(last.rows[0])})`);
    const ids = (): Map<string, number> => {
      const out = new Map<string, number>();
      for (const m of reader!.messages) {
        const id = (m.value as { eventId?: string } | undefined)?.eventId;
        if (id) out.set(id, (out.get(id) ?? 0) + 1);
      }
      return out;
    };
    await until(() => { const got = ids(); return committed.every((id) => got.has(id)); }, WAIT_MS, 'every committed event on the topic');

    const got = ids();
    const stored = await storedPayloads(pg);
    assert.is(stored.size, committed.length, 'the writer\'s events are all in the store');
    const missing = committed.filter((id) => !got.has(id));
    assert.equal(missing, [], 'no committed event is missing from the topic');
    const foreign = [...got.keys()].filter((id) => !stored.has(id));
    assert.equal(foreign, [], 'nothing but stored events on the topic');
    for (const m of reader.messages) {
      const id = (m.value as { eventId: string }).eventId;
      assert.is(m.raw!.toString('utf8'), stored.get(id)!.payload, `event ${id} published exactly as stored`);
      assert.is(m.key, stored.get(id)!.accountId, `event ${id} keyed by its account`);
    }
    assert.ok(r.stats.published >= committed.length, 'the relay checkpointed every committed event');
    assert.equal(unhandled.map(String), [], 'no unhandled rejection (Node 20 would have ended the process)');
    const dupes = [...got.values()].filter((n) => n > 1).length;
    console.log(`    kafka away ${awayMs} ms (message.timeout.ms ${MESSAGE_TIMEOUT_MS}): ${failed} deliveries failed, ${failures} relay retries; `
      + `${committed.length} events committed, all published (${dupes} more than once), unhandled rejections: ${unhandled.length}`);
  } finally {
    stopWriting = true;
    await writer;
    if (kafka) thaw(kafka);
  }
});

test.run();
