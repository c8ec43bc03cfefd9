/**
 * `rebuildProjections` against real Postgres and Redis: the rebuilt read
 * models equal the fold of the event store; an interrupted rebuild resumes
 * from its checkpoint (and holds the projector meanwhile); a second rebuild
 * is refused at once while one runs; the CLI glue prints a progress bar and
 * an account report.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PassThrough } from 'node:stream';
import { Pool, Client } from 'pg';
import Redis from 'ioredis';
import { ProjectionFixture } from '../helpers/projections';
import { generateHistory } from '../helpers/event-history';
import { testStack } from '../helpers/stack';
import { createLogger } from '../../src/logger';
import { loadConfig } from '../../src/config';
import { rebuildProjections, RebuildLockedError, REBUILD_REDIS_KEY, type RebuildProgress } from '../../src/projections/rebuild';
import { LOCK_PROJECTION_WRITE } from '../../src/db/sql/projection-rebuilds';
import { runAccountCommand, runRebuildCommand } from '../../src/projections/cli-commands';

const log = createLogger({ level: 'silent' });
let f: ProjectionFixture;
let pool: Pool;
let redis: Redis | undefined;
const history = generateHistory({ accounts: 300, commands: 10000, seed: 21 });

test.before(async () => {
  f = await ProjectionFixture.create('rebuild');
  pool = new Pool({ connectionString: f.db.url, max: 4 });
  pool.on('error', () => undefined);
  const r = testStack().redis;
  if (r) {
    redis = new Redis(r.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    await redis.connect();
  }
  await f.insertEvents(history.map((e) => e.envelope));
});

test.after(async () => {
  redis?.disconnect();
  await pool?.end();
  await f?.release();
});

async function assertConsistent(what: string): Promise<void> {
  const diffs = await f.diffWithEventStore();
  assert.equal(diffs.slice(0, 5), [], `${what}: ${diffs.length} differences`);
}

test('a rebuild equals the fold of the event store, whatever the read models held before', async () => {
  // junk a rebuild must not keep: an account the store does not know, a wrong balance
  await f.pg.query(`INSERT INTO account_projections VALUES ('00000000-0000-4000-8000-000000000001', 'ghost', 'USD', 5, 'open', 1, now(), now(), NULL)`);
  const progress: RebuildProgress[] = [];
  const r = await rebuildProjections({ pool, log, redis, batchSize: 777, onProgress: (p) => progress.push(p) });
  assert.equal([r.events, r.completed, r.resumed, r.unreadable], [history.length, true, false, 0]);
  await assertConsistent('after a rebuild');
  assert.is(progress[0].done, 0);
  assert.is(progress[progress.length - 1].done, history.length);
  assert.ok(progress.every((p) => p.total === history.length));
  assert.ok(progress.slice(1).every((p, i) => p.done > progress[i].done && typeof p.etaSeconds === 'number' && p.etaSeconds >= 0), 'progress rises, with an ETA');
  assert.is(progress.length, 1 + Math.ceil(history.length / 777));
  const { rows } = await f.pg.query("SELECT state, events_done::int, events_total::int, runs FROM projection_rebuilds ORDER BY id");
  assert.equal(rows, [{ state: 'done', events_done: history.length, events_total: history.length, runs: 1 }]);
  if (redis) assert.is(await redis.exists(REBUILD_REDIS_KEY), 0, 'the Redis lock is released');

  // a completed rebuild starts over
  await f.pg.query("UPDATE account_projections SET balance = balance + 1 WHERE account_id = (SELECT account_id FROM account_projections LIMIT 1)");
  const again = await rebuildProjections({ pool, log, redis, batchSize: 5000, onProgress: () => undefined });
  assert.equal([again.events, again.completed, again.resumed], [history.length, true, false]);
  await assertConsistent('after a second rebuild');
});

test('an interrupted rebuild resumes from its checkpoint; a projector waits for it meanwhile', async () => {
  const batch = 500;
  const abort = new AbortController();
  let pages = 0;
  const first = await rebuildProjections({ pool, log, redis, batchSize: batch, signal: abort.signal, onProgress: (p) => { if (p.done > 0 && ++pages === 3) abort.abort(); } });
  assert.equal([first.events, first.completed], [3 * batch, false]);
  const { rows: [cp] } = await f.pg.query("SELECT state, events_done::int, last_account_id::text, last_version::int FROM projection_rebuilds WHERE state = 'running'");
  assert.is(cp.events_done, 3 * batch);
  const c = await f.counts();
  assert.ok(c.transactions < 3 * batch + 1 && c.transactions > 0, `a partial read model (${c.transactions} transactions)`);
  const { rows: [ahead] } = await f.pg.query('SELECT count(*)::int AS n FROM account_projections WHERE (account_id, version) > ($1::uuid, $2::bigint)', [cp.last_account_id, cp.last_version]);
  assert.is(ahead.n, 0, 'nothing past the checkpoint');

  // a projector started now must not build on the half-done read models
  const p = await f.startInProcess();
  try {
    const more = generateHistory({ accounts: 5, commands: 60, seed: 22 });
    await f.insertEvents(more.map((e) => e.envelope));
    await f.produceEvents(more);
    const waited = async () => (await p.metrics.registry.getSingleMetric('banking_es_retries_total')!.get()).values.filter((v) => v.labels.code === 'rebuild-interrupted').reduce((s, v) => s + v.value, 0);
    const deadline = Date.now() + 30000;
    while ((await waited()) < 2) {
      if (Date.now() > deadline) throw new Error('the projector never met the interrupted rebuild');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.is(await f.committedTotal(), 0, 'the projector committed nothing while the rebuild was interrupted');

    // events appended behind the rebuild's cursor are the projector's to apply once the rebuild is done
    const behind = more.filter((e) => e.envelope.accountId < cp.last_account_id).length;
    assert.ok(behind > 0 && behind < more.length, `the new accounts fall on both sides of the checkpoint (${behind}/${more.length})`);
    const second = await rebuildProjections({ pool, log, redis, batchSize: batch, onProgress: () => undefined });
    assert.equal([second.completed, second.resumed], [true, true]);
    assert.is(first.events + second.events, history.length + more.length - behind, 'every event ahead of the cursor projected once over the two runs');
    const { rows } = await f.pg.query("SELECT state, runs, events_done::int FROM projection_rebuilds WHERE id = (SELECT max(id) FROM projection_rebuilds)");
    assert.equal(rows, [{ state: 'done', runs: 2, events_done: history.length + more.length - behind }]);
    await f.caughtUp(30000);
    await assertConsistent('after resuming, with the projector running again');
    const counted = (await p.metrics.registry.getSingleMetric('banking_es_projection_events_total')!.get()).values;
    const result = (r: string) => counted.find((v) => v.labels.result === r)?.value;
    assert.equal([result('stale'), result('applied')], [more.length - behind, behind], 'the projector dropped what the rebuild had projected and applied the rest');
  } finally {
    await p.stop();
  }
});

test('--account and --since rebuild only those accounts\' rows, resumably; a full rebuild waits for an interrupted selective one', async () => {
  const byAccount = new Map<string, number>();
  for (const e of history) byAccount.set(e.envelope.accountId, (byAccount.get(e.envelope.accountId) ?? 0) + 1);
  const ids = [...byAccount.keys()].sort();
  const [a1, a2, a3, untouched] = [ids[3], ids[40], ids[200], ids[100]];
  const spoil = async (id: string) => {
    await f.pg.query('UPDATE account_projections SET balance = balance + 1 WHERE account_id = $1', [id]);
    await f.pg.query('DELETE FROM transaction_projections WHERE account_id = $1 AND version = 1', [id]);
  };
  for (const id of [a1, a2, a3, untouched]) await spoil(id);
  const spoiled = async () => (await f.diffWithEventStore()).length;
  assert.ok(await spoiled() >= 8, 'four accounts differ from the store');

  // interrupted after its first page, then resumed: the same three accounts, never the others
  const abort = new AbortController();
  const first = await rebuildProjections({ pool, log, redis, batchSize: 10, signal: abort.signal, scope: { accounts: [a3, a1.toUpperCase(), a2] }, onProgress: (p) => { if (p.done > 0) abort.abort(); } });
  assert.equal([first.events, first.completed], [10, false]);
  const refused = await rebuildProjections({ pool, log, redis, batchSize: 500, onProgress: () => undefined }).then(() => null, (e: unknown) => e);
  assert.instance(refused, RebuildLockedError);
  assert.match((refused as Error).message, /interrupted rebuild of 3 accounts must finish first/);
  const second = await rebuildProjections({ pool, log, redis, batchSize: 10, scope: { accounts: [a1] }, onProgress: () => undefined });
  assert.equal([second.completed, second.resumed], [true, true]);
  assert.is(first.events + second.events, byAccount.get(a1)! + byAccount.get(a2)! + byAccount.get(a3)!, 'those accounts\' events, once');
  const left = await f.diffWithEventStore();
  assert.ok(left.length > 0 && left.every((d) => d.includes(untouched)), `only the account left out still differs: ${left.slice(0, 3).join('; ')}`);

  // --since: the accounts with an event recorded since then; the untouched one has none so late
  const lastOf = new Map<string, string>();
  for (const e of history) lastOf.set(e.envelope.accountId, e.envelope.recordedAt);
  const since = [...lastOf.values()].sort()[Math.floor(lastOf.size / 2)];
  const later = [...lastOf].filter(([, t]) => t >= since).map(([id]) => id);
  const target = later.find((id) => id !== untouched)!;
  await spoil(target);
  assert.ok(lastOf.get(untouched)! < since || later.includes(untouched));
  const third = await rebuildProjections({ pool, log, redis, batchSize: 500, scope: { since: new Date(since) }, onProgress: () => undefined });
  assert.is(third.events, later.reduce((n, id) => n + byAccount.get(id)!, 0), 'every event of the accounts written to since then');
  const after = await f.diffWithEventStore();
  assert.ok(after.every((d) => !d.includes(target)), 'the account spoiled after the cut-off is rebuilt');
  assert.is(after.length > 0, !later.includes(untouched), 'the untouched account is rebuilt only if it had an event since then');

  const full = await rebuildProjections({ pool, log, redis, batchSize: 1000, onProgress: () => undefined });
  assert.ok(full.completed);
  await assertConsistent('after the full rebuild that follows');
});

test('a second rebuild is refused at once while one runs (Redis lock, and the Postgres lock alone)', async () => {
  // an in-flight projector flush holds the write lock shared: the first rebuild takes its locks, then waits here
  const flush = new Client({ connectionString: f.db.url });
  await flush.connect();
  try {
    await flush.query('BEGIN');
    await flush.query('SELECT pg_advisory_xact_lock_shared($1)', [LOCK_PROJECTION_WRITE]);
    const running = rebuildProjections({ pool, log, redis, batchSize: 2000, onProgress: () => undefined });
    const deadline = Date.now() + 10000;
    for (;;) {
      const { rows } = await f.pg.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
      if (rows[0].n > 0) break;
      if (Date.now() > deadline) throw new Error('the first rebuild never queued for the write lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    const attempts = redis ? [redis, undefined] : [undefined];
    for (const r of attempts) {
      const t0 = Date.now();
      const e = await rebuildProjections({ pool, log, redis: r, batchSize: 2000, onProgress: () => undefined }).then(() => null, (x: unknown) => x);
      assert.instance(e, RebuildLockedError);
      assert.match((e as Error).message, r ? /another projection rebuild is running \(Redis lock/ : /another projection rebuild is running \(Postgres advisory lock/);
      assert.ok(Date.now() - t0 < 2000, `refused fast (${Date.now() - t0} ms)`);
    }
    await flush.query('COMMIT');
    const done = await running;
    assert.equal([done.completed, done.events], [true, (await f.counts()).events]);
    await assertConsistent('after the first rebuild finished');
  } finally {
    await flush.end();
  }
  const { rows } = await f.pg.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'");
  assert.is(rows[0].n, 0, 'no advisory lock left behind');
});

test('CLI glue: rebuild-projections prints progress and exits 0; account prints the projection', async () => {
  const { config } = loadConfig({ env: { ...process.env, DATABASE_URL: f.db.url, LOG_LEVEL: 'silent' } });
  const err = new PassThrough();
  let text = '';
  err.on('data', (d: Buffer) => { text += d.toString(); });
  assert.is(await runRebuildCommand(config, log, { batchSize: 3000, stderr: err }), 0, text);
  assert.match(text, /\[#{30}\] 100\.0%/);
  assert.match(text, /ETA/);
  assert.match(text, /rebuild completed: \d+ events projected this run/);

  const acct = history.find((e) => e.envelope.type === 'AccountClosed')!.envelope.accountId;
  const out = new PassThrough();
  let report = '';
  out.on('data', (d: Buffer) => { report += d.toString(); });
  assert.is(await runAccountCommand(config, acct.toUpperCase(), out, { limit: 3 }), 0);
  assert.match(report, new RegExp(`account  ${acct}`));
  assert.match(report, /status {3}closed since /);
  assert.match(report, /latest 3 transactions:/);
  assert.is(report.trim().split('\n').length, 9 + 1 + 3, report);
  const none = new PassThrough();
  assert.is(await runAccountCommand(config, '00000000-0000-4000-8000-00000000dead', none), 1);
  assert.is(await runAccountCommand(config, 'nope', none, { stderr: none }), 2);
});

test.run();
