/**
 * Account state for deciding: an in-process LRU, then Redis (shared by
 * instances, so a partition's new owner starts warm), then Postgres (the
 * authority). A state from a cache can be stale; a stale version hits the
 * events primary key at commit, and the batch is retried from Postgres. A
 * cached state Postgres never held (newer, or another ledger's) is caught by
 * the commit's check (checkCommit) and dropped from both caches.
 */
import type { Pool, PoolClient } from 'pg';
import type { AccountState } from '../../domain/types';
import { loadLatestStates } from '../../db/sql/load-latest-states';
import type { RedisClient } from '../../redis';
import { forgetCachedStates, readCachedStates, redisIsReady, writeCachedStates } from '../../redis';
import type { Logger } from '../../logger';
import type { Metrics } from '../../metrics';

/**
 * Committed account states, most recently used last, at most `maxSize`. A state never replaces a
 * newer one: two pipelines' commits may be reported out of their commit order, and versions only grow.
 */
export class StateCache {
  private readonly lru = new Map<string, AccountState>();

  constructor(private readonly maxSize: number, private readonly metrics?: Metrics) {}

  get(id: string): AccountState | undefined {
    return this.lru.get(id);
  }

  remember(id: string, s: AccountState): void {
    const held = this.lru.get(id);
    this.lru.delete(id);
    this.lru.set(id, held !== undefined && held.version > s.version ? held : s);
    if (this.lru.size > this.maxSize) {
      this.lru.delete(this.lru.keys().next().value as string);
      this.metrics?.stateEvictions.inc();
    }
    this.metrics?.stateCached.set(this.lru.size);
  }

  forget(ids: Iterable<string>): void {
    for (const id of ids) this.lru.delete(id);
    this.metrics?.stateCached.set(this.lru.size);
  }
}

export interface LoadedStates {
  states: Map<string, AccountState>;
  /** the accounts whose state came from Redis */
  fromRedis: ReadonlySet<string>;
}

export class AccountStates {
  private readonly pending = new Map<string, { seq: number; state: AccountState }>();

  /** `lru`: the process's (DaemonContext.accountStates), or one of its own */
  constructor(private readonly lru: StateCache, private readonly log: Logger, private readonly redis?: RedisClient, private readonly ttlMs = 3_600_000, private readonly metrics?: Metrics) {}

  /**
   * States of `ids` that exist (absent = account does not exist) as batch `seq` must see them, and
   * which of them came from Redis. `careful` skips the caches: it reads Postgres, with the
   * transfers in flight counted (loadLatestStates's `counted`). The in-process
   * states are this process's commits and Postgres reads, so older than Postgres at worst (the
   * events key catches that) while Postgres is not restored under a running process (restart it
   * after a restore); one from Redis may be a state Postgres never held, and the commit checks
   * it (checkCommit).
   */
  async load(db: Pool | PoolClient, ids: string[], seq: number, careful = false): Promise<LoadedStates> {
    const out = new Map<string, AccountState>();
    const fromRedis = new Set<string>();
    let missing: string[] = [];
    if (careful) missing = ids;
    else {
      for (const id of ids) {
        const p = this.pending.get(id);
        const s = p && p.seq < seq ? p.state : this.lru.get(id);
        if (s) out.set(id, s);
        else missing.push(id);
      }
      this.metrics?.stateLookups.inc({ answered: 'memory' }, out.size);
    }
    if (missing.length && !careful && redisIsReady(this.redis)) {
      try {
        const cached = await readCachedStates(this.redis!, missing);
        const still: string[] = [];
        cached.forEach((v, i) => {
          if (v) {
            out.set(missing[i], v);
            fromRedis.add(missing[i]);
          } else still.push(missing[i]);
        });
        this.metrics?.stateLookups.inc({ answered: 'redis' }, missing.length - still.length);
        missing = still;
      } catch (e) {
        this.log.debug({ err: e }, 'redis state read failed; reading Postgres');
      }
    }
    if (missing.length) {
      this.metrics?.stateLookups.inc({ answered: 'postgres' }, missing.length); // a new account is looked up there too
      const loaded = await loadLatestStates(db, missing, careful);
      for (const [id, s] of loaded) {
        out.set(id, s);
        this.lru.remember(id, s);
      }
    }
    return { states: out, fromRedis };
  }

  /** Batch `seq` was decided into these states; batches after it see them until it commits or fails. */
  prepared(seq: number, states: readonly AccountState[]): void {
    for (const state of states) this.pending.set(state.accountId, { seq, state });
  }

  /** Batch `seq` committed: its states become the cached truth (write-through to Redis, best effort). */
  committed(seq: number, states: readonly AccountState[]): void {
    for (const s of states) {
      this.lru.remember(s.accountId, s);
      if (this.pending.get(s.accountId)?.seq === seq) this.pending.delete(s.accountId);
    }
    if (states.length && redisIsReady(this.redis)) {
      writeCachedStates(this.redis!, states, this.ttlMs).catch((e: unknown) => this.log.debug({ err: e }, 'redis state write failed'));
    }
  }

  /** Batch `seq` did not commit as decided: drop what it and every later batch were decided on. */
  abandon(seq: number): void {
    for (const [id, p] of this.pending) if (p.seq >= seq) this.pending.delete(id);
  }

  forget(ids: Iterable<string>): void {
    this.lru.forget(ids);
  }

  /** States of these accounts turned out not to be Postgres's: the next batch reads them there (Redis best effort). */
  distrust(ids: readonly string[]): void {
    this.lru.forget(ids);
    if (ids.length && redisIsReady(this.redis)) {
      forgetCachedStates(this.redis!, ids).catch((e: unknown) => this.log.debug({ err: e }, 'redis state delete failed'));
    }
  }
}
