/**
 * The one place that builds the daemon's components. Each component is
 * pushed on the lifecycle's release stack right after it is created, so
 * shutdown (or a failed start) releases exactly what exists, newest-first.
 */
import type { Pool } from 'pg';
import type { Config } from './config';
import type { Logger } from './logger';
import { createMetrics, type Metrics } from './metrics';
import { Health } from './health';
import { startHttpServer } from './http-server';
import { createPool } from './db/pool';
import { migrate } from './db/migrate';
import { Lifecycle, ShutdownRequested } from './lifecycle';
import { ProducerClient } from './kafka/producer';
import { createRedis, pingRedis, type RedisClient } from './redis';
import { backoffMs, classifyError, coerceError } from './errors';
import { ping } from './db/sql/ping';
import { redactUrl } from './logger';
import { startRoles } from './roles';
import { Topics } from './kafka/topics';
import { WriteLock } from './pipeline/write-lock';
import { StateCache } from './pipeline/commands/account-states';

export interface DaemonContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  health: Health;
  pool: Pool;
  producer: ProducerClient;
  redis?: RedisClient;
  lifecycle: Lifecycle;
  /** provisions or reports the topics each role uses (absent in tests that build a pipeline by hand) */
  topics?: Topics;
  /** held by the pipelines that append to accounts while they commit (write-lock.ts); absent: none is */
  accountWrites?: WriteLock;
  /** the committed account states the pipelines that append to accounts share (account-states.ts); absent: each keeps its own */
  accountStates?: StateCache;
}

async function untilPostgresReady(pool: Pool, log: Logger, lifecycle: Lifecycle): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    lifecycle.checkpoint();
    try {
      await ping(pool);
      return;
    } catch (e) {
      if (classifyError(e) !== 'transient' || attempt >= 30) throw e;
      const wait = Math.max(200, backoffMs(attempt, 200, 5000));
      log.warn({ err: coerceError(e), attempt, retryInMs: wait }, 'postgres not reachable yet');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** Starts every configured role; resolves with the exit code once the daemon has stopped. */
export async function runDaemon(config: Config, log: Logger, lifecycle: Lifecycle): Promise<number> {
  try {
    const metrics = createMetrics();
    const health = new Health(metrics);
    // not ready until every role has started, nor once a stop began (roles then drop their own checks)
    let started = false;
    health.add('lifecycle', async () => {
      if (lifecycle.isStopping) throw new Error('stopping');
      if (!started) throw new Error('starting');
      return 'running';
    });
    lifecycle.defer('health-watch', health.watch(5000));
    log.info({ roles: config.roles, kafka: config.kafka.brokers, db: redactUrl(config.db.url), redis: config.redis.url ? redactUrl(config.redis.url) : 'off' }, 'starting banking-es');

    const http = await startHttpServer({ host: config.metrics.host, port: config.metrics.port, registry: metrics.registry, health, log });
    lifecycle.defer('http', () => http.close());
    lifecycle.checkpoint();

    const pool = createPool({ url: config.db.url, max: config.db.poolSize, statementTimeoutMs: config.db.statementTimeoutMs }, log);
    lifecycle.defer('postgres-pool', () => pool.end());
    health.add('postgres', () => ping(pool));
    await untilPostgresReady(pool, log, lifecycle);
    if (config.db.migrate) {
      const applied = await migrate(pool, undefined, (message) => log.warn({ migration: true }, message));
      log.info({ applied }, applied.length ? 'migrations applied' : 'schema up to date');
    }
    lifecycle.checkpoint();

    const producer = new ProducerClient(config, log, metrics, {}, { 'message.timeout.ms': config.kafka.messageTimeoutMs });
    lifecycle.defer('kafka-producer', () => producer.close(Math.max(1000, config.shutdown.timeoutMs / 5)));
    await producer.connect();
    health.add('kafka', () => producer.probe());
    const topics = new Topics(config, producer.raw, { health, metrics, log });
    lifecycle.defer('topics', async () => topics.close());
    lifecycle.checkpoint();

    let redis: RedisClient | undefined;
    if (config.redis.url) {
      const client = createRedis(config.redis.url, log, metrics);
      redis = client;
      lifecycle.defer('redis', async () => { client.disconnect(); });
      health.add('redis', async () => { await pingRedis(client); return 'optional: the daemon runs without it'; }, { required: false });
    }

    const ctx: DaemonContext = { config, log, metrics, health, pool, producer, redis, lifecycle, topics, accountWrites: new WriteLock(), accountStates: new StateCache(config.pipeline.stateCacheSize, metrics) };
    await startRoles(ctx);
    lifecycle.checkpoint();
    started = true;
    log.info({ metricsPort: http.port }, 'banking-es started');
    await lifecycle.stopSignal;
  } catch (e) {
    if (!(e instanceof ShutdownRequested)) {
      log.error({ err: coerceError(e) }, 'start-up failed');
      await lifecycle.shutdown();
      return 1;
    }
    log.info('stopped during start-up');
  }
  const code = await lifecycle.shutdown();
  log.info({ code }, 'banking-es stopped');
  return code;
}
