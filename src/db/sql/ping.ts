import type { Pool } from 'pg';

/** One round trip: Postgres answers (startup wait, readiness probe). */
export async function ping(pool: Pool): Promise<void> {
  await pool.query('SELECT 1');
}
