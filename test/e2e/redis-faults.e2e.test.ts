/**
 * Redis faults mid-stream (docs/reliability.md §3): the daemon runs with a
 * private redis-server, which is stopped for 5 s and started again, empty, on
 * the same port. banking_es_redis_up goes 1 → 0 → 1, /readyz stays 200 (Redis
 * is optional, docs/architecture.md §6), and correctness is unaffected: 300 commands
 * processed before the outage are re-sent after it, when Redis no longer
 * remembers them, and each is answered `duplicate` with its original outcome
 * (Postgres decides). Outcomes and event store match the oracle.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';
import { releasePrivateRedis, restartPrivateRedis, startPrivateRedis, stopPrivateRedis, type PrivateRedis } from '../helpers/faults';
import type { Daemon } from '../helpers/daemon';

let redis: PrivateRedis | undefined;
let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('redis-faults').join(' ')}`);
  await rig?.release();
  await releasePrivateRedis(redis);
});

async function metricBecomes(d: Daemon, sample: string, value: number, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while ((await d.metric(sample).catch(() => undefined)) !== value) {
    if (Date.now() - start > timeoutMs) throw new Error(`${sample} is not ${value} after ${timeoutMs} ms`);
    await sleep(100);
  }
  return Date.now() - start;
}

test('redis stopped and restarted mid-stream: redis_up 1→0→1, dedup still exact', async () => {
  redis = await startPrivateRedis();
  if (!redis) throw new Error('redis-server is not installed (apt-get install redis-server)');
  rig = await Rig.create({ name: 'redisfaults', env: { REDIS_URL: redis.state.url } });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 200, seed: 99 });
  await r.tap(oracle);
  const d = await r.start();
  await metricBecomes(d, 'banking_es_redis_up', 1, 10000);

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 100, maxAhead: 30000 });
  await sleep(3000);
  const before = oracle.distinct;
  await r.complete(oracle, 30000).catch(() => undefined);

  await stopPrivateRedis(redis);
  const downMs = await metricBecomes(d, 'banking_es_redis_up', 0, 10000);
  const ready = await d.get('/readyz');
  assert.is(ready.status, 200, `Redis is optional: ${ready.body}`);
  assert.is((JSON.parse(ready.body) as { checks: Record<string, { ok: boolean }> }).checks.redis?.ok, false);
  const receivedAtStop = oracle.received;
  await sleep(5000);
  assert.ok(oracle.received > receivedAtStop, 'commands are processed while Redis is down');
  await restartPrivateRedis(redis);
  const upMs = await metricBecomes(d, 'banking_es_redis_up', 1, 15000);
  console.log(`redis_up 0 after ${downMs} ms; 1 again ${upMs} ms after the restart`);

  // Redis restarted empty: only Postgres knows these were processed
  const resent: Array<Promise<unknown>> = [];
  for (let i = 0; i < 300; i++) {
    const c = oracle.resend(Math.floor((i * before) / 300));
    resent.push(r.producer.send(r.topics.commands, c.accountId, c.json));
  }
  await Promise.all(resent);
  await sleep(2000);
  stop = true;
  const sent = await produced;
  const drainMs = await r.complete(oracle, 60000);
  await sleep(300);
  console.log(`${sent} sent + 300 re-sent after the restart; drained in ${drainMs} ms; ${oracle.summary()}`);
  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.ok(oracle.duplicates >= 300, `${oracle.duplicates} duplicates`);
  assert.equal(await oracle.verifyStore(r.pg), [], 'event store agrees with the oracle');
  assert.is(await d.metric('banking_es_redis_up'), 1);
  const warned = d.logs().filter((l) => l.level === 40 && /redis/i.test(String(l.msg)));
  assert.ok(warned.length >= 1, 'the outage is logged');
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  const exit = await d.stop();
  assert.is(exit.code, 0);
  failed = false;
});

test.run();
