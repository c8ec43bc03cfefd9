/**
 * Runs projection shard tasks on piscina worker threads, or inline when the
 * pool size is 0 (same function, for comparison). The packed input buffer is
 * transferred, not copied. Same shape as the command pipeline's shard pool.
 */
import * as path from 'node:path';
import Piscina from 'piscina';
import { distDir } from '../paths';
import { projectShard, type ProjectResult, type ProjectTask } from './project-shard';

export interface ProjectionPool {
  run(task: ProjectTask): Promise<ProjectResult>;
  utilization(): number;
  queueSize(): number;
  close(): Promise<void>;
}

export function createProjectionPool(threads: number): ProjectionPool {
  if (threads === 0) {
    return { run: async (t) => projectShard(t), utilization: () => 0, queueSize: () => 0, close: async () => undefined };
  }
  const pool = new Piscina({
    filename: path.join(distDir(), 'workers', 'projection-worker.js'),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    concurrentTasksPerWorker: 1,
  });
  return {
    run: (t) => pool.run(t, { transferList: [t.msgs.buffer as ArrayBuffer] }) as Promise<ProjectResult>,
    utilization: () => pool.utilization,
    queueSize: () => pool.queueSize,
    close: () => pool.close(),
  };
}
