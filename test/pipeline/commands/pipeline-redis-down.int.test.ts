/**
 * Redis is optional (docs/architecture.md §6): with REDIS_URL pointing where nothing
 * listens, the command pipeline (here with PIPELINE_WORKERS=0, decisions
 * inline) still processes and deduplicates commands, /readyz stays ready with
 * redis reported down, banking_es_redis_up is 0, and the logs say so.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { freePort } from '../../../dev/stack/ports';
import { cmd, PipelineFixture } from '../../helpers/pipeline';

let f: PipelineFixture | undefined;

test.before(async () => {
  const port = await freePort(); // free a moment ago: nothing listens there
  f = await PipelineFixture.create('redisdown', { REDIS_URL: `redis://127.0.0.1:${port}`, PIPELINE_WORKERS: '0' });
  await f.start();
});

test.after(async () => {
  await f?.release();
});

test('commands are processed and deduplicated without Redis', async () => {
  const fx = f!;
  const a = randomUUID();
  const cs = [cmd.open(a, '10.00'), cmd.deposit(a, '0.05'), cmd.withdraw(a, '20.00'), cmd.withdraw(a, '4.05')];
  await fx.sendAll(cs);
  const os = await fx.outcomeFor(cs, 45000);
  assert.equal(os.map((o) => [o.status, o.reason ?? o.balance]), [['accepted', '10.00'], ['accepted', '10.05'], ['rejected', 'INSUFFICIENT_FUNDS'], ['accepted', '6.00']]);
  await fx.sendAll([cs[1]]);
  const [dup] = await fx.outcomeFor([cs[1]], 45000, 2);
  assert.equal([dup.status, dup.originalStatus, dup.version, dup.balance], ['duplicate', 'accepted', 2, '10.05']);
  assert.equal((await fx.events(a)).map((e) => e.version), [1, 2, 3]);
  assert.is(fx.daemon!.logs().filter((l) => l.workers !== undefined && l.msg === 'command pipeline started')[0]?.workers, 0);
});

test('/readyz is ready (200) with redis ok:false; banking_es_redis_up is 0', async () => {
  const d = f!.daemon!;
  const r = await d.get('/readyz');
  assert.is(r.status, 200, r.body);
  const body = JSON.parse(r.body) as { status: string; checks: Record<string, { ok: boolean; required: boolean; detail?: string }> };
  assert.is(body.status, 'ready');
  assert.is(body.checks.redis?.ok, false, r.body);
  assert.is(body.checks.redis?.required, false);
  assert.ok(body.checks.postgres?.ok && body.checks.kafka?.ok, r.body);
  assert.is(await d.metric('banking_es_redis_up'), 0);
  assert.is(await d.metric('banking_es_dependency_up{dependency="redis"}'), 0);
  const health = await d.get('/healthz');
  assert.is(health.status, 200);
});

test('the logs say Redis is unavailable (docs/architecture.md §6)', async () => {
  const d = f!.daemon!;
  const said = () => d.logs().some((l) => (l.level ?? 0) >= 40 && /redis/i.test(String(l.msg)));
  const deadline = Date.now() + 10000;
  while (!said() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.ok(said(), `no warning about Redis in the logs; messages were: ${JSON.stringify(d.logs().map((l) => `${l.level} ${l.msg}`))}`);
});

test.run();
