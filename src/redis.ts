/**
 * Optional Redis (docs/architecture.md §6), and every command banking-es
 * sends it: this is the one module that talks to Redis. Correctness never
 * depends on it: every caller treats a Redis failure as "no information" and
 * falls back to Postgres. The client never queues commands while
 * disconnected (that would grow memory without bound) and reconnects
 * forever in the background. Keys hold validated UUIDs only.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import type { AccountState } from './domain/types';
import { fractionDigits } from './domain/currency';
import type { Logger } from './logger';
import type { Metrics } from './metrics';
import { redactUrl } from './logger';

export type RedisClient = Redis;

export function createRedis(url: string, log: Logger, metrics: Metrics): Redis {
  const client = new Redis(url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  });
  let up = false;
  let reported = false; // say it once even when Redis was never up, then only on transitions
  metrics.redisUp.set(0);
  client.on('ready', () => {
    if (!up) log.info({ redis: redactUrl(url) }, 'redis available');
    up = true;
    metrics.redisUp.set(1);
  });
  client.on('error', (err) => {
    if (up || !reported) log.warn({ err }, 'redis unavailable: continuing without it (dedup falls back to Postgres)');
    reported = true;
    up = false;
    metrics.redisUp.set(0);
  });
  client.on('end', () => {
    up = false;
    metrics.redisUp.set(0);
  });
  return client;
}

export function redisIsReady(client: Redis | undefined): boolean {
  return client !== undefined && client.status === 'ready';
}

/** One round trip (the readiness probe's optional Redis check). */
export async function pingRedis(client: Redis): Promise<void> {
  await client.ping();
}

/** Resolves once the client is ready, or after `ms` (a one-shot command then runs without Redis). */
export async function waitRedisReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); redis.off('ready', done); resolve(); }
    redis.once('ready', done);
  });
}

/**
 * Marks each (account, command) pair as seen in the instances' shared window
 * (SET NX with a time to live) and returns the indexes of the pairs some
 * instance had seen already. The ids are validated UUIDs. Rejects when Redis
 * fails; callers treat that as "no information".
 */
export async function claimCommands(client: Redis, accounts: readonly string[], commands: readonly string[], windowMs: number): Promise<number[]> {
  const p = client.pipeline();
  for (let i = 0; i < commands.length; i++) p.set(`bes:cmd:${accounts[i]}:${commands[i]}`, '1', 'PX', windowMs, 'NX');
  const res = await p.exec();
  const seen: number[] = [];
  (res ?? []).forEach(([err, v], i) => { if (!err && v === null) seen.push(i); });
  return seen;
}

const stateKey = (accountId: string) => `bes:acct:${accountId}`;

/**
 * Cached account states, by position in `ids` (null when not cached, or when
 * the value is not a state of that account that banking-es could have
 * written: Postgres is read instead). Rejects when Redis fails.
 */
export async function readCachedStates(client: Redis, ids: readonly string[]): Promise<Array<AccountState | null>> {
  const vals = await client.mget(ids.map(stateKey));
  return vals.map((v, i) => (v ? cachedState(v, ids[i]) : null));
}

/**
 * A cached value as a state of `id`, only with the fields a decision reads
 * and each of its type; anything else is null. A value is never trusted for
 * its shape: Redis may be shared, or written by something else.
 */
export function cachedState(value: string, id: string): AccountState | null {
  let v: Partial<Record<keyof AccountState, unknown>>;
  try {
    v = JSON.parse(value) as typeof v;
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || v.accountId !== id) return null;
  const { version, balance, currency, status, ownerName } = v;
  if (!Number.isSafeInteger(version) || (version as number) < 1 || !Number.isSafeInteger(balance) || (balance as number) < 0) return null;
  if (typeof currency !== 'string' || fractionDigits(currency) === undefined || (status !== 'open' && status !== 'closed')) return null;
  if (status === 'closed' && balance !== 0) return null; // an account is closed only at zero
  return { accountId: id, version: version as number, balance: balance as number, currency, status, ownerName: typeof ownerName === 'string' ? ownerName : '' };
}

/** Writes account states through to the shared cache, each for `ttlMs`. Rejects when Redis fails. */
export async function writeCachedStates(client: Redis, states: readonly AccountState[], ttlMs: number): Promise<void> {
  const p = client.pipeline();
  for (const s of states) p.set(stateKey(s.accountId), JSON.stringify(s), 'PX', ttlMs);
  await p.exec();
}

/** Drops cached account states (they are read from Postgres next). Rejects when Redis fails. */
export async function forgetCachedStates(client: Redis, ids: readonly string[]): Promise<void> {
  await client.del(...ids.map(stateKey));
}

/*
 * A lock for singleton jobs (the projection rebuild): `SET key token NX PX ttl`
 * with a random token, kept alive by a compare-and-expire while the job
 * runs, released by a Lua compare-and-delete, so a holder never deletes a
 * lock that expired and was taken by someone else.
 */
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

export interface RedisLock {
  readonly key: string;
  readonly token: string;
  /** False once a refresh found the key gone or owned by another token. */
  held(): boolean;
  /** Stops refreshing and deletes the key if it is still ours; true when it was. */
  release(): Promise<boolean>;
}

/** The lock, or null when another holder has it. Redis errors propagate to the caller. */
export async function acquireRedisLock(redis: Redis, key: string, ttlMs: number, onLost?: () => void): Promise<RedisLock | null> {
  const token = randomUUID();
  const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
  if (ok !== 'OK') return null;
  let held = true;
  const timer = setInterval(() => {
    redis.eval(EXTEND, 1, key, token, String(ttlMs)).then((r) => {
      if (Number(r) !== 1 && held) { held = false; onLost?.(); }
    }).catch(() => undefined); // Redis down: the Postgres lock still guards the job
  }, Math.max(100, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    key,
    token,
    held: () => held,
    async release() {
      clearInterval(timer);
      const r = await redis.eval(RELEASE, 1, key, token);
      const was = held && Number(r) === 1;
      held = false;
      return was;
    },
  };
}

/** Who holds the lock now (its token), for a clear error message. */
export async function redisLockHolder(redis: Redis, key: string): Promise<{ token: string | null; ttlMs: number }> {
  const [token, ttl] = await Promise.all([redis.get(key), redis.pttl(key)]);
  return { token, ttlMs: ttl };
}
