import { Pool, type PoolConfig } from 'pg';
import type { Logger } from '../logger';

export interface PoolOptions {
  url: string;
  max: number;
  statementTimeoutMs?: number;
  applicationName?: string;
}

/** A pg.Pool that never crashes the process on an idle client's error (the pool drops that client). */
export function createPool(opts: PoolOptions, log: Logger): Pool {
  const cfg: PoolConfig = {
    connectionString: opts.url,
    max: opts.max,
    application_name: opts.applicationName ?? 'banking-es',
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
  };
  if (opts.statementTimeoutMs) cfg.statement_timeout = opts.statementTimeoutMs;
  const pool = new Pool(cfg);
  pool.on('error', (err) => log.warn({ err }, 'idle postgres client failed; the pool drops it'));
  // pg-pool removes its own listener while a client is checked out: a connection killed then
  // (pg_terminate_backend, failover) would emit an unhandled 'error' and crash the process. The
  // query in flight still fails with a retryable error, and its caller retries the whole batch.
  pool.on('connect', (client) => client.on('error', (err) => log.warn({ err }, 'postgres connection lost; the work using it is retried')));
  return pool;
}
