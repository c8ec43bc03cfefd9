import type { PoolClient, Pool } from 'pg';
import { stateFromLatestEvent } from '../../domain/decider';
import type { AccountState, EventType } from '../../domain/types';

/**
 * The latest event of each account carries its version, balance and status
 * (docs/architecture.md §3), so a cold account's state is one index probe; all of a batch's
 * cold accounts go in one statement.
 */
export async function loadLatestStates(db: PoolClient | Pool, accountIds: string[]): Promise<Map<string, AccountState>> {
  const out = new Map<string, AccountState>();
  if (accountIds.length === 0) return out;
  const { rows } = await db.query<{ account_id: string; version: string; event_type: EventType; data: Record<string, unknown> }>(
    `SELECT e.account_id, e.version, e.event_type, e.payload->'data' AS data
       FROM unnest($1::uuid[]) AS a(id)
       CROSS JOIN LATERAL (SELECT account_id, version, event_type, payload FROM events
                            WHERE account_id = a.id ORDER BY version DESC LIMIT 1) e`,
    [accountIds],
  );
  for (const r of rows) {
    const owner = typeof r.data.ownerName === 'string' ? r.data.ownerName : undefined;
    out.set(r.account_id, stateFromLatestEvent(r.account_id, Number(r.version), r.event_type, r.data, owner));
  }
  return out;
}
