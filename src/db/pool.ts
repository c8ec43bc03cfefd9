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
  return pool;
}
