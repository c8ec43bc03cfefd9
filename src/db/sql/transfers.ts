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
 * destination, amount and currency) and says what its own step can know: a
 * credit names the source's version and balance after the debit (what the
 * final outcome reports), and a refund follows a refusal of the credit that
 * the destination recorded, for the reason it names. So a step copied or
 * forged on bank.transfers with other outcome fields, or a refund before any
 * refusal, settles nothing. A row already settled keeps its first
 * settlement. Returns how many rows settled now; fewer than asked means
 * another writer settled one first (the worker never settles a step it has
 * seen) or a step is not backed (unbackedTransfers tells), and the caller
 * must not commit.
 */
export async function settleTransfers(client: PoolClient, settlements: readonly Settlement[]): Promise<number> {
  if (settlements.length === 0) return 0;
  const { rowCount } = await client.query(
    `UPDATE transfers t SET settled = s.settled, reason = s.reason, settled_at = now()
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::uuid[])
              AS s(source, id, settled, reason, destination, amount, currency, source_version, source_balance, credit_step)
      WHERE t.source_id = s.source AND t.transfer_id = s.id AND t.settled IS NULL
        AND t.destination_id = s.destination AND t.amount = s.amount AND t.currency = s.currency
        AND ${BACKED}`,
    settlementArrays(settlements),
  );
  return rowCount ?? 0;
}

/** How many of these steps have no debit behind them: no row, one that moved another destination, amount or currency, or other outcome fields (settleTransfers). */
export async function unbackedTransfers(client: PoolClient, settlements: readonly Settlement[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::uuid[])
              AS s(source, id, settled, reason, destination, amount, currency, source_version, source_balance, credit_step)
       -- a LIMIT inside a LATERAL: one primary-key probe per step, never an anti join over the whole table
       LEFT JOIN LATERAL (SELECT true AS backed FROM transfers t WHERE t.source_id = s.source AND t.transfer_id = s.id
                             AND t.destination_id = s.destination AND t.amount = s.amount AND t.currency = s.currency
                             AND ${BACKED} LIMIT 1) b ON true
      WHERE b.backed IS NULL`,
    settlementArrays(settlements),
  );
  return rows[0].n;
}

/**
 * What a step must agree with besides its debit's row (t), for the step (s): the row unsettled or settled
 * the step's way; a credit, the source's TransferDebited at the version it names with the balance it
 * names (minor units); a refund, the destination's recorded refusal of the credit step, for the reason it
 * names. A constant: no value in it.
 */
const BACKED = `(t.settled IS NULL OR t.settled = s.settled) AND CASE WHEN s.settled = 'credited'
      THEN t.debited_version = s.source_version AND EXISTS (SELECT 1 FROM events e WHERE e.account_id = t.source_id AND e.version = t.debited_version
                                                             AND e.payload->'data'->>'balanceAfter' = s.source_balance)
      ELSE EXISTS (SELECT 1 FROM command_rejections r WHERE r.account_id = s.destination AND r.command_id = s.credit_step AND r.reason = s.reason) END`;

const settlementArrays = (list: readonly Settlement[]) => [
  list.map((s) => s.sourceId), list.map((s) => s.transferId), list.map((s) => s.settled), list.map((s) => s.reason),
  list.map((s) => s.destinationId), list.map((s) => s.amount), list.map((s) => s.currency),
  list.map((s) => (s.settled === 'credited' ? s.sourceVersion : null)), list.map((s) => (s.settled === 'credited' ? String(s.sourceBalance) : null)),
  list.map((s) => (s.settled === 'refunded' ? s.creditStepId : null)),
];

/**
 * Outgoing transfers in flight per source, for the sources asked about that have any: the close
 * check at commit. A careful redo reads them, and the money they hold, with the states
 * (loadLatestStates's `counted`).
 */
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
