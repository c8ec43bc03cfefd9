import type { Pool, PoolClient } from 'pg';
import type { RelayCheckpoint } from './relay-checkpoints';

export interface CommittedEvent { txId: string; position: string; accountId: string; payload: string }

/**
 * The next events after `after` in (tx_id, position) order, from transactions
 * that can no longer change: every transaction below the snapshot's xmin has
 * committed or aborted, and any transaction still running or yet to start has
 * an xid at or above it. So nothing can later appear below the returned rows,
 * however late it commits (docs/architecture.md §3); a sequence or timestamp gives no such
 * guarantee. Reads through events_tx_position (created by the poller).
 * payload::text is jsonb's own text form: the envelope exactly as stored.
 */
export async function readCommittedEvents(db: Pool | PoolClient, after: RelayCheckpoint, limit: number): Promise<CommittedEvent[]> {
  const { rows } = await db.query<{ tx_id: string; position: string; account_id: string; payload: string }>(
    // ORDER BY names the table's columns (e.): a bare name would sort by the text output columns of the same name
    `SELECT e.tx_id::text AS tx_id, e.position::text AS position, e.account_id::text AS account_id, e.payload::text AS payload
       FROM events e
      WHERE (e.tx_id, e.position) > ($1::xid8, $2::bigint)
        AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY e.tx_id, e.position
      LIMIT $3`,
    [after.txId, after.position, limit],
  );
  return rows.map((r) => ({ txId: r.tx_id, position: r.position, accountId: r.account_id, payload: r.payload }));
}
