import type { PoolClient } from 'pg';
import { copyIn } from './copy-in';
import { ACCOUNT_STAGING_COLUMNS } from '../../codec/rows';

/**
 * Folded account rows (binary COPY, one per account) into account_projections
 * through a session-local staging table (docs/architecture.md §3), in ONE statement:
 * `UPDATE … FROM` the staged rows whose account exists, and `INSERT … ON
 * CONFLICT` of those whose account does not. A row only replaces an older
 * version, so a re-send or a stale writer never moves a projection
 * backwards. An existing row keeps its owner_name and opened_at: only
 * AccountCreated knows them, and it is always the first row ever written for
 * an account it belongs to.
 *
 * Why not one `INSERT … ON CONFLICT DO UPDATE` for all: almost every account
 * row of a flush already exists, and for each of them that pays a
 * speculative insertion's index probe and a row lock (a WAL record per row)
 * before the update. Postgres CPU for the account rows of a flush of 16,000
 * events (~4,100 rows; 60 flushes each, interleaved): ~23 ms this way,
 * ~29 ms as one INSERT.
 *
 * One statement, so both parts see one snapshot: a staged account is either
 * in it (updated, or left alone when not older) or not (inserted). An
 * account another writer inserts meanwhile meets the INSERT's ON CONFLICT,
 * which applies the same version rule.
 * Must run inside the caller's transaction (the staging rows vanish at commit).
 */
export async function upsertAccountProjections(client: PoolClient, rowChunks: Uint8Array[]): Promise<void> {
  await client.query(`CREATE TEMP TABLE IF NOT EXISTS account_projections_staging (
      account_id uuid NOT NULL, owner_name text NOT NULL, currency text NOT NULL, balance bigint NOT NULL,
      status text NOT NULL, version bigint NOT NULL, opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
      closed_at timestamptz
    ) ON COMMIT DELETE ROWS`);
  await copyIn(client, 'account_projections_staging', ACCOUNT_STAGING_COLUMNS, rowChunks);
  await client.query(
    `WITH updated AS (
       UPDATE account_projections AS p
       SET currency = s.currency, balance = s.balance, status = s.status,
           version = s.version, updated_at = s.updated_at, closed_at = s.closed_at
       FROM account_projections_staging AS s
       WHERE p.account_id = s.account_id AND p.version < s.version
     )
     INSERT INTO account_projections AS p (${ACCOUNT_STAGING_COLUMNS})
     SELECT ${ACCOUNT_STAGING_COLUMNS} FROM account_projections_staging AS s
     WHERE NOT EXISTS (SELECT 1 FROM account_projections AS x WHERE x.account_id = s.account_id)
     ON CONFLICT (account_id) DO UPDATE
       SET currency = EXCLUDED.currency, balance = EXCLUDED.balance, status = EXCLUDED.status,
           version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at
     WHERE p.version < EXCLUDED.version`,
  );
}
