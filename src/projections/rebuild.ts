/**
 * Rebuilds both read models from the event store (`banking-es rebuild-projections`), or only the
 * rows of some accounts (`--account`, `--since`): the same pages, the same checkpoint, over those
 * accounts' events.
 *
 * Streaming: events are read in pages by (account_id, version) keyset
 * pagination on the events primary key, never all at once, and each page is
 * folded and encoded by the same pure function the projection pipeline's
 * workers run (projectShard), then written in ONE transaction together with
 * the checkpoint (the last key of the page).
 *
 * States of the checkpoint row (projection_rebuilds): none/done → running
 * (both read models truncated, in the same transaction) → done. A run that
 * stops half-way (crash, SIGINT, an aborted signal) leaves 'running'; the
 * next run resumes after the checkpoint. A run that finds no 'running' row
 * starts over.
 *
 * Locks:
 * - one rebuild at a time: a Postgres session advisory lock taken with
 *   pg_try_advisory_lock (the authority; a second rebuild fails at once with
 *   RebuildLockedError), and first, when Redis is configured and up, a Redis
 *   `SET NX PX` lock with a random token, released by a Lua
 *   compare-and-delete (docs/architecture.md §6) — so instances that share a Redis see the
 *   holder's token in the error.
 * - coexisting with running projectors: the rebuild holds the projection
 *   write lock exclusively for its whole run (it waits for in-flight flushes
 *   to commit first). A projector flush takes that lock shared and, while the
 *   rebuild holds it or while a 'running' row is left by an interrupted
 *   rebuild, rolls back and retries with backoff, so it pauses (backpressure
 *   pauses its consumer) and continues once the rebuild is done, with versions
 *   read fresh: events the rebuild already projected are then dropped as
 *   stale, newer ones applied. Nothing is lost: the projector's offsets never
 *   move while it waits.
 */
import type { Pool, PoolClient } from 'pg';
import type { Logger } from '../logger';
import type { RedisClient } from '../redis';
import { redisIsReady } from '../redis';
import { copyIn } from '../db/sql/copy-in';
import { upsertAccountProjections } from '../db/sql/upsert-account-projections';
import {
  accountsWithEventsSince, advanceRebuild, beginRebuild, findRunningRebuild, finishRebuild, resumeRebuild,
  LOCK_PROJECTION_REBUILD, type RebuildCheckpoint,
  tryRebuildLock, holdProjectionWrites, releaseSessionLocks,
} from '../db/sql/projection-rebuilds';
import { countEvents, readEventsInOrder } from '../db/sql/events-in-order';
import { inTransaction } from '../db/sql/transaction';
import { coerceError } from '../errors';
import { Packer } from '../pipeline/pack';
import { TRANSACTION_COLUMNS } from '../codec/rows';
import { projectShard } from '../pipeline/projections/project-shard';
import { acquireRedisLock, redisLockHolder, type RedisLock } from '../redis';

export const REBUILD_REDIS_KEY = 'bes:lock:projection-rebuild';

export interface RebuildProgress {
  /** Events projected so far, this rebuild (all its runs). */
  done: number;
  total: number;
  /** From this run's rate; null before the first page. */
  etaSeconds: number | null;
}

export interface RebuildOptions {
  pool: Pool;
  log: Logger;
  redis?: RedisClient;
  batchSize: number;
  onProgress(p: RebuildProgress): void;
  /** Stops after the page in progress; the checkpoint stays, so the next run resumes. */
  signal?: AbortSignal;
  /** TTL of the Redis lock (refreshed every third of it while running). */
  lockTtlMs?: number;
  /**
   * Only these accounts' read-model rows (`--account`), or those of every account with an event
   * recorded since a time (`--since`, resolved when the rebuild begins); absent: everything.
   */
  scope?: { accounts?: string[]; since?: Date };
}

export interface RebuildResult {
  /** Events projected by this run. */
  events: number;
  /** True when this run finished the rebuild (false: stopped by the signal). */
  completed: boolean;
  resumed: boolean;
  /** Stored events that could not be read as envelopes; logged and left out. */
  unreadable: number;
}

export class RebuildLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RebuildLockedError';
  }
}

export async function rebuildProjections(opts: RebuildOptions): Promise<RebuildResult> {
  const { pool, log } = opts;
  if (!Number.isSafeInteger(opts.batchSize) || opts.batchSize < 1) throw new RangeError(`batchSize must be an integer >= 1, got ${opts.batchSize}`);
  let redisLock: RedisLock | null = null;
  if (opts.redis && redisIsReady(opts.redis)) {
    const ttl = opts.lockTtlMs ?? 30_000;
    redisLock = await acquireRedisLock(opts.redis, REBUILD_REDIS_KEY, ttl, () => log.warn('the Redis rebuild lock expired or was taken over; the Postgres lock still guards this rebuild'));
    if (!redisLock) {
      const h = await redisLockHolder(opts.redis, REBUILD_REDIS_KEY).catch(() => ({ token: null, ttlMs: -1 }));
      throw new RebuildLockedError(`another projection rebuild is running (Redis lock ${REBUILD_REDIS_KEY} held by token ${h.token ?? '?'}, expires in ${h.ttlMs} ms unless renewed)`);
    }
  } else if (opts.redis) {
    log.warn('redis is configured but unavailable: the rebuild is locked by Postgres only');
  }

  let client: PoolClient | undefined;
  let broken: Error | undefined;
  try {
    client = await pool.connect();
    if (!(await tryRebuildLock(client))) throw new RebuildLockedError(`another projection rebuild is running (Postgres advisory lock ${LOCK_PROJECTION_REBUILD} is held)`);
    try {
      log.info('waiting for in-flight projection flushes, then holding projectors until the rebuild is done');
      await holdProjectionWrites(client);
      return await run(client, opts);
    } catch (e) {
      if (!(e instanceof RebuildLockedError)) broken = coerceError(e);
      throw e;
    } finally {
      // session locks outlive a pooled client's checkout: give them back explicitly (or drop the connection)
      await releaseSessionLocks(client).catch((e: unknown) => { broken = coerceError(e); });
    }
  } finally {
    client?.release(broken);
    if (redisLock) await redisLock.release().catch((e: unknown) => log.warn({ err: coerceError(e) }, 'could not release the Redis rebuild lock; it expires by itself'));
  }
}

async function run(client: PoolClient, opts: RebuildOptions): Promise<RebuildResult> {
  const { log } = opts;
  const selective = opts.scope !== undefined && (opts.scope.accounts !== undefined || opts.scope.since !== undefined);
  const running = await findRunningRebuild(client);
  if (running && (running.scope !== null) !== selective) {
    throw new RebuildLockedError(`an interrupted rebuild of ${running.scope === null ? 'every account' : `${running.scope.length} accounts`} must finish first: `
      + `run rebuild-projections ${running.scope === null ? 'without --account or --since' : 'with --account or --since'} to resume it`);
  }
  let scope: string[] | null = running ? running.scope : null;
  if (!running && selective) {
    const wanted = new Set((opts.scope!.accounts ?? []).map((a) => a.toLowerCase()));
    if (opts.scope!.since) for (const a of await accountsWithEventsSince(client, opts.scope!.since)) wanted.add(a);
    scope = [...wanted].sort();
  }
  const total = await countEvents(client, scope);
  const cp: RebuildCheckpoint = running
    ? await resumeRebuild(client, running.id, total)
    : await inTransaction(client, () => beginRebuild(client, total, scope));
  const what = scope === null ? 'read models emptied' : `the read-model rows of ${scope.length} accounts emptied`;
  if (running) log.info({ rebuild: cp.id, accounts: scope?.length ?? 'all', after: { accountId: cp.lastAccountId, version: cp.lastVersion }, done: cp.eventsDone, run: cp.runs }, 'resuming an interrupted projection rebuild');
  else log.info({ rebuild: cp.id, events: total, accounts: scope?.length ?? 'all' }, `projection rebuild started: ${what}`);

  let lastAccount = cp.lastAccountId;
  let lastVersion = cp.lastVersion ?? 0;
  let done = cp.eventsDone;
  let events = 0;
  let unreadable = 0;
  const started = Date.now();
  opts.onProgress({ done, total, etaSeconds: null });

  while (!opts.signal?.aborted) {
    const rows = await readEventsInOrder(client, lastAccount === null ? null : { accountId: lastAccount, version: lastVersion }, opts.batchSize, scope);
    if (rows.length === 0) break;

    const packer = new Packer(rows.length * 400 + 1024);
    rows.forEach((r, i) => packer.message(0, i, r.account_id, Buffer.from(r.payload)));
    // only the account the previous page stopped inside has rows already; every later one starts empty
    const resumed = lastAccount !== null && rows[0].account_id === lastAccount;
    const r = projectShard({ msgs: packer.finish(), projectedIds: resumed ? [lastAccount!] : [], projectedVersions: resumed ? [lastVersion] : [] });
    for (const d of r.dlq) log.warn({ accountId: rows[d.index].account_id, version: Number(rows[d.index].version), code: d.code, error: d.message }, 'stored event is unreadable; left out of the projections');
    if (r.gapCount) log.warn({ gaps: r.gaps, count: r.gapCount }, 'the event store has version gaps');
    unreadable += r.dlq.length;

    const last = rows[rows.length - 1];
    await inTransaction(client, async () => {
      if (r.transactionCount) await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, [r.transactions]);
      if (r.accountCount) await upsertAccountProjections(client, [r.accounts]);
      await advanceRebuild(client, cp.id, last.account_id, Number(last.version), rows.length);
    });
    lastAccount = last.account_id;
    lastVersion = Number(last.version);
    done += rows.length;
    events += rows.length;
    const rate = events / Math.max(0.001, (Date.now() - started) / 1000);
    opts.onProgress({ done, total: Math.max(total, done), etaSeconds: Math.max(0, (total - done) / rate) });
    if (rows.length < opts.batchSize) break;
  }

  if (opts.signal?.aborted) {
    log.info({ rebuild: cp.id, done, total }, 'projection rebuild stopped; run it again to resume from the checkpoint');
    return { events, completed: false, resumed: running !== null, unreadable };
  }
  await inTransaction(client, () => finishRebuild(client, cp.id));
  log.info({ rebuild: cp.id, events: done, seconds: (Date.now() - started) / 1000 }, 'projection rebuild done');
  return { events, completed: true, resumed: running !== null, unreadable };
}
