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
}

export interface AccountReport {
  account: AccountProjection | null;
  /** Newest first. */
  transactions: TransactionProjection[];
}

export async function accountReport(db: Pool | PoolClient, accountId: string, limit = 20): Promise<AccountReport> {
  const a = await db.query(
    `SELECT account_id::text, owner_name, currency, balance, status, version, opened_at, updated_at, closed_at
       FROM account_projections WHERE account_id = $1`, [accountId]);
  if (a.rows.length === 0) return { account: null, transactions: [] };
  const r = a.rows[0];
  const account: AccountProjection = {
    accountId: r.account_id, ownerName: r.owner_name, currency: r.currency, balance: Number(r.balance), status: r.status,
    version: Number(r.version), openedAt: r.opened_at, updatedAt: r.updated_at, closedAt: r.closed_at,
  };
  const t = await db.query(
    `SELECT version, event_id::text, event_type, amount, balance_after, currency, command_id::text, recorded_at
       FROM transaction_projections WHERE account_id = $1 ORDER BY version DESC LIMIT $2`, [accountId, limit]);
  const transactions = t.rows.map((x): TransactionProjection => ({
    version: Number(x.version), eventId: x.event_id, eventType: x.event_type, amount: Number(x.amount),
    balanceAfter: Number(x.balance_after), currency: x.currency, commandId: x.command_id, recordedAt: x.recorded_at,
  }));
  return { account, transactions };
}
