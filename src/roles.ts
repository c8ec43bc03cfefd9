/**
 * Starts the roles named in config.roles. Each role first makes sure the
 * topics it reads and writes exist (created, or reported missing: then it
 * starts anyway, not ready, and uses them as soon as they appear). Each
 * registers its own closer on the lifecycle, so shutdown drains them
 * newest-first.
 */
import type { DaemonContext } from './daemon';
import { PartitionedPipeline } from './pipeline/partitioned-pipeline';
import { CommandRole } from './pipeline/commands/command-role';
import { ProjectionRole } from './pipeline/projections/projection-role';
import { createTransferRole } from './pipeline/transfers/transfer-role';
import { transfersInFlight } from './db/sql/transfers';
import { coerceError } from './errors';
import { createRelay } from './relay';

export async function startRoles(ctx: DaemonContext): Promise<void> {
  for (const role of ctx.config.roles) {
    switch (role) {
      case 'commands': {
        const t = ctx.config.kafka.topics;
        // with transfers on it also writes their credit steps
        await ctx.topics?.ensure(role, ctx.config.transfers.enabled ? [t.commands, t.results, t.commandsDlq, t.transfers] : [t.commands, t.results, t.commandsDlq]);
        const p = new PartitionedPipeline(ctx, new CommandRole(ctx));
        ctx.lifecycle.defer('command-pipeline', () => p.stop());
        // where debits happen the age of what they left in flight is reported too: the stuck-transfer
        // alert fires even when no instance runs the transfers role
        watchOnce(ctx);
        await p.start();
        ctx.log.info({ topic: ctx.config.kafka.topics.commands, workers: ctx.config.pipeline.workers }, 'command pipeline started');
        break;
      }
      case 'transfers': {
        const t = ctx.config.kafka.topics;
        await ctx.topics?.ensure(role, [t.transfers, t.results, t.transfersDlq]);
        const p = new PartitionedPipeline(ctx, createTransferRole(ctx));
        ctx.lifecycle.defer('transfer-pipeline', () => p.stop());
        await p.start();
        watchOnce(ctx);
        ctx.log.info({ topic: t.transfers, group: ctx.config.kafka.transferGroupId }, 'transfer pipeline started');
        break;
      }
      case 'projections': {
        await ctx.topics?.ensure(role, [ctx.config.kafka.topics.events, ctx.config.kafka.topics.eventsDlq]);
        const p = new PartitionedPipeline(ctx, new ProjectionRole(ctx));
        ctx.lifecycle.defer('projection-pipeline', () => p.stop());
        await p.start();
        ctx.log.info({ topic: ctx.config.kafka.topics.events, group: ctx.config.kafka.projectionGroupId }, 'projection pipeline started');
        break;
      }
      case 'relay': {
        const relay = createRelay(ctx);
        if (!relay) {
          ctx.log.info('cdc.mode is debezium: Debezium publishes bank.events, the relay role has nothing to run');
          break;
        }
        await ctx.topics?.ensure(role, [ctx.config.kafka.topics.events]);
        // deferred after the producer, so it stops (and drains its deliveries) before the producer closes
        ctx.lifecycle.defer('relay', () => relay.stop());
        await relay.start();
        ctx.log.info({ mode: ctx.config.cdc.mode, topic: ctx.config.kafka.topics.events }, 'relay started');
        break;
      }
    }
  }
}

const watched = new WeakSet<DaemonContext>();
function watchOnce(ctx: DaemonContext): void {
  if (watched.has(ctx)) return;
  watched.add(ctx);
  const stop = watchTransfersInFlight(ctx);
  ctx.lifecycle.defer('transfers-in-flight', async () => stop());
}

/**
 * Reads the transfers in flight every 5 s into banking_es_transfers_in_flight
 * and banking_es_transfers_oldest_seconds (the stuck-transfer alert's input).
 * A failed read keeps the last values and is logged; the next one retries.
 */
function watchTransfersInFlight(ctx: DaemonContext): () => void {
  const { metrics, pool, log } = ctx;
  const seen = new Set<string>();
  let running = false;
  const read = async () => {
    if (running) return;
    running = true;
    try {
      const rows = await transfersInFlight(pool);
      const now = new Set(rows.map((r) => r.currency));
      for (const c of seen) if (!now.has(c)) metrics.transfersInFlight.set({ currency: c }, 0);
      for (const r of rows) { metrics.transfersInFlight.set({ currency: r.currency }, r.transfers); seen.add(r.currency); }
      const oldest = rows.reduce((m, r) => Math.min(m, r.oldestAt.getTime()), Infinity);
      metrics.transfersOldestSeconds.set(oldest === Infinity ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    } catch (e) {
      log.warn({ err: coerceError(e) }, 'could not read the transfers in flight');
    } finally {
      running = false;
    }
  };
  void read();
  const timer = setInterval(() => void read(), 5000);
  timer.unref();
  return () => clearInterval(timer);
}
