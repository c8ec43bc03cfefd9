/**
 * Kafka peer loss (docs/reliability.md §4): the daemon runs against a private
 * mock cluster whose host process is SIGKILLed mid-stream. The daemon stays
 * alive, /readyz turns 503 with kafka ok:false, /healthz and /metrics keep
 * answering, and SIGTERM still ends it with exit 0 within SHUTDOWN_TIMEOUT_MS
 * although Kafka is gone. A replacement mock cluster comes up on new ports with
 * empty topics, so the daemon cannot reach it through its configured
 * bootstrap list: that is recorded, not asserted (see the doc's limitation).
 * Everything committed before the loss is checked against the oracle.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../helpers/faults';
import { isAlive } from '../../src/stack/process';

const SHUTDOWN_MS = 10000;
let kafka: MockKafka | undefined;
let replacement: MockKafka | undefined;
let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('kafka-loss').join(' ')}`);
  await rig?.release();
  await releaseMockKafka(kafka);
  await releaseMockKafka(replacement);
});

test('mock cluster killed mid-stream: alive, not ready, serving /healthz and /metrics, clean exit on SIGTERM', async () => {
  kafka = await startMockKafka();
  rig = await Rig.create({ name: 'kafkaloss', brokers: kafka.brokers, env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS) } });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 100, seed: 5 });
  await r.tap(oracle);
  const d = await r.start();
  assert.is((await d.get('/readyz')).status, 200);

  let stop = false;
  void r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 50 }).catch(() => undefined);
  await sleep(3000);
  const before = oracle.received;
  assert.ok(before > 0, 'outcomes flowed before the loss');
  process.kill(kafka.pid, 'SIGKILL');
  stop = true;
  const lostAt = Date.now();
  while (isAlive(kafka.pid)) await sleep(20);

  let notReady: { status: number; body: string } | undefined;
  while (Date.now() - lostAt < 30000) {
    const res = await d.get('/readyz');
    const body = JSON.parse(res.body) as { checks: Record<string, { ok: boolean; detail?: string }> };
    if (res.status === 503 && body.checks.kafka?.ok === false) { notReady = res; break; }
    await sleep(200);
  }
  assert.ok(notReady, '/readyz did not report kafka ok:false within 30 s');
  console.log(`not ready ${Date.now() - lostAt} ms after the cluster died: ${notReady!.body.trim().slice(0, 300)}`);

  replacement = await startMockKafka();
  await sleep(5000);
  assert.ok(d.alive, 'the daemon keeps running without Kafka');
  assert.is((await d.get('/healthz')).status, 200);
  const metrics = await d.get('/metrics');
  assert.is(metrics.status, 200);
  assert.match(metrics.body, /banking_es_dependency_up\{dependency="kafka"\} 0/);
  const later = await d.get('/readyz');
  console.log(`with a replacement cluster on new ports (${replacement.brokers}), /readyz is ${later.status}`);

  // what Kafka acknowledged before the loss was committed exactly once
  const { rows } = await r.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM events');
  assert.ok(rows[0].n > 0);
  assert.equal(oracle.mismatches, [], 'outcomes read before the loss agree with the oracle');
  const { rows: dup } = await r.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM (SELECT command_id FROM events GROUP BY command_id HAVING count(*) > 1) x');
  assert.is(dup[0].n, 0);

  const t = Date.now();
  const exit = await d.stop(SHUTDOWN_MS + 10000);
  const took = Date.now() - t;
  console.log(`SIGTERM with Kafka gone: exit ${exit.code ?? exit.signal} after ${took} ms (budget ${SHUTDOWN_MS} ms)`);
  assert.is(exit.code, 0, `exit ${JSON.stringify(exit)}; last lines: ${d.output().split('\n').slice(-8).join('\n')}`);
  assert.ok(took < SHUTDOWN_MS + 3000, `shutdown took ${took} ms`);
  failed = false;
});

test.run();
