/**
 * The relay role: which CDC relay feeds the event topic (config cdc.mode,
 * DESIGN §1). `debezium` runs outside the daemon (connectors/), so the role
 * has nothing to run and the daemon only consumes.
 */
import type { DaemonContext } from '../daemon';
import { LogicalRelay } from './logical-relay';
import { PollingRelay } from './poller';

export interface Relay {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createRelay(ctx: DaemonContext): Relay | undefined {
  switch (ctx.config.cdc.mode) {
    case 'relay':
      return new LogicalRelay(ctx);
    case 'poller':
      return new PollingRelay(ctx);
    case 'debezium':
      return undefined;
    default:
      throw new Error(`unknown cdc.mode "${ctx.config.cdc.mode}" (config validation admits relay, poller, debezium)`);
  }
}

export { LogicalRelay, PollingRelay };
