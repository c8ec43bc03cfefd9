import type { Pool, PoolClient } from 'pg';

/** One stored event, as text: the account, its version, the envelope. */
export interface StoredEventRow { account_id: string; version: string; payload: string }

/**
 * A page of the event store in (account, version) order, after `after`
 * (exclusive) or from the start: for the relay's backfill and the projection
 * rebuild. ORDER BY names the table's columns: a bare `version` would bind to
 * the text output column and sort 1, 10, 2 …
 */
export async function readEventsInOrder(db: Pool | PoolClient, after: { accountId: string; version: number } | null, limit: number, scope: string[] | null = null): Promise<StoredEventRow[]> {
  if (scope !== null) {
    // the same keyset order over the accounts of the scope (an index probe per account, not a scan)
    const { rows } = await db.query<StoredEventRow>(
      `SELECT e.account_id::text, e.version::text AS version, e.payload::text AS payload FROM events e
        WHERE e.account_id = ANY($2::uuid[])
          AND (e.account_id, e.version) > (COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'::uuid), COALESCE($4::bigint, 0))
        ORDER BY e.account_id, e.version LIMIT $1`,
      [limit, scope, after?.accountId ?? null, after?.version ?? null],
    );
    return rows;
  }
  const { rows } = after === null
    ? await db.query<StoredEventRow>('SELECT e.account_id::text, e.version::text AS version, e.payload::text AS payload FROM events e ORDER BY e.account_id, e.version LIMIT $1', [limit])
    : await db.query<StoredEventRow>('SELECT e.account_id::text, e.version::text AS version, e.payload::text AS payload FROM events e WHERE (e.account_id, e.version) > ($2::uuid, $3::bigint) ORDER BY e.account_id, e.version LIMIT $1', [limit, after.accountId, after.version]);
  return rows;
}

export async function countEvents(db: Pool | PoolClient, scope: string[] | null = null): Promise<number> {
  const { rows: [c] } = scope === null
    ? await db.query<{ n: string }>('SELECT count(*) AS n FROM events')
    : await db.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE account_id = ANY($1::uuid[])', [scope]);
  return Number(c.n);
}
