import { spawn, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';

/** True when a process with this PID exists (signal 0 probes without killing). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends `signal`, waits up to timeoutMs for the PID to vanish, then SIGKILLs it. */
export async function stopPid(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<'stopped' | 'killed' | 'absent'> {
  if (!isAlive(pid)) return 'absent';
  try { process.kill(pid, signal); } catch { return 'absent'; }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return 'stopped';
    await new Promise((r) => setTimeout(r, 50));
  }
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
  return 'killed';
}

/** Starts a long-lived process detached from us, output appended to logFile. Returns its PID. */
export function spawnDetached(cmd: string, args: string[], logFile: string, opts: SpawnOptions = {}): number {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  child.unref();
  return child.pid;
}

/** Waits for a child we spawned to exit; SIGKILLs it after timeoutMs. Resolves with its exit code (or signal name). */
export function waitForExitCode(child: import('node:child_process').ChildProcess, timeoutMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode ?? -1);
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => { clearTimeout(t); resolve(code ?? signal ?? -1); });
  });
}
