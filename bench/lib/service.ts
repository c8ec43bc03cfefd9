/** Starts a service under test (banking-es, the baseline, the echo) as a child process and waits until it owns its partitions. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { distDir } from '../../src/paths';

export interface Service { name: string; child: ChildProcess; pid: number; stop(): Promise<number | string> }

export async function startService(name: string, args: string[], env: Record<string, string>, logFile: string, readyText = 'partitions assigned', timeoutMs = 60000): Promise<Service> {
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const out = fs.openSync(logFile, 'w');
  // BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles every service under test (NODE_OPTIONS refuses --cpu-prof)
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const deadline = Date.now() + timeoutMs;
  while (!fs.readFileSync(logFile, 'utf8').includes(readyText)) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}; see ${logFile}`);
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`${name} not ready within ${timeoutMs} ms; see ${logFile}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name, child, pid: child.pid!,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const t = setTimeout(() => child.kill('SIGKILL'), 20000);
      child.once('exit', (code, sig) => { clearTimeout(t); resolve(code ?? sig ?? -1); });
      child.kill('SIGTERM');
    }),
  };
}

export const cli = () => path.join(distDir(), 'src', 'cli.js');
export const benchEntry = (file: string) => path.join(distDir(), 'bench', file);
