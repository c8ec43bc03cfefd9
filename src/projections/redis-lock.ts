/**
 * A Redis lock for singleton jobs (docs/architecture.md §6): `SET key token NX PX ttl`
 * with a random token, kept alive by a compare-and-expire while the job
 * runs, released by a Lua compare-and-delete, so a holder never deletes a
 * lock that expired and was taken by someone else.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../redis';

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
export async function acquireRedisLock(redis: RedisClient, key: string, ttlMs: number, onLost?: () => void): Promise<RedisLock | null> {
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
export async function redisLockHolder(redis: RedisClient, key: string): Promise<{ token: string | null; ttlMs: number }> {
  const [token, ttl] = await Promise.all([redis.get(key), redis.pttl(key)]);
  return { token, ttlMs: ttl };
}
