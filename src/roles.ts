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
import { createRelay } from './relay';

export async function startRoles(ctx: DaemonContext): Promise<void> {
  for (const role of ctx.config.roles) {
    switch (role) {
      case 'commands': {
        const t = ctx.config.kafka.topics;
        await ctx.topics?.ensure(role, [t.commands, t.results, t.commandsDlq]);
        const p = new PartitionedPipeline(ctx, new CommandRole(ctx));
        ctx.lifecycle.defer('command-pipeline', () => p.stop());
        await p.start();
        ctx.log.info({ topic: ctx.config.kafka.topics.commands, workers: ctx.config.pipeline.workers }, 'command pipeline started');
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
