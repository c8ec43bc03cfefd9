import type { Pool } from 'pg';

/** The index the polling relay reads in (transaction, position) order by. */
export const POLLER_INDEX = 'events_tx_position';

/**
 * Builds the polling relay's index when missing, without blocking writers
 * (CONCURRENTLY). An invalid index left by an interrupted build is dropped
 * first (`onInvalid` is told), unless another session is building it now.
 */
export async function ensurePollerIndex(pool: Pool, onInvalid: () => void): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SET statement_timeout = 0'); // a large table takes a while, and a cancelled build leaves an invalid index
    const { rows } = await client.query<{ valid: boolean; building: boolean }>(
      `SELECT i.indisvalid AS valid,
              EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace`,
      [POLLER_INDEX],
    );
    if (rows[0] && !rows[0].valid && !rows[0].building) {
      onInvalid();
      await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${POLLER_INDEX}`);
    }
    await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${POLLER_INDEX} ON events (tx_id, position)`);
  } finally {
    await client.query('RESET statement_timeout').catch(() => undefined);
    client.release();
  }
}
