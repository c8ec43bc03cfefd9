/**
 * config/prometheus/alerts.yml (#16 item 4): the rules are valid (`promtool
 * check rules`), fire as their unit tests say (`promtool test rules`), cover
 * what an SRE of this daemon pages on, query only metrics the daemon defines,
 * each links a section of docs/runbook.md that exists, and docker-compose's
 * Prometheus loads them.
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
const dir = path.join(root, 'config', 'prometheus');
interface Rule { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> }
const rules = (parse(fs.readFileSync(path.join(dir, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

function promtool(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: dir });
  assert.ok(!r.error, 'promtool must be installed (apt-get install prometheus)');
  return { status: r.status, out: r.stdout + r.stderr };
}

test('promtool check rules accepts them', () => {
  const r = promtool('check', 'rules', 'alerts.yml');
  assert.is(r.status, 0, r.out);
});

test('promtool test rules: each alert fires when it should and not otherwise', () => {
  const r = promtool('test', 'rules', 'alerts.test.yml');
  assert.is(r.status, 0, r.out);
  const tested = new Set([...fs.readFileSync(path.join(dir, 'alerts.test.yml'), 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
  for (const rule of rules) assert.ok(tested.has(rule.alert), `${rule.alert} has a promtool unit test`);
});

test('the alerts an SRE needs exist, with a severity', () => {
  const names = rules.map((r) => r.alert);
  for (const a of ['BankingEsNotReady', 'BankingEsPipelineStalled', 'BankingEsPartitionsStopped', 'BankingEsConsumerLagHigh', 'BankingEsConsumerLagGrowing',
    'BankingEsDeadLetters', 'BankingEsRelaySlotLagHigh', 'BankingEsProjectionLagHigh', 'BankingEsOutcomesRepublished', 'BankingEsRedisDown']) {
    assert.ok(names.includes(a), a);
  }
  for (const r of rules) assert.ok(['critical', 'warning', 'info'].includes(r.labels.severity), `${r.alert} severity`);
});

test('they query only metrics src/metrics.ts defines', async () => {
  const defined = new Set((await createMetrics(new Registry()).registry.getMetricsAsJSON()).map((x) => x.name));
  for (const r of rules) {
    for (const m of r.expr.match(/banking_es_[a-z_]+/g) ?? []) assert.ok(defined.has(m), `${r.alert} uses ${m}, which the daemon does not export`);
  }
});

test('each links its own section of docs/runbook.md', () => {
  const runbook = fs.readFileSync(path.join(root, 'docs', 'runbook.md'), 'utf8');
  const headings = new Set([...runbook.matchAll(/^## (\w+)$/gm)].map((m) => m[1].toLowerCase()));
  for (const r of rules) {
    assert.is(r.annotations.runbook, `docs/runbook.md#${r.alert.toLowerCase()}`);
    assert.ok(headings.has(r.alert.toLowerCase()), `docs/runbook.md has a "## ${r.alert}" section`);
  }
  for (const h of ['meaning', 'first checks', 'fix']) {
    for (const r of rules) {
      const section = runbook.split(/^## /m).find((s) => s.startsWith(`${r.alert}\n`)) ?? '';
      assert.ok(section.toLowerCase().includes(`**${h}`), `${r.alert}'s section says its ${h}`);
    }
  }
});

test('docker-compose\'s Prometheus loads them', () => {
  const cfg = parse(fs.readFileSync(path.join(dir, 'prometheus.yml'), 'utf8')) as { rule_files: string[] };
  assert.ok(cfg.rule_files.includes('alerts.yml'));
  const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { volumes?: string[] }> };
  assert.ok(compose.services.prometheus.volumes!.includes('./config/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro'));
});

test.run();
