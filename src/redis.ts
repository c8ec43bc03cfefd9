/**
 * Optional Redis (docs/architecture.md §6). Correctness never depends on it: every caller
 * treats a Redis failure as "no information" and falls back to Postgres. The
 * client never queues commands while disconnected (that would grow memory
 * without bound) and reconnects forever in the background.
 */
import Redis from 'ioredis';
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
