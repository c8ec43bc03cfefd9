/**
 * The one place that maps a failure to what is done with it (src/errors.ts),
 * and the RetryBudget that turns a retried failure into "stalled" after
 * pipeline.maxRetries (src/retry-budget.ts): readiness, metric and logs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Registry } from 'prom-client';
import { BankingError, classifyError, errorCodeOf } from '../src/errors';
import { createLogger } from '../src/logger';
import { createMetrics } from '../src/metrics';
import { Health } from '../src/health';
import { RetryBudget } from '../src/retry-budget';

const pg = (code: string, message = 'x') => Object.assign(new Error(message), { code });

test('Postgres failures are classified by SQLSTATE, then by class', () => {
  const cases: Array<[string, string]> = [
    ['57P01', 'transient'], ['40001', 'transient'], ['40P01', 'transient'], ['55P03', 'transient'], ['57014', 'transient'],
    ['53300', 'transient'], ['08006', 'transient'], ['08P01', 'transient'],
    ['23505', 'conflict'],
    ['22P02', 'poison'], ['22021', 'poison'], ['22P05', 'poison'], ['22003', 'poison'], ['23502', 'poison'], ['23514', 'poison'], ['54000', 'poison'],
    ['42P01', 'fatal'], ['42703', 'fatal'], ['42501', 'fatal'], ['3D000', 'fatal'], ['28P01', 'fatal'],
    ['XX000', 'unknown'], ['42601', 'unknown'],
  ];
  for (const [code, want] of cases) assert.is(classifyError(pg(code)), want, code);
});

test('socket, librdkafka and our own codes; anything else is unknown', () => {
  assert.is(classifyError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'transient');
  assert.is(classifyError(new Error('Connection terminated unexpectedly')), 'transient');
  assert.is(classifyError(Object.assign(new Error('Local: Message timed out'), { code: -192 })), 'transient');
  assert.is(classifyError(Object.assign(new Error('Local: All broker connections are down'), { code: -187 })), 'transient');
  assert.is(classifyError(new BankingError('MESSAGE_UNREADABLE', 'x')), 'poison');
  assert.is(classifyError(new BankingError('INTERNAL', 'slot missing')), 'fatal');
  assert.is(classifyError(new BankingError('PG_TRANSIENT', 'x')), 'transient');
  assert.is(classifyError(new BankingError('PG_CONFLICT', 'x')), 'conflict');
  assert.is(classifyError(new TypeError('boom')), 'unknown');
  assert.is(classifyError('a string'), 'unknown');
  assert.is(classifyError(null), 'unknown');
  assert.is(classifyError(Object.assign(new Error('x'), { code: 'not-a-sqlstate' })), 'unknown');
  assert.is(errorCodeOf(pg('22P02')), '22P02');
  assert.is(errorCodeOf(new Error('x')), 'UNKNOWN');
});

test('RetryBudget: stalled past maxRetries, at once on a fatal error, cleared by a success', async () => {
  const metrics = createMetrics(new Registry(), { defaultMetrics: false });
  const health = new Health(metrics);
  const lines: Array<{ level: number; msg: string }> = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => { lines.push(JSON.parse(s)); } } });
  const budget = new RetryBudget('commands', { health, metrics, log }, 3);
  const stalled = async () => (await metrics.pipelineStalled.get()).values.find((v) => v.labels.pipeline === 'commands')?.value;
  assert.is((await health.check()).ready, true);
  assert.is(await stalled(), 0);

  for (let i = 1; i <= 3; i++) {
    const wait = budget.failed(pg('57P01', 'terminating connection'), 'transient', 'a batch');
    assert.ok(wait >= 50 && wait <= 5000, `backoff ${wait}`);
    assert.is(budget.stalled, null, `not stalled after ${i}`);
  }
  const retrying = await health.check();
  assert.is(retrying.ready, true, 'retrying within the budget is still ready');
  assert.match(retrying.checks['commands-pipeline'].detail ?? '', /3 failed attempts/);
  budget.failed(pg('57P01', 'terminating connection'), 'transient', 'a batch');
  assert.is(budget.stalled?.code, '57P01');
  assert.is(await stalled(), 1);
  const check = await health.check();
  assert.is(check.ready, false);
  assert.match(check.checks['commands-pipeline'].detail ?? '', /stalled since .* after 4 failed attempts: transient 57P01: terminating connection/);
  assert.equal(lines.map((l) => l.level), [40, 40, 40, 50], 'one line per backoff step: warnings, then an error once stalled');

  budget.succeeded();
  assert.is(budget.stalled, null);
  assert.is(await stalled(), 0);
  assert.is((await health.check()).ready, true);
  assert.ok(lines.some((l) => l.msg === 'commands recovered; ready again'));

  // a conflict (another writer holds the rows) is contention: a warning until it stalls the role
  const before = lines.length;
  budget.failed(pg('23505', 'duplicate key value violates unique constraint "events_pkey"'), 'conflict', 'a batch');
  assert.equal(lines.slice(before).map((l) => l.level), [40]);
  assert.match(lines[before].msg, /another writer holds/);
  budget.succeeded();

  budget.failed(pg('42P01', 'relation "events" does not exist'), 'fatal', 'a batch');
  assert.is(budget.stalled?.errorClass, 'fatal', 'a fatal error stalls at once');
  assert.match((await health.check()).checks['commands-pipeline'].detail ?? '', /fatal 42P01/);
  const retries = (await metrics.retries.get()).values.filter((v) => v.labels.component === 'commands').reduce((s, v) => s + v.value, 0);
  assert.is(retries, 6);
});

test.run();
