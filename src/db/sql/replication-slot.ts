/**
 * The publication and logical replication slot the built-in relay streams
 * from, created when missing, plus the slot's position and lag. All of it runs
 * on an ordinary (non-replication) connection.
 *
 * Order matters: the publication must exist before the slot's start point,
 * or pgoutput fails with "publication does not exist" when it decodes changes
 * written before the publication was created.
 */
import type { Pool } from 'pg';

export const RELAY_PUBLICATION = 'banking_es_events';
export const RELAY_SLOT = 'banking_es_relay';

const DUPLICATE_OBJECT = '42710';

function isDuplicate(e: unknown): boolean {
  return (e as { code?: string } | null)?.code === DUPLICATE_OBJECT;
}

/** Creates `CREATE PUBLICATION <name> FOR TABLE events WITH (publish = 'insert')` when missing; true when created. */
export async function ensurePublication(pool: Pool, name: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (rowCount) return false;
  try {
    // identifiers cannot be bound; the name is quoted
    await pool.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE events WITH (publish = 'insert')`);
    return true;
  } catch (e) {
    if (isDuplicate(e)) return false; // another instance won the race
    throw e;
  }
}

/** Creates a pgoutput logical slot when missing; true when created. Waits for transactions running at that moment to end. */
export async function ensureSlot(pool: Pool, name: string): Promise<boolean> {
  const slot = await readSlot(pool, name);
  if (slot) {
    if (slot.plugin !== 'pgoutput' || slot.database !== (await currentDatabase(pool))) {
      throw new Error(`replication slot ${name} exists but is not a pgoutput slot of this database (plugin ${slot.plugin}, database ${slot.database})`);
    }
    return false;
  }
  try {
    await pool.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name]);
    return true;
  } catch (e) {
    if (isDuplicate(e)) return false;
    throw e;
  }
}

export interface SlotInfo {
  plugin: string;
  database: string;
  confirmedFlushLsn: string | null;
  activePid: number | null;
  lagBytes: number | null;
}

export async function readSlot(pool: Pool, name: string): Promise<SlotInfo | undefined> {
  const { rows } = await pool.query<{ plugin: string; database: string; confirmed_flush_lsn: string | null; active_pid: number | null; lag: string | null }>(
    `SELECT plugin, database, confirmed_flush_lsn::text, active_pid,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  const r = rows[0];
  if (!r) return undefined;
  return { plugin: r.plugin, database: r.database, confirmedFlushLsn: r.confirmed_flush_lsn, activePid: r.active_pid, lagBytes: r.lag === null ? null : Number(r.lag) };
}

async function currentDatabase(pool: Pool): Promise<string> {
  const { rows } = await pool.query<{ db: string }>('SELECT current_database() AS db');
  return rows[0].db;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
