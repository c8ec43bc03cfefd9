import type { PoolClient, Pool } from 'pg';
import { stateFromLatestEvent } from '../../domain/decider';
import type { AccountState, EventType } from '../../domain/types';

/**
 * The latest event of each account carries its version, balance and status
 * (docs/architecture.md §3), so a cold account's state is one index probe; all of a batch's
 * cold accounts go in one statement.
 *
 * `counted`: each state also carries its outgoing transfers in flight and the money they hold,
 * from `transfers` (an index probe of the in-flight rows), read in the same statement and so
 * the same snapshot as the event. Read apart, a refund or debit committed between the two
 * reads would be counted twice or not at all, with the account's latest version read, so
 * nothing would catch it. No source holds more than 2^53 − 1 in flight (it held it in its
 * balance first); a store that says otherwise reads as that limit.
 */
export async function loadLatestStates(db: PoolClient | Pool, accountIds: string[], counted = false): Promise<Map<string, AccountState>> {
  const out = new Map<string, AccountState>();
  if (accountIds.length === 0) return out;
  type Row = { account_id: string; version: string; event_type: EventType; data: Record<string, unknown>; n?: number | null; amount?: string | null };
  const { rows } = counted
    ? await db.query<Row>(
      `SELECT e.account_id, e.version, e.event_type, e.payload->'data' AS data, f.n, f.amount
         FROM unnest($1::uuid[]) AS a(id)
         CROSS JOIN LATERAL (SELECT account_id, version, event_type, payload FROM events
                              WHERE account_id = a.id ORDER BY version DESC LIMIT 1) e
         LEFT JOIN (SELECT t.source_id, count(*)::int AS n, least(sum(t.amount), 9007199254740991)::text AS amount
                      FROM transfers t WHERE t.source_id = ANY($1::uuid[]) AND t.settled IS NULL GROUP BY t.source_id) f ON f.source_id = a.id`,
      [accountIds],
    )
    : await db.query<Row>(
      `SELECT e.account_id, e.version, e.event_type, e.payload->'data' AS data
         FROM unnest($1::uuid[]) AS a(id)
         CROSS JOIN LATERAL (SELECT account_id, version, event_type, payload FROM events
                              WHERE account_id = a.id ORDER BY version DESC LIMIT 1) e`,
      [accountIds],
    );
  for (const r of rows) {
    const owner = typeof r.data.ownerName === 'string' ? r.data.ownerName : undefined;
    const state = stateFromLatestEvent(r.account_id, Number(r.version), r.event_type, r.data, owner);
    if (r.n) {
      state.transfersPending = r.n;
      state.transfersPendingAmount = Number(r.amount);
    }
    out.set(r.account_id, state);
  }
  return out;
}
