/**
 * The SRE surface over real HTTP: /metrics passes `promtool check metrics`,
 * /healthz answers, and /readyz follows a real Postgres going away.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { createLogger } from '../src/logger';
import { createMetrics, type Metrics } from '../src/metrics';
import { Health } from '../src/health';
import { startHttpServer, type HttpServer } from '../src/http-server';
import { startPostgres, removePostgresData, type PgState } from '../dev/stack/postgres';
import { freePort } from '../dev/stack/ports';
import { isAlive, stopPid } from '../dev/stack/process';
import { createTestDatabase, withTimeout, type TestDb } from './helpers/stack';
import { promtoolCheck } from './helpers/promtool';

const log = createLogger({ level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

async function get(server: HttpServer, pathname: string, init?: RequestInit): Promise<{ status: number; type: string; body: string }> {
  const res = await withTimeout(fetch(`http://127.0.0.1:${server.port}${pathname}`, init), 15000, `GET ${pathname}`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

interface Readyz { status: string; checks: Record<string, { ok: boolean; required: boolean; detail?: string; latencyMs: number }> }

/** A server on port 0 with a fresh registry; `body` gets the metrics and health, and everything is closed afterwards. */
async function withServer(body: (server: HttpServer, health: Health, metrics: Metrics) => Promise<void>): Promise<void> {
  const metrics = createMetrics(new Registry());
  const health = new Health(metrics, 3000);
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, health, log });
  try {
    await body(server, health, metrics);
  } finally {
    await withTimeout(server.close(), 10000, 'closing the http server');
  }
}

const metricsSuite = suite('/metrics');

metricsSuite('/metrics is Prometheus text that promtool accepts', async () => {
  let db: TestDb | undefined;
  let pool: Pool | undefined;
  try {
    db = await createTestDatabase('metrics_http');
    const p = new Pool({ connectionString: db.url, max: 2 });
    pool = p;
    p.on('error', () => undefined);
    await withServer(async (server, health, metrics) => {
      health.add('postgres', async () => { await p.query('SELECT 1'); });
      // give labelled series values, so their exposition is linted too
      metrics.commands.inc({ type: 'Deposit', status: 'accepted' });
      metrics.batchSize.observe({ sink: 'events' }, 250);
      metrics.flushDuration.observe({ sink: 'events' }, 0.02);
      metrics.consumerLag.set({ group: 'g', topic: 'bank.commands', partition: '0' }, 3);
      metrics.dlq.inc({ topic: 'bank.commands.dlq', reason: 'MESSAGE_UNREADABLE' });
      assert.is((await get(server, '/readyz')).status, 200);

      const res = await get(server, '/metrics');
      assert.is(res.status, 200);
      assert.match(res.type, /^text\/plain/);
      for (const name of ['banking_es_commands_total{type="Deposit",status="accepted"} 1', 'banking_es_dependency_up{dependency="postgres"} 1', 'banking_es_batch_size_bucket', 'banking_es_process_cpu_user_seconds_total']) {
        assert.ok(res.body.includes(name), `/metrics lacks ${name}`);
      }

      const { code, output } = await promtoolCheck(res.body);
      assert.is(code, 0, `promtool complained (exit ${code}):\n${output}`); // no allow list: lint problems fail too
      assert.is(output.trim(), '');
      assert.ok(res.body.includes('banking_es_nodejs_active_handles{type='), 'the handle counts stay, by type');
      assert.not.ok(res.body.includes('_active_handles_total'));
    });
  } finally {
    await pool?.end().catch(() => undefined);
    await db?.drop().catch((e: unknown) => console.error('could not drop test database', e));
  }
});

metricsSuite('the promtool check itself rejects broken exposition', async () => {
  const { code } = await promtoolCheck('banking_es_broken{ 1\n');
  assert.is.not(code, 0);
  assert.is.not(code, 3);
});

metricsSuite.run();

const endpoints = suite('/healthz and unknown paths');

endpoints('/healthz answers 200 JSON while alive', () =>
  withServer(async (server) => {
    const res = await get(server, '/healthz');
    assert.is(res.status, 200);
    assert.match(res.type, /^application\/json/);
    const body = JSON.parse(res.body) as { status: string; uptimeSeconds: number };
    assert.is(body.status, 'alive');
    assert.type(body.uptimeSeconds, 'number');
  }));

endpoints('an unknown path is 404, a POST is 405', () =>
  withServer(async (server) => {
    assert.is((await get(server, '/nope')).status, 404);
    assert.is((await get(server, '/metricsx')).status, 404);
    assert.is((await get(server, '/metrics', { method: 'POST' })).status, 405);
  }));

endpoints('query strings are ignored when routing', () =>
  withServer(async (server) => {
    assert.is((await get(server, '/healthz?verbose=1')).status, 200);
  }));

endpoints.run();

const readiness = suite('/readyz');

readiness('/readyz follows a real Postgres: 200 while up, 503 with a detail once it is stopped', async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-readyz-'));
  let pg: PgState | undefined;
  let pool: Pool | undefined;
  try {
    pg = await withTimeout(startPostgres({ stateDir, port: await freePort(), database: 'probe' }), 90000, 'starting a separate Postgres');
    const p = new Pool({ connectionString: pg.url, max: 2, connectionTimeoutMillis: 2000 });
    pool = p;
    const poolErrors: Error[] = [];
    p.on('error', (e) => { poolErrors.push(e); });
    await withServer(async (server, health, metrics) => {
      health.add('postgres', async () => { await p.query('SELECT 1'); });

      const up = await get(server, '/readyz');
      assert.is(up.status, 200, up.body);
      const upBody = JSON.parse(up.body) as Readyz;
      assert.is(upBody.status, 'ready');
      assert.is(upBody.checks.postgres.ok, true);
      assert.is(upBody.checks.postgres.required, true);
      assert.is((await metrics.dependencyUp.get()).values.find((v) => v.labels.dependency === 'postgres')?.value, 1);

      const stopped = await stopPid(pg!.pid, 'SIGINT', 20000);
      assert.ok(stopped === 'stopped' || stopped === 'killed', `stopping Postgres: ${stopped}`);
      assert.not.ok(isAlive(pg!.pid));

      // the pool may still hand out a dying connection once; poll until the probe reports the outage
      let last = { status: 0, type: '', body: '' };
      const deadline = Date.now() + 30000;
      while (Date.now() < deadline) {
        last = await get(server, '/readyz');
        if (last.status === 503) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.is(last.status, 503, `still ${last.status} after Postgres stopped: ${last.body}`);
      const downBody = JSON.parse(last.body) as Readyz;
      assert.is(downBody.status, 'not ready');
      assert.is(downBody.checks.postgres.ok, false);
      assert.type(downBody.checks.postgres.detail, 'string');
      assert.ok(downBody.checks.postgres.detail!.length > 0);
      assert.not.ok(last.body.includes(new URL(pg!.url).password), 'the Postgres password leaked into /readyz');
      assert.is((await metrics.dependencyUp.get()).values.find((v) => v.labels.dependency === 'postgres')?.value, 0);
    });
  } finally {
    await pool?.end().catch(() => undefined);
    if (pg) {
      if (isAlive(pg.pid)) await stopPid(pg.pid, 'SIGINT', 20000);
      removePostgresData(pg);
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
  assert.ok(pg && !fs.existsSync(pg.baseDir), 'the separate Postgres data directory was removed');
});

readiness('a failing optional probe keeps /readyz at 200 and shows in the detail', () =>
  withServer(async (server, health) => {
    health.add('always-ok', async () => 'fine');
    health.add('redis', async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:1'); }, { required: false });
    const res = await get(server, '/readyz');
    assert.is(res.status, 200, res.body);
    const body = JSON.parse(res.body) as Readyz;
    assert.is(body.status, 'ready');
    assert.is(body.checks.redis.ok, false);
    assert.is(body.checks.redis.required, false);
    assert.match(body.checks.redis.detail ?? '', /ECONNREFUSED/);
    assert.is(body.checks['always-ok'].ok, true);
    assert.is(body.checks['always-ok'].detail, 'fine');
  }));

readiness('a failing required probe makes /readyz 503; a hanging one times out', () =>
  withServer(async (server, health) => {
    health.add('hangs', () => new Promise<void>(() => undefined));
    const res = await get(server, '/readyz');
    assert.is(res.status, 503, res.body);
    const body = JSON.parse(res.body) as Readyz;
    assert.is(body.checks.hangs.ok, false);
    assert.match(body.checks.hangs.detail ?? '', /no answer within 3000 ms/);
  }));

readiness.run();
