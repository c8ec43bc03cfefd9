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

/** Columns padded to their widest cell; the columns in `right` are right-aligned. */
function table(head: string[], rows: string[][], right: number[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (right.includes(i) ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)];
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
  const amount = (minor: number, currency: string) => formatMoney(minor, fractionDigits(currency) ?? 2);
  if (rep.transactions.length) {
    // a transfer names the other account: to it (debited), from it (credited), or back from it (refunded)
    const other = (t: AccountReport['transactions'][number]) => (t.counterpartyId === null ? '' : `${t.eventType === 'TransferCredited' ? 'from' : t.eventType === 'TransferRefunded' ? 'back from' : 'to'} ${t.counterpartyId}`);
    const rows = rep.transactions.map((t) => [String(t.version), t.recordedAt.toISOString(), t.eventType, (t.amount > 0 ? '+' : '') + amount(t.amount, t.currency), amount(t.balanceAfter, t.currency), other(t)]);
    lines.push(...table(['version', 'recorded at', 'type', 'amount', 'balance', 'transfer'], rows, [3, 4]));
  }
  if (rep.inFlight.length) {
    // the list is as long as --limit at most: then it is the oldest of perhaps more
    const n = rep.inFlight.length;
    lines.push('', rep.inFlightCapped ? `the oldest ${n} transfers in flight (there may be more):` : `${n} transfer${n === 1 ? '' : 's'} in flight:`);
    const rows = rep.inFlight.map((t) => [t.debitedAt.toISOString(), t.direction === 'out' ? `to ${t.otherAccountId}` : `from ${t.otherAccountId}`, amount(t.amount, t.currency), t.transferId]);
    lines.push(...table(['debited at', 'transfer', 'amount', 'transfer id'], rows, [2]));
  }
  return lines.join('\n') + '\n';
}
