import type { Pool, PoolClient } from 'pg';

/** A point in the events table's (tx_id, position) order; tx_id is an xid8 as text, position a bigint as text. */
export interface RelayCheckpoint { txId: string; position: string }

export const START_CHECKPOINT: RelayCheckpoint = { txId: '0', position: '0' };

export async function readCheckpoint(db: Pool | PoolClient, relay: string): Promise<RelayCheckpoint | undefined> {
  const { rows } = await db.query<{ tx_id: string; position: string }>('SELECT tx_id::text, position::text FROM relay_checkpoints WHERE relay = $1', [relay]);
  return rows[0] ? { txId: rows[0].tx_id, position: rows[0].position } : undefined;
}

/**
 * Stores the checkpoint unless the stored one is already ahead (a second
 * poller, or a stale one). Returns 'stored', or 'behind' when another writer
 * is ahead, in which case the caller should resume from the stored one.
 */
export async function saveCheckpoint(db: Pool | PoolClient, relay: string, cp: RelayCheckpoint): Promise<'stored' | 'behind'> {
  const { rowCount } = await db.query(
    `INSERT INTO relay_checkpoints AS c (relay, tx_id, position) VALUES ($1, $2::xid8, $3::bigint)
     ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, updated_at = now()
       WHERE (c.tx_id, c.position) <= (EXCLUDED.tx_id, EXCLUDED.position)`,
    [relay, cp.txId, cp.position],
  );
  return rowCount ? 'stored' : 'behind';
}
