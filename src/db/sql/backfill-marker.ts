import type { Pool } from 'pg';

/**
 * The relay's backfill marker, a relay_checkpoints row: position 0 while a
 * backfill is pending, 1 once it completed (src/relay/backfill.ts says why).
 */
export async function markBackfillPending(pool: Pool, marker: string): Promise<void> {
  await pool.query(
    `INSERT INTO relay_checkpoints (relay, tx_id, position) VALUES ($1, '0'::xid8, 0)
     ON CONFLICT (relay) DO UPDATE SET position = 0, updated_at = now()`,
    [marker],
  );
}

export async function backfillPending(pool: Pool, marker: string): Promise<boolean> {
  const { rows } = await pool.query<{ position: string }>('SELECT position::text FROM relay_checkpoints WHERE relay = $1', [marker]);
  return rows[0]?.position === '0';
}

export async function markBackfillDone(pool: Pool, marker: string): Promise<void> {
  await pool.query('UPDATE relay_checkpoints SET position = 1, updated_at = now() WHERE relay = $1', [marker]);
}
