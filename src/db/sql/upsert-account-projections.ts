import type { PoolClient } from 'pg';
import { copyIn } from './copy-in';
import { ACCOUNT_STAGING_COLUMNS } from '../../projections/project-shard';

/**
 * Folded account rows (binary COPY, one per account) into account_projections
 * through a session-local staging table and ONE `INSERT … ON CONFLICT`
 * (DESIGN §3). A row only replaces an older version, so a re-send or a stale
 * writer never moves a projection backwards. An existing row keeps its
 * owner_name and opened_at: only AccountCreated knows them, and it is always
 * the first row ever written for an account it belongs to.
 * Must run inside the caller's transaction (the staging rows vanish at commit).
 */
export async function upsertAccountProjections(client: PoolClient, rowChunks: Uint8Array[]): Promise<number> {
  await client.query(`CREATE TEMP TABLE IF NOT EXISTS account_projections_staging (
      account_id uuid NOT NULL, owner_name text NOT NULL, currency text NOT NULL, balance bigint NOT NULL,
      status text NOT NULL, version bigint NOT NULL, opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
      closed_at timestamptz
    ) ON COMMIT DELETE ROWS`);
  await copyIn(client, 'account_projections_staging', ACCOUNT_STAGING_COLUMNS, rowChunks);
  const r = await client.query(
    `INSERT INTO account_projections AS p (${ACCOUNT_STAGING_COLUMNS})
     SELECT ${ACCOUNT_STAGING_COLUMNS} FROM account_projections_staging
     ON CONFLICT (account_id) DO UPDATE
       SET currency = EXCLUDED.currency, balance = EXCLUDED.balance, status = EXCLUDED.status,
           version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at
     WHERE p.version < EXCLUDED.version`,
  );
  return r.rowCount ?? 0;
}
