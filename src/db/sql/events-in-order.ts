import type { Pool, PoolClient } from 'pg';

/** One stored event, as text: the account, its version, the envelope. */
export interface StoredEventRow { account_id: string; version: string; payload: string }

/**
 * A page of the event store in (account, version) order, after `after`
 * (exclusive) or from the start: for the relay's backfill and the projection
 * rebuild. ORDER BY names the table's columns: a bare `version` would bind to
 * the text output column and sort 1, 10, 2 …
 */
export async function readEventsInOrder(db: Pool | PoolClient, after: { accountId: string; version: number } | null, limit: number): Promise<StoredEventRow[]> {
  const { rows } = after === null
    ? await db.query<StoredEventRow>('SELECT e.account_id::text, e.version::text AS version, e.payload::text AS payload FROM events e ORDER BY e.account_id, e.version LIMIT $1', [limit])
    : await db.query<StoredEventRow>('SELECT e.account_id::text, e.version::text AS version, e.payload::text AS payload FROM events e WHERE (e.account_id, e.version) > ($2::uuid, $3::bigint) ORDER BY e.account_id, e.version LIMIT $1', [limit, after.accountId, after.version]);
  return rows;
}

export async function countEvents(db: Pool | PoolClient): Promise<number> {
  const { rows: [c] } = await db.query<{ n: string }>('SELECT count(*) AS n FROM events');
  return Number(c.n);
}
