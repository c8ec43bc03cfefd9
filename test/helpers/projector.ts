/**
 * A projection pipeline with its own DaemonContext, built the way
 * src/daemon.ts builds one (pool + migrate, producer, Redis when the stack
 * has it, a fresh metrics registry, Health, Lifecycle), for in-process
 * integration tests and for the child entry projector-child.ts.
 * `stop()` releases everything newest-first.
 */
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { createLogger, type Logger } from '../../src/logger';
import { createMetrics, type Metrics } from '../../src/metrics';
import { Health } from '../../src/health';
import { Lifecycle } from '../../src/lifecycle';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { ProducerClient } from '../../src/kafka/producer';
import { createRedis } from '../../src/redis';
import type { DaemonContext } from '../../src/daemon';
import { PartitionedPipeline } from '../../src/pipeline/partitioned-pipeline';
import { ProjectionRole } from '../../src/pipeline/projections/projection-role';

export interface RunningProjector {
  ctx: DaemonContext;
  metrics: Metrics;
  pipeline: { stop(): Promise<void> };
  lifecycle: Lifecycle;
  stop(): Promise<number>;
}

export async function startProjector(env: NodeJS.ProcessEnv, log?: Logger): Promise<RunningProjector> {
  const { config } = loadConfig({ env: { ...env, ROLES: 'projections' } });
  const logger = log ?? createLogger({ level: config.log.level });
  const lifecycle = new Lifecycle(logger, config.shutdown.timeoutMs, () => undefined);
  try {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false });
    const health = new Health(metrics);
    const pool = createPool({ url: config.db.url, max: config.db.poolSize, statementTimeoutMs: config.db.statementTimeoutMs }, logger);
    lifecycle.defer('postgres-pool', () => pool.end());
    await migrate(pool);
    const producer = new ProducerClient(config, logger, metrics);
    lifecycle.defer('kafka-producer', () => producer.close(2000));
    await producer.connect();
    let redis: DaemonContext['redis'];
    if (config.redis.url) {
      const client = createRedis(config.redis.url, logger, metrics);
      redis = client;
      lifecycle.defer('redis', () => { client.disconnect(); });
    }
    const ctx: DaemonContext = { config, log: logger, metrics, health, pool, producer, redis, lifecycle };
    const pipeline = new PartitionedPipeline(ctx, new ProjectionRole(ctx));
    lifecycle.defer('projection-pipeline', () => pipeline.stop());
    await pipeline.start();
    return { ctx, metrics, pipeline, lifecycle, stop: () => lifecycle.shutdown() };
  } catch (e) {
    await lifecycle.shutdown();
    throw e;
  }
}
