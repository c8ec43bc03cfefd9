/**
 * `banking-es account <id>`: one account's projection and its latest
 * transactions, read from the read models (not the event store), and a
 * plain-text formatter for the CLI.
 */
import type { Pool, PoolClient } from 'pg';
import { fractionDigits } from '../domain/currency';
import { formatMoney } from '../domain/money';

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

function money(minor: number, currency: string): string {
  return `${formatMoney(minor, fractionDigits(currency) ?? 2)} ${currency}`;
}

export function formatAccountReport(accountId: string, rep: AccountReport): string {
  const a = rep.account;
  if (!a) return `account ${accountId}: no projection (unknown account, or the projector has not reached it yet)\n`;
  const lines = [
    `account  ${a.accountId}`,
    `owner    ${a.ownerName || '(unknown: history started after its creation)'}`,
    `balance  ${money(a.balance, a.currency)}`,
    `status   ${a.status}${a.closedAt ? ` since ${a.closedAt.toISOString()}` : ''}`,
    `version  ${a.version}`,
    `opened   ${a.openedAt.toISOString()}`,
    `updated  ${a.updatedAt.toISOString()}`,
    '',
    rep.transactions.length ? `latest ${rep.transactions.length} transactions:` : 'no transactions',
  ];
  if (rep.transactions.length) {
    const rows = rep.transactions.map((t) => [String(t.version), t.recordedAt.toISOString(), t.eventType, (t.amount > 0 ? '+' : '') + formatMoney(t.amount, fractionDigits(t.currency) ?? 2), formatMoney(t.balanceAfter, fractionDigits(t.currency) ?? 2)]);
    const head = ['version', 'recorded at', 'type', 'amount', 'balance'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]) => r.map((c, i) => (i >= 3 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
    lines.push(fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}
