/**
 * Runs a role's shard tasks on piscina worker threads, or inline when the
 * pool size is 0 (the same pure function, for comparison). The packed input
 * buffer is transferred, not copied.
 */
import * as path from 'node:path';
import Piscina from 'piscina';
import { distDir } from '../paths';

export interface WorkerPool<T, R> {
  run(task: T): Promise<R>;
  utilization(): number;
  queueSize(): number;
  close(): Promise<void>;
}

/** `workerFile` is relative to dist/workers/ and must run `inline` on its task. */
export function createWorkerPool<T extends { msgs: Uint8Array }, R>(threads: number, workerFile: string, inline: (task: T) => R): WorkerPool<T, R> {
  if (threads === 0) {
    return { run: async (t) => inline(t), utilization: () => 0, queueSize: () => 0, close: async () => undefined };
  }
  const pool = new Piscina({
    filename: path.join(distDir(), 'workers', workerFile),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    concurrentTasksPerWorker: 1,
  });
  return {
    run: (t) => pool.run(t, { transferList: [t.msgs.buffer as ArrayBuffer] }) as Promise<R>,
    utilization: () => pool.utilization,
    queueSize: () => pool.queueSize,
    close: () => pool.close(),
  };
}
