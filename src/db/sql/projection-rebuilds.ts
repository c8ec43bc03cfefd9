import type { Pool, PoolClient } from 'pg';

/**
 * Advisory lock keys (arbitrary constants, next to migrate's 7_403_112_001).
 * PROJECTION_WRITE: every projector flush holds it shared for its
 * transaction; a rebuild holds it exclusively for its whole run, so the two
 * never write the read models at once. REBUILD: one rebuild at a time.
 */
export const LOCK_PROJECTION_WRITE = 7_403_112_010;
export const LOCK_PROJECTION_REBUILD = 7_403_112_011;

export interface RebuildCheckpoint {
  id: number;
  state: 'running' | 'done';
  lastAccountId: string | null;
  lastVersion: number | null;
  eventsDone: number;
  eventsTotal: number;
  runs: number;
  /** the accounts it rebuilds, sorted; null: all of them */
  scope: string[] | null;
}

export type WriteGate = 'open' | 'rebuild-running' | 'rebuild-interrupted';

/**
 * Inside a projector's flush transaction: may it write the read models?
 * 'rebuild-running' when a rebuild holds the write lock now;
 * 'rebuild-interrupted' when a rebuild stopped half-way (its row is still
 * 'running') and must be resumed first. Two statements on purpose: the state
 * is read after the lock is held, with a snapshot that sees every rebuild
 * that committed before.
 */
export async function projectorWriteGate(client: PoolClient): Promise<WriteGate> {
  const { rows: [l] } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock_shared($1) AS ok', [LOCK_PROJECTION_WRITE]);
  if (!l.ok) return 'rebuild-running';
  const { rows } = await client.query("SELECT 1 FROM projection_rebuilds WHERE state = 'running'");
  return rows.length ? 'rebuild-interrupted' : 'open';
}

function toCheckpoint(r: Record<string, unknown>): RebuildCheckpoint {
  return {
    id: Number(r.id), state: r.state as RebuildCheckpoint['state'],
    lastAccountId: (r.last_account_id as string | null) ?? null,
    lastVersion: r.last_version === null ? null : Number(r.last_version),
    eventsDone: Number(r.events_done), eventsTotal: Number(r.events_total), runs: Number(r.runs),
    scope: (r.scope as string[] | null) ?? null,
  };
}

/** The unfinished rebuild, if any. */
export async function findRunningRebuild(db: Pool | PoolClient): Promise<RebuildCheckpoint | null> {
  const { rows } = await db.query("SELECT * FROM projection_rebuilds WHERE state = 'running'");
  return rows.length ? toCheckpoint(rows[0]) : null;
}

/**
 * Starts over: empties the read models (all of them, or the rows of the accounts in `scope`) and
 * records a new running rebuild, atomically.
 */
export async function beginRebuild(client: PoolClient, eventsTotal: number, scope: string[] | null = null): Promise<RebuildCheckpoint> {
  if (scope === null) await client.query('TRUNCATE account_projections, transaction_projections');
  else {
    await client.query('DELETE FROM transaction_projections WHERE account_id = ANY($1::uuid[])', [scope]);
    await client.query('DELETE FROM account_projections WHERE account_id = ANY($1::uuid[])', [scope]);
  }
  const { rows } = await client.query("INSERT INTO projection_rebuilds (state, events_total, scope) VALUES ('running', $1, $2::uuid[]) RETURNING *", [eventsTotal, scope]);
  return toCheckpoint(rows[0]);
}

/** The accounts with an event recorded at or after `since`, sorted: what `rebuild-projections --since` rebuilds. */
export async function accountsWithEventsSince(db: Pool | PoolClient, since: Date): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT DISTINCT account_id::text AS id FROM events WHERE recorded_at >= $1 ORDER BY 1', [since]);
  return rows.map((r) => r.id);
}

/** A resume: counts the run and refreshes the total (events may have been appended meanwhile). */
export async function resumeRebuild(client: PoolClient, id: number, eventsTotal: number): Promise<RebuildCheckpoint> {
  const { rows } = await client.query('UPDATE projection_rebuilds SET runs = runs + 1, events_total = $2, updated_at = now() WHERE id = $1 RETURNING *', [id, eventsTotal]);
  return toCheckpoint(rows[0]);
}

/** In the same transaction as the page it covers. */
export async function advanceRebuild(client: PoolClient, id: number, lastAccountId: string, lastVersion: number, events: number): Promise<void> {
  await client.query(
    'UPDATE projection_rebuilds SET last_account_id = $2, last_version = $3, events_done = events_done + $4, updated_at = now() WHERE id = $1',
    [id, lastAccountId, lastVersion, events],
  );
}

export async function finishRebuild(client: PoolClient, id: number): Promise<void> {
  await client.query("UPDATE projection_rebuilds SET state = 'done', finished_at = now(), updated_at = now() WHERE id = $1", [id]);
}

/** One rebuild at a time: a session lock, true when this session took it. */
export async function tryRebuildLock(client: PoolClient): Promise<boolean> {
  const { rows: [l] } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LOCK_PROJECTION_REBUILD]);
  return l.ok;
}

/** Waits until no projector flush writes the read models, then keeps them out until the session's locks are released. */
export async function holdProjectionWrites(client: PoolClient): Promise<void> {
  await client.query('SELECT pg_advisory_lock($1)', [LOCK_PROJECTION_WRITE]);
}

/** Session locks outlive a pooled client's checkout: give them back explicitly. */
export async function releaseSessionLocks(client: PoolClient): Promise<void> {
  await client.query('SELECT pg_advisory_unlock_all()');
}
