/**
 * Runs shard tasks on piscina worker threads, or inline when the pool size
 * is 0 (same function, for comparison). Input buffers are transferred.
 */
import * as path from 'node:path';
import Piscina from 'piscina';
import { distDir } from '../paths';
import { decideShard, type ShardResult, type ShardTask } from './decide-shard';

export interface ShardPool {
  run(task: ShardTask): Promise<ShardResult>;
  utilization(): number;
  queueSize(): number;
  close(): Promise<void>;
}

export function createShardPool(threads: number): ShardPool {
  if (threads === 0) {
    return { run: async (t) => decideShard(t), utilization: () => 0, queueSize: () => 0, close: async () => undefined };
  }
  const pool = new Piscina({
    filename: path.join(distDir(), 'workers', 'command-worker.js'),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    concurrentTasksPerWorker: 1,
  });
  return {
    run: (t) => pool.run(t, { transferList: [t.msgs.buffer as ArrayBuffer] }) as Promise<ShardResult>,
    utilization: () => pool.utilization,
    queueSize: () => pool.queueSize,
    close: () => pool.close(),
  };
}
