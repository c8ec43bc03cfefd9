/**
 * Two pipelines in one process append to the same rows (the command and
 * transfer roles both write accounts' events). A batch redone carefully reads
 * Postgres, decides, and writes; if the other pipeline commits to the same
 * account in between, the redo conflicts again, and again: a writer that
 * commits often starves one whose preparation takes a while. With their
 * shared write lock (src/pipeline/write-lock.ts) a careful redo holds it
 * from its preparation to its commit, and commits at its first careful try.
 *
 * Real Postgres and the real batch runner; the roles are the smallest that
 * write a versioned row: the next version of one account, a unique key on
 * (account, version), so a stale decision is a unique violation (a conflict).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pool, PoolClient } from 'pg';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createMetrics } from '../../src/metrics';
import { Health } from '../../src/health';
import { RetryBudget } from '../../src/retry-budget';
import { BatchRunner } from '../../src/pipeline/batch-runner';
import { PartitionOffsets } from '../../src/pipeline/partition-offsets';
import { DeadLetterSender } from '../../src/pipeline/dead-letter';
import { WriteLock } from '../../src/pipeline/write-lock';
import type { Batch, PipelineRole, RoleSettings } from '../../src/pipeline/role';
import type { ProducerClient } from '../../src/kafka/producer';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;

test.before(async () => {
  db = await createTestDatabase('write_lock');
  pool = createPool({ url: db.url, max: 6 }, createLogger({ level: 'silent' }));
  await migrate(pool);
  await pool.query('CREATE TABLE versions (account text NOT NULL, version int NOT NULL, PRIMARY KEY (account, version))');
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const latest = async (account: string) => (await pool.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM versions WHERE account = $1', [account])).rows[0].v;

type Decided = { account: string; version: number };

/** Appends the next version of `account`; its preparation takes `thinkMs` after reading Postgres. */
class VersionRole implements PipelineRole<never, Batch, Decided> {
  readonly settings: RoleSettings;
  readonly workers = { utilization: () => 0, queueSize: () => 0, close: async () => undefined };
  carefulPrepares = 0;
  committedCount = 0;
  constructor(name: string, private readonly account: string, private readonly thinkMs: number, readonly writeLock?: WriteLock) {
    this.settings = { name, noun: 'row', topic: `t.${name}`, group: `g.${name}`, dlqTopic: `t.${name}.dlq`, batchTimeMs: 10, batchSize: 1, maxInFlight: 1, maxRedos: 3 };
  }
  itemsOf(): never[] { return []; }
  batchOf(): Batch { throw new Error('not consumed'); }
  halves(): [Batch, Batch] { throw new Error('no poison here'); }
  first(): never { throw new Error('no poison here'); }
  canary(): Batch { throw new Error('no poison here'); }
  async prepare(_b: Batch, _seq: number, how: { careful: boolean }): Promise<Decided> {
    if (how.careful) this.carefulPrepares++;
    const version = (await latest(this.account)) + 1;
    await sleep(this.thinkMs);
    return { account: this.account, version };
  }
  workerSeconds(): number { return 0; }
  deadLetters(): [] { return []; }
  async write(client: PoolClient, p: Decided): Promise<'written'> {
    await client.query('INSERT INTO versions (account, version) VALUES ($1, $2)', [p.account, p.version]);
    return 'written';
  }
  committed(): void { this.committedCount++; }
  abandon(): void { /* nothing cached */ }
}

function runnerFor(role: VersionRole, health?: Health): BatchRunner<never, Batch, Decided, never> {
  const log = createLogger({ level: 'silent' });
  const metrics = createMetrics();
  const budget = new RetryBudget(role.settings.name, { health: health ?? new Health(metrics), metrics, log }, 1000, 300);
  // no dead letters in this test: the sender's producer is never reached
  const letters = new DeadLetterSender(null as unknown as ProducerClient, role.settings.dlqTopic, role.settings.topic, () => undefined);
  return new BatchRunner(role, { pool, log, metrics }, budget, new PartitionOffsets(role.settings.group, role.settings.topic, 'earliest'), letters, () => undefined, () => undefined);
}

/**
 * The slow role commits one batch decided on a stale version (so it is redone carefully) while the fast
 * role commits a batch every few milliseconds to the same account, for `busyMs`.
 */
async function race(account: string, lock: WriteLock | undefined, busyMs: number) {
  const slow = new VersionRole(`slow_${account}`, account, 120, lock);
  const fast = new VersionRole(`fast_${account}`, account, 0, lock);
  const fastRunner = runnerFor(fast);
  let stop = false;
  const busy = (async () => {
    for (let seq = 1; !stop; seq++) {
      await fastRunner.run({ count: 1, next: new Map([[0, seq]]) }, seq, await fast.prepare({ count: 1, next: new Map() }, seq, { careful: false }));
      await sleep(5);
    }
  })();
  while ((await latest(account)) < 1) await sleep(5); // the fast writer has committed: the stale batch conflicts
  const stale: Decided = { account, version: 1 }; // decided before the fast role's rows: a conflict
  const t0 = Date.now();
  const stopAt = setTimeout(() => { stop = true; }, busyMs);
  const result = await runnerFor(slow).run({ count: 1, next: new Map([[0, 1]]) }, 1, stale);
  const slowMs = Date.now() - t0;
  await busy;
  clearTimeout(stopAt);
  return { result, slowMs, slowCareful: slow.carefulPrepares, fastCommitted: fast.committedCount, versions: await latest(account) };
}

test('sharing the write lock, a careful redo commits at its first try while the other writer keeps committing', async () => {
  const r = await race('locked', new WriteLock(), 1500);
  assert.is(r.result, 'committed');
  assert.is(r.slowCareful, 1, 'one careful preparation: nothing overtook it');
  assert.ok(r.fastCommitted > 20, `the other writer went on: ${r.fastCommitted} commits`);
  assert.is(r.versions, r.fastCommitted + 1, 'every commit one version, none lost');
});

test('without it, the same redo is overtaken again and again (what the lock is for)', async () => {
  // the busy writer stops after 1.5 s; only then can the slow one commit
  const r = await race('unlocked', undefined, 1500);
  console.log(`without the lock: ${r.slowCareful} careful preparations, committed after ${r.slowMs} ms; the other writer committed ${r.fastCommitted} times`);
  assert.is(r.result, 'committed');
  assert.ok(r.slowCareful >= 2, `redone carefully ${r.slowCareful} times`);
  assert.is(r.versions, r.fastCommitted + 1);
});

test('exclusive requests are first come, first served, and a release is idempotent', async () => {
  const lock = new WriteLock();
  const order: number[] = [];
  const first = await lock.acquire();
  const waiters = [1, 2, 3].map((i) => lock.acquire().then((release) => { order.push(i); return release; }));
  await sleep(10);
  assert.is(lock.queued, 3);
  assert.equal(order, [], 'nobody gets it while it is held');
  first();
  first(); // a second release does not let two in
  const second = await waiters[0];
  await sleep(10);
  assert.equal(order, [1]);
  second();
  (await waiters[1])();
  (await waiters[2])();
  assert.equal(order, [1, 2, 3]);
  assert.is(lock.queued, 0);
});

test('a commit waiting for the lock past the bound makes its role not ready, and says why', async () => {
  const lock = new WriteLock();
  const health = new Health();
  const role = new VersionRole('waiter', 'waiting', 0, lock);
  const holder = await lock.acquire('exclusive'); // the other pipeline's careful redo, blocked in Postgres
  const run = runnerFor(role, health).run({ count: 1, next: new Map([[0, 1]]) }, 1, { account: 'waiting', version: 1 });
  await sleep(100);
  assert.ok((await health.check()).ready, 'a short wait is not a problem');
  await sleep(400);
  const waiting = await health.check();
  assert.not.ok(waiting.ready);
  assert.match(JSON.stringify(waiting.checks['waiter-pipeline']), /waiting \d+ s for the write lock \(shared\)/);
  holder();
  assert.is(await run, 'clean');
  assert.ok((await health.check()).ready, 'ready again once it got the lock');
});

test('shared holders run side by side; an exclusive request waits for them, and holds up later shared ones', async () => {
  const lock = new WriteLock();
  const a = await lock.acquire('shared');
  const b = await lock.acquire('shared'); // granted at once: commits of both pipelines run side by side
  let exclusiveAt = 0, laterSharedAt = 0;
  const x = lock.acquire('exclusive').then((release) => { exclusiveAt = Date.now(); return release; });
  const later = lock.acquire('shared').then((release) => { laterSharedAt = Date.now(); return release; });
  await sleep(20);
  assert.equal([exclusiveAt, laterSharedAt, lock.queued], [0, 0, 2], 'the careful redo waits for the commits in flight; a new commit waits behind it');
  a();
  await sleep(10);
  assert.is(exclusiveAt, 0, 'one shared holder left');
  b();
  const releaseX = await x;
  await sleep(10);
  assert.is(laterSharedAt, 0, 'not while the exclusive holder holds it');
  releaseX();
  (await later)();
  assert.ok(laterSharedAt >= exclusiveAt);
  assert.is(lock.queued, 0);
});

test.run();
