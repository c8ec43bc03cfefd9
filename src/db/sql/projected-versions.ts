import type { Pool, PoolClient } from 'pg';

/** Projected version of each account that has a projection row; one statement for a whole batch. */
export async function loadProjectedVersions(db: Pool | PoolClient, accountIds: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (accountIds.length === 0) return out;
  const { rows } = await db.query<{ account_id: string; version: string }>(
    'SELECT account_id, version FROM account_projections WHERE account_id = ANY($1::uuid[])',
    [accountIds],
  );
  for (const r of rows) out.set(r.account_id, Number(r.version));
  return out;
}
