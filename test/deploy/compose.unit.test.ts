/**
 * docker-compose.yml cannot run here (no Docker engine), so its wiring is
 * checked instead: every service the daemon needs, the daemon pointed at
 * them by service name, published ports, files it mounts exist, Prometheus
 * config valid (promtool) and scraping the daemon, and every metric the
 * Grafana dashboard queries defined by src/metrics.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { Registry } from 'prom-client';
import { packageRoot } from '../../src/paths';
import { createMetrics } from '../../src/metrics';

const root = packageRoot();
interface Service { image?: string; environment?: Record<string, string>; ports?: string[]; volumes?: string[]; depends_on?: Record<string, unknown> | string[]; command?: string[] }
const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };
const svc = compose.services;

test('has every service of the issue', () => {
  for (const s of ['postgres', 'kafka', 'connect', 'connect-init', 'redis', 'banking-es', 'prometheus', 'grafana']) assert.ok(svc[s], `service ${s}`);
});

test('postgres enables logical decoding and kafka runs in KRaft mode', () => {
  assert.ok(svc.postgres.command!.join(' ').includes('wal_level=logical'));
  assert.is(svc.kafka.environment!.KAFKA_PROCESS_ROLES, 'broker,controller');
  assert.not.ok(svc.zookeeper, 'no ZooKeeper');
});

test('the daemon points at the services by name and runs every role in debezium mode', () => {
  const env = svc['banking-es'].environment!;
  assert.is(env.KAFKA_BROKERS, 'kafka:9092');
  assert.match(env.DATABASE_URL, /@postgres:5432\//);
  assert.is(env.REDIS_URL, 'redis://redis:6379');
  assert.is(env.CDC_MODE, 'debezium');
  assert.is(env.METRICS_HOST, '0.0.0.0');
  assert.ok(!env.ROLES, 'all roles (the default)');
  assert.ok(svc['banking-es'].ports!.includes(`${env.METRICS_PORT}:${env.METRICS_PORT}`));
  assert.is(svc.connect.environment!.BOOTSTRAP_SERVERS, 'kafka:9092');
});

test('published ports are the usual ones and distinct', () => {
  const host = Object.values(svc).flatMap((s) => (s.ports ?? []).map((p) => p.split(':')[0]));
  assert.equal(new Set(host).size, host.length);
  for (const p of ['5432', '9092', '8083', '6379', '9464', '9090', '3000']) assert.ok(host.includes(p), p);
});

test('every mounted file or folder exists in the repo', () => {
  for (const [name, s] of Object.entries(svc)) {
    for (const v of s.volumes ?? []) {
      const src = v.split(':')[0];
      if (!src.startsWith('.')) continue;
      assert.ok(fs.existsSync(path.join(root, src)), `${name} mounts ${src}`);
    }
  }
});

test('depends_on names existing services', () => {
  for (const [name, s] of Object.entries(svc)) {
    const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
    for (const d of deps) assert.ok(svc[d], `${name} depends on ${d}`);
  }
});

test('prometheus config is valid and scrapes the daemon', () => {
  const file = path.join(root, 'config/prometheus/prometheus.yml');
  const r = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
  assert.ok(!r.error, 'promtool must be installed (apt-get install prometheus)');
  assert.is(r.status, 0, r.stdout + r.stderr);
  const cfg = parse(fs.readFileSync(file, 'utf8')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
  const targets = cfg.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
  assert.ok(targets.includes(`banking-es:${svc['banking-es'].environment!.METRICS_PORT}`));
});

test('every metric the Grafana dashboard queries exists', async () => {
  const dash = JSON.parse(fs.readFileSync(path.join(root, 'config/grafana/dashboards/banking-es.json'), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
  const m = createMetrics(new Registry(), { defaultMetrics: false });
  const names = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name));
  const used = new Set(dash.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/banking_es_[a-z_]+/g) ?? [])));
  assert.ok(used.size >= 10);
  for (const u of used) assert.ok(names.has(u.replace(/_(bucket|sum|count)$/, '')), `${u} is not defined in src/metrics.ts`);
  for (const m of ['banking_es_partitions_stopped', 'banking_es_dlq_messages_total', 'banking_es_outcomes_republished_total', 'banking_es_ready']) assert.ok(used.has(m), `a panel shows ${m}`);
  for (const t of ['throughput', 'lag', 'batch', 'flush', 'dead', 'error']) assert.ok(dash.panels.some((p) => JSON.stringify(p).toLowerCase().includes(t)), `a panel about ${t}`);
});

test('the Debezium connector config the init service registers exists', () => {
  assert.ok(fs.existsSync(path.join(root, 'connectors/debezium-postgres.json')));
});

test.run();
