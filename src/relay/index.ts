/**
 * The relay role: which CDC relay feeds the event topic (config cdc.mode,
 * docs/architecture.md §1). `debezium` runs outside the daemon (connectors/), so the role
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
      return new LogicalRelay(ctx, { slot: relaySlotName(ctx.config.cdc.slot, ctx.config.db.url), publication: ctx.config.cdc.publication });
    case 'poller':
      return new PollingRelay(ctx);
    case 'debezium':
      return undefined;
    default:
      throw new Error(`unknown cdc.mode "${ctx.config.cdc.mode}" (config validation admits relay, poller, debezium)`);
  }
}

/** The configured slot, or banking_es_relay_<database> (slot names: lower-case letters, digits, _; at most 63). */
export function relaySlotName(configured: string, dbUrl: string): string {
  if (configured) return configured;
  const db = decodeURIComponent(new URL(dbUrl).pathname.replace(/^\//, '')) || 'postgres';
  return `banking_es_relay_${db.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

export { LogicalRelay, PollingRelay };
