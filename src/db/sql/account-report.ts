import type { Pool, PoolClient } from 'pg';

/** One account's read model and its latest transactions (`banking-es account <id>`). */
export interface AccountProjection {
  accountId: string;
  ownerName: string;
  currency: string;
  /** Minor units. */
  balance: number;
  status: 'open' | 'closed';
  version: number;
  openedAt: Date;
  updatedAt: Date;
  closedAt: Date | null;
}

export interface TransactionProjection {
  version: number;
  eventId: string;
  eventType: string;
  /** Minor units, signed: withdrawals negative. */
  amount: number;
  balanceAfter: number;
  currency: string;
  commandId: string;
  recordedAt: Date;
  /** Transfer events: the transfer and the other account. */
  transferId: string | null;
  counterpartyId: string | null;
}

/** A transfer debited and not yet credited or refunded, out of or into the account. */
export interface TransferInFlight { transferId: string; direction: 'out' | 'in'; otherAccountId: string; amount: number; currency: string; debitedAt: Date }

export interface AccountReport {
  account: AccountProjection | null;
  /** Newest first. */
  transactions: TransactionProjection[];
  /** Oldest first, from the transfers table (the authority, not the read model); `limit` at most. */
  inFlight: TransferInFlight[];
  /** inFlight holds `limit` rows: there may be more */
  inFlightCapped: boolean;
}

export async function accountReport(db: Pool | PoolClient, accountId: string, limit = 20): Promise<AccountReport> {
  const a = await db.query(
    `SELECT account_id::text, owner_name, currency, balance, status, version, opened_at, updated_at, closed_at
       FROM account_projections WHERE account_id = $1`, [accountId]);
  if (a.rows.length === 0) return { account: null, transactions: [], inFlight: [], inFlightCapped: false };
  const r = a.rows[0];
  const account: AccountProjection = {
    accountId: r.account_id, ownerName: r.owner_name, currency: r.currency, balance: Number(r.balance), status: r.status,
    version: Number(r.version), openedAt: r.opened_at, updatedAt: r.updated_at, closedAt: r.closed_at,
  };
  const t = await db.query(
    `SELECT version, event_id::text, event_type, amount, balance_after, currency, command_id::text, recorded_at, transfer_id::text, counterparty_id::text
       FROM transaction_projections WHERE account_id = $1 ORDER BY version DESC LIMIT $2`, [accountId, limit]);
  const transactions = t.rows.map((x): TransactionProjection => ({
    version: Number(x.version), eventId: x.event_id, eventType: x.event_type, amount: Number(x.amount),
    balanceAfter: Number(x.balance_after), currency: x.currency, commandId: x.command_id, recordedAt: x.recorded_at,
    transferId: x.transfer_id, counterpartyId: x.counterparty_id,
  }));
  const f = await db.query<{ transfer_id: string; source_id: string; destination_id: string; amount: string; currency: string; debited_at: Date }>(
    `SELECT transfer_id::text, source_id::text, destination_id::text, amount::text, currency, debited_at FROM transfers
      WHERE settled IS NULL AND (source_id = $1 OR destination_id = $1) ORDER BY debited_at LIMIT $2`, [accountId, limit]);
  const inFlight = f.rows.map((x): TransferInFlight => {
    const out = x.source_id === accountId;
    return { transferId: x.transfer_id, direction: out ? 'out' : 'in', otherAccountId: out ? x.destination_id : x.source_id, amount: Number(x.amount), currency: x.currency, debitedAt: x.debited_at };
  });
  return { account, transactions, inFlight, inFlightCapped: inFlight.length >= limit };
}
