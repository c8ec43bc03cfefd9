/**
 * `banking-es account <id>`: one account's projection and its latest
 * transactions, read from the read models (not the event store), and a
 * plain-text formatter for the CLI.
 */
import type { AccountReport } from '../db/sql/account-report';
import { fractionDigits } from '../domain/currency';
import { formatMoney } from '../domain/money';

export type { AccountProjection, AccountReport, TransactionProjection } from '../db/sql/account-report';
export { accountReport } from '../db/sql/account-report';

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
