/**
 * CLI glue for `banking-es rebuild-projections` and `banking-es account <id>`.
 * Each command creates its own pool (and Redis client) and releases it.
 * Exit codes: 0 done, 1 failed, 2 bad input, 3 another rebuild holds the
 * lock, 130 stopped by a signal (the checkpoint stays; rerun to resume).
 */
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createPool } from '../db/pool';
import { migrate } from '../db/migrate';
import { createMetrics } from '../metrics';
import { Registry } from 'prom-client';
import { createRedis, waitRedisReady, type RedisClient } from '../redis';
import { isUuid } from '../codec/command';
import { coerceError } from '../errors';
import { rebuildProjections, RebuildLockedError, type RebuildOptions, type RebuildProgress } from './rebuild';
import { accountReport, formatAccountReport } from './account-report';

function duration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '--:--';
  const t = Math.round(s);
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  return `${h ? `${h}:` : ''}${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}

/** One progress line, e.g. `[#######.............]  35.0%  35000/100000 events  ETA 00:12`. */
export function progressLine(p: RebuildProgress, width = 30): string {
  const ratio = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(1).padStart(5)}%  ${p.done}/${p.total} events  ETA ${duration(p.etaSeconds)}`;
}

export async function runRebuildCommand(config: Config, log: Logger, opts: { batchSize?: number; stderr?: NodeJS.WritableStream; scope?: RebuildOptions['scope'] } = {}): Promise<number> {
  const err = opts.stderr ?? process.stderr;
  const tty = (err as NodeJS.WriteStream).isTTY === true;
  const pool = createPool({ url: config.db.url, max: 2, applicationName: 'banking-es rebuild-projections' }, log);
  let redis: RedisClient | undefined;
  const abort = new AbortController();
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130);
    err.write('\nstopping after the current page (the checkpoint is kept; rerun to resume); press again to exit now\n');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let lastLine = 0;
  try {
    if (config.db.migrate) await migrate(pool);
    if (config.redis.url) {
      redis = createRedis(config.redis.url, log, createMetrics(new Registry(), { defaultMetrics: false }));
      await waitRedisReady(redis, 2000);
    }
    const r = await rebuildProjections({
      pool, log, redis, batchSize: opts.batchSize ?? Math.max(1000, config.pipeline.batchSize), signal: abort.signal, scope: opts.scope,
      onProgress: (p) => {
        const now = Date.now();
        const final = p.done >= p.total;
        if (!tty && !final && now - lastLine < 1000) return; // a log file gets a line a second
        lastLine = now;
        err.write(tty ? `\r${progressLine(p)}` : `${progressLine(p)}\n`);
      },
    });
    if (tty) err.write('\n');
    if (!r.completed) {
      err.write(`rebuild stopped after ${r.events} events this run; run banking-es rebuild-projections again to resume\n`);
      return 130;
    }
    err.write(`rebuild ${r.resumed ? 'resumed and ' : ''}completed: ${r.events} events projected this run${r.unreadable ? `, ${r.unreadable} unreadable events left out (see the log)` : ''}\n`);
    return 0;
  } catch (e) {
    if (tty) err.write('\n');
    if (e instanceof RebuildLockedError) {
      err.write(`banking-es: ${e.message}\n`);
      return 3;
    }
    err.write(`banking-es: rebuild failed: ${coerceError(e).message}\n(the checkpoint is kept; rerun to resume)\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    redis?.disconnect();
    await pool.end();
  }
}

export async function runAccountCommand(config: Config, id: string | undefined, out: NodeJS.WritableStream = process.stdout, opts: { limit?: number; log?: Logger; stderr?: NodeJS.WritableStream } = {}): Promise<number> {
  if (!id || !isUuid(id)) {
    (opts.stderr ?? process.stderr).write(`banking-es: account needs an account id (a UUID), got ${id ?? 'nothing'}\n`);
    return 2;
  }
  const silent = { warn: () => undefined } as unknown as Logger;
  const pool = createPool({ url: config.db.url, max: 1, applicationName: 'banking-es account' }, opts.log ?? silent);
  try {
    const rep = await accountReport(pool, id.toLowerCase(), opts.limit ?? 20);
    out.write(formatAccountReport(id.toLowerCase(), rep));
    return rep.account ? 0 : 1;
  } finally {
    await pool.end();
  }
}
