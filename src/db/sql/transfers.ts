/**
 * The `transfers` table (migration 0009, docs/transfers.md). Rows are
 * inserted by the command role's COPY (TRANSFER_COLUMNS) in the debit's
 * transaction; these statements settle them and read what is in flight. Ids
 * are validated UUIDs passed as arrays node-postgres encodes.
 */
import type { Pool, PoolClient } from 'pg';
import type { Settlement } from '../../pipeline/transfers/decide-steps';

/**
 * Settles transfers in the credit's or the refund's transaction. A transfer
 * settles once, and only by a step that moved what its debit moved (the same
 * destination, amount and currency): a row already settled keeps its first
 * settlement. Returns how many rows settled now; fewer than asked means
 * another writer settled one first (the worker never settles a step it has
 * seen) or a step does not match its debit (unbackedTransfers tells), and
 * the caller must not commit.
 */
export async function settleTransfers(client: PoolClient, settlements: readonly Settlement[]): Promise<number> {
  if (settlements.length === 0) return 0;
  const { rowCount } = await client.query(
    `UPDATE transfers t SET settled = s.settled, reason = s.reason, settled_at = now()
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[]) AS s(source, id, settled, reason, destination, amount, currency)
      WHERE t.source_id = s.source AND t.transfer_id = s.id AND t.settled IS NULL
        AND t.destination_id = s.destination AND t.amount = s.amount AND t.currency = s.currency`,
    settlementArrays(settlements),
  );
  return rowCount ?? 0;
}

/** How many of these steps have no debit behind them: no row, or one that moved another destination, amount or currency. */
export async function unbackedTransfers(client: PoolClient, settlements: readonly Settlement[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[]) AS s(source, id, settled, reason, destination, amount, currency)
      WHERE NOT EXISTS (SELECT 1 FROM transfers t WHERE t.source_id = s.source AND t.transfer_id = s.id
                           AND t.destination_id = s.destination AND t.amount = s.amount AND t.currency = s.currency)`,
    settlementArrays(settlements),
  );
  return rows[0].n;
}

const settlementArrays = (list: readonly Settlement[]) => [
  list.map((s) => s.sourceId), list.map((s) => s.transferId), list.map((s) => s.settled), list.map((s) => s.reason),
  list.map((s) => s.destinationId), list.map((s) => s.amount), list.map((s) => s.currency),
];

/** Outgoing transfers in flight per source, for the sources asked about that have any. */
export async function transfersPending(db: Pool | PoolClient, sources: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (sources.length === 0) return out;
  const { rows } = await db.query<{ source_id: string; n: number }>(
    `SELECT source_id, count(*)::int AS n FROM transfers
      WHERE source_id = ANY($1::uuid[]) AND settled IS NULL GROUP BY source_id`,
    [sources],
  );
  for (const r of rows) out.set(r.source_id, r.n);
  return out;
}

export interface InFlight { currency: string; transfers: number; minor: bigint; oldestAt: Date }

/** Money in flight per currency: how many transfers, how much, and since when. */
export async function transfersInFlight(db: Pool | PoolClient): Promise<InFlight[]> {
  const { rows } = await db.query<{ currency: string; n: number; minor: string; oldest: Date }>(
    `SELECT currency, count(*)::int AS n, sum(amount)::text AS minor, min(debited_at) AS oldest
       FROM transfers WHERE settled IS NULL GROUP BY currency ORDER BY currency`,
  );
  return rows.map((r) => ({ currency: r.currency, transfers: r.n, minor: BigInt(r.minor), oldestAt: r.oldest }));
}
