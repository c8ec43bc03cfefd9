/** The projection pipeline's worker pool: projectShard on piscina threads, or inline with size 0. */
import { createWorkerPool, type WorkerPool } from '../pipeline/shard-pool';
import { projectShard, type ProjectResult, type ProjectTask } from './project-shard';

export type ProjectionPool = WorkerPool<ProjectTask, ProjectResult>;

export function createProjectionPool(threads: number): ProjectionPool {
  return createWorkerPool(threads, 'projection-worker.js', projectShard);
}
