import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnDetached } from './process';
import { waitForPort } from './ports';

export interface RedisState { pid: number; port: number; url: string }

export const REDIS_INSTALL_HINT = 'redis-server is not on PATH; install it (Debian/Ubuntu: apt-get install -y redis-server) to run the stack with Redis. The stack runs without it, and so does the daemon.';

export function findOnPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* keep looking */ }
  }
  return undefined;
}

export async function startRedis(opts: { port: number; logFile: string }): Promise<RedisState | undefined> {
  const bin = findOnPath('redis-server');
  if (!bin) return undefined;
  const pid = spawnDetached(bin, ['--port', String(opts.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes'], opts.logFile);
  await waitForPort(opts.port, 10000);
  return { pid, port: opts.port, url: `redis://127.0.0.1:${opts.port}` };
}
