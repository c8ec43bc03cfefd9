/**
 * Backpressure (docs/architecture.md §4): while Postgres cannot take the batch (the test
 * holds an ACCESS EXCLUSIVE lock on events), the consume loop pauses once
 * in-flight work passes PIPELINE_MAX_IN_FLIGHT, memory stays bounded however
 * much input waits in Kafka, and everything is processed once the lock goes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { cmd, PipelineFixture, type Cmd } from '../helpers/pipeline';

const ACCOUNTS = 300;
const COMMANDS = 30000;
const RSS_HEADROOM = 150 * 1024 * 1024;
const MAX_IN_FLIGHT = 2000;

let f: PipelineFixture | undefined;
let locker: Client | undefined;

test.after(async () => {
  await locker?.query('ROLLBACK').catch(() => undefined);
  await locker?.end().catch(() => undefined);
  await f?.release();
});

test('a blocked Postgres pauses consumption; RSS stays bounded; all is processed after', async () => {
  f = await PipelineFixture.create('backpressure', { PIPELINE_MAX_IN_FLIGHT: String(MAX_IN_FLIGHT), KAFKA_QUEUED_MAX_KBYTES: '1024' });
  const fx = f;
  const t0 = Date.now();
  const d = await fx.start();
  console.log(`daemon up in ${Date.now() - t0} ms`);
  const paused = 'banking_es_consumer_paused{pipeline="commands"}';

  // warm up every code path once, so the baseline includes the worker thread and the caches
  const warm = Array.from({ length: 50 }, () => cmd.open(randomUUID(), '1.00'));
  await fx.sendAll(warm);
  await fx.outcomeFor(warm, 30000);
  const baseline = d.rssBytes();

  locker = new Client({ connectionString: fx.db.url });
  locker.on('error', () => undefined);
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');

  const ids = Array.from({ length: ACCOUNTS }, () => randomUUID());
  const plan: Cmd[] = ids.map((a) => cmd.open(a, '0'));
  for (let i = plan.length; i < COMMANDS; i++) plan.push(cmd.deposit(ids[i % ACCOUNTS], '0.01'));
  let peak = baseline;
  const sample = () => { peak = Math.max(peak, d.rssBytes()); };
  for (let i = 0; i < plan.length; i += 2000) {
    await fx.sendAll(plan.slice(i, i + 2000));
    sample();
  }

  console.log(`${COMMANDS} commands produced ${Date.now() - t0} ms after start`);
  // the consumer pauses with the batch stuck behind the lock
  const deadline = Date.now() + 30000;
  let value: number | undefined;
  while ((value = await d.metric(paused)) !== 1) {
    sample();
    if (Date.now() > deadline) throw new Error(`${paused} is ${value}, not 1, after 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const inFlight = await d.metric('banking_es_in_flight_messages{pipeline="commands"}');
  // the pause takes effect after the consume call that crossed the bound (at most 2000 messages)
  assert.ok(inFlight !== undefined && inFlight >= MAX_IN_FLIGHT && inFlight <= MAX_IN_FLIGHT + 2000, `in flight while paused: ${inFlight}`);
  // keep sampling for a while with the whole backlog waiting in Kafka
  for (let i = 0; i < 15; i++) { sample(); await new Promise((r) => setTimeout(r, 200)); }
  assert.is(await d.metric(paused), 1, 'still paused while Postgres is blocked');
  const outcomesWhileLocked = fx.outcomes.messages.length - warm.length;
  assert.is(outcomesWhileLocked, 0, 'nothing committed while events is locked');
  console.log(`baseline RSS ${(baseline / 1048576).toFixed(0)} MB, peak ${(peak / 1048576).toFixed(0)} MB while paused, in flight ${inFlight}`);
  assert.ok(peak < baseline + RSS_HEADROOM, `RSS grew from ${baseline} to ${peak} bytes`);

  await locker.query('ROLLBACK');
  const released = Date.now();
  await fx.outcomeFor(plan, 90000);
  const batches = await d.metric('banking_es_batch_size_count{sink="commands"}');
  const flushSeconds = await d.metric('banking_es_flush_duration_seconds_sum{sink="commands"}');
  console.log(`${COMMANDS} commands processed ${Date.now() - released} ms after the lock was released (${batches} batches, ${flushSeconds?.toFixed(1)} s in batches)`);
  const statuses = new Map<string, number>();
  for (const m of fx.outcomes.messages) statuses.set(m.value.status, (statuses.get(m.value.status) ?? 0) + 1);
  assert.is(statuses.get('accepted'), COMMANDS + warm.length, JSON.stringify([...statuses]));
  const { rows } = await fx.pg.query<{ n: number; total: string }>("SELECT count(*)::int AS n, sum((payload->'data'->>'balanceAfter')::bigint) FILTER (WHERE event_type = 'MoneyDeposited') AS total FROM events WHERE account_id = ANY($1::uuid[])", [ids]);
  assert.is(rows[0].n, COMMANDS);
  const { rows: last } = await fx.pg.query<{ b: string }>("SELECT DISTINCT (SELECT payload->'data'->>'balanceAfter' FROM events e WHERE e.account_id = a ORDER BY version DESC LIMIT 1) AS b FROM unnest($1::uuid[]) AS a", [ids]);
  assert.equal(last.map((r) => r.b), [String((COMMANDS - ACCOUNTS) / ACCOUNTS)], 'every account got all its deposits');
  const resumeDeadline = Date.now() + 10000;
  while ((await d.metric(paused)) !== 0 && Date.now() < resumeDeadline) await new Promise((r) => setTimeout(r, 200));
  assert.is(await d.metric(paused), 0, 'resumed');
  await fx.stop();
});

test.run();
