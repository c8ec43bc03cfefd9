/**
 * What integration tests share: the embedded stack the runner started, a
 * private database per test file, unique topic names, and child processes
 * of the CLI. Every resource created here has a release function.
 */
import { Client } from 'pg';
import { randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { readStack, type StackState } from '../../dev/stack/stack';
import { packageRoot } from '../../src/paths';

export function testStack(): StackState {
  const dir = process.env.BANKING_ES_STACK_DIR;
  const s = dir ? readStack(dir) : undefined;
  if (!s) throw new Error('no embedded test stack: run tests through `npm test` (test/run.mjs starts one)');
  return s;
}

export interface TestDb { name: string; url: string; drop(): Promise<void> }

/** A fresh, empty database on the stack's Postgres, named after the test file. */
export async function createTestDatabase(prefix: string): Promise<TestDb> {
  const s = testStack();
  const name = `t_${prefix.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomUUID().slice(0, 8)}`;
  const admin = new Client({ connectionString: s.postgres.adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  await admin.end();
  const url = s.postgres.adminUrl.replace(/\/postgres$/, `/${name}`);
  return {
    name,
    url,
    async drop() {
      const c = new Client({ connectionString: s.postgres.adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function uniqueTopic(prefix: string): string {
  return `${prefix}.${randomUUID().slice(0, 8)}`;
}

export const cliPath = () => path.join(packageRoot(), 'dist', 'src', 'cli.js');

/** Spawns the CLI with env merged over ours (NODE_ENV=test), capturing output. */
export function spawnCli(args: string[], env: Record<string, string | undefined> = {}): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [cliPath(), ...args], { env: { ...process.env, NODE_ENV: 'test', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  return Object.assign(child, { output: () => out });
}

/** Resolves when `pred(output)` holds, rejects after timeoutMs (with the output so far). */
export async function waitForOutput(child: { output: () => string }, pred: (out: string) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred(child.output())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms; output so far:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`process did not exit within ${timeoutMs} ms`)); }, timeoutMs);
    child.once('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal }); });
  });
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms); })]);
  } finally {
    if (t) clearTimeout(t);
  }
}
