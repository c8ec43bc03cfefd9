/**
 * Event histories for projection tests, made by the domain decider itself
 * (so every event is one the command pipeline could have written), in the
 * docs/architecture.md §2.4 envelope, plus an independent fold of such a history into the
 * read models: amounts come from consecutive balanceAfter values, not from
 * parsing the amount field as the projector does, so the two cross-check.
 * Pure: no services.
 */
import { decide } from '../../src/domain/decider';
import { fractionDigits } from '../../src/domain/currency';
import { formatMoney } from '../../src/domain/money';
import { SCHEMA_VERSION, encodeEnvelope, type EventEnvelope } from '../../src/codec/envelope';
import type { AccountState, Command } from '../../src/domain/types';
import { prng } from '../../dev/loadgen/generator';

/** the load generator's seeded PRNG (mulberry32), re-exported for the tests */
export const rng = prng;

export function uuidFrom(next: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(next() * 4)];
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

export interface HistoryEvent {
  envelope: EventEnvelope;
  /** encodeEnvelope(envelope): the bytes stored in events.payload and produced to the topic. */
  json: string;
}

export interface HistoryOptions {
  accounts: number;
  commands: number;
  seed: number;
  /** recordedAt of the first event; later ones step by 1 ms. */
  startMs?: number;
  currencies?: string[];
}

/**
 * Decides `commands` random commands over `accounts` accounts and returns the
 * accepted events in decision order (accounts interleaved, each in version
 * order). Some accounts are emptied and closed.
 */
export function generateHistory(o: HistoryOptions): HistoryEvent[] {
  const next = rng(o.seed);
  const currencies = o.currencies ?? ['USD', 'EUR', 'JPY', 'BHD'];
  const ids = Array.from({ length: o.accounts }, () => uuidFrom(next));
  const states = new Map<string, AccountState | null>(ids.map((id) => [id, null]));
  const out: HistoryEvent[] = [];
  let at = o.startMs ?? Date.UTC(2024, 0, 1);
  for (let i = 0; i < o.commands; i++) {
    const accountId = ids[Math.floor(next() * ids.length)];
    const s = states.get(accountId) ?? null;
    const commandId = uuidFrom(next);
    let c: Command;
    if (s === null) {
      const currency = currencies[Math.floor(next() * currencies.length)];
      const digits = fractionDigits(currency)!;
      c = { commandId, accountId, type: 'OpenAccount', ownerName: `Owner ${accountId.slice(0, 6)} ü`, currency, initialBalance: formatMoney(Math.floor(next() * 100000), digits) };
    } else if (s.status === 'closed') {
      continue;
    } else {
      const digits = fractionDigits(s.currency)!;
      const r = next();
      if (r < 0.5) c = { commandId, accountId, type: 'Deposit', amount: formatMoney(1 + Math.floor(next() * 50000), digits) };
      else if (r < 0.97) c = { commandId, accountId, type: 'Withdraw', amount: formatMoney(1 + Math.floor(next() * 60000), digits) };
      else if (s.balance > 0) c = { commandId, accountId, type: 'Withdraw', amount: formatMoney(s.balance, digits) };
      else c = { commandId, accountId, type: 'CloseAccount', reason: 'done' };
    }
    const d = decide(s, c);
    if (!d.accepted) continue;
    states.set(accountId, d.state);
    const envelope: EventEnvelope = {
      eventId: uuidFrom(next), accountId, version: d.event.version, type: d.event.type,
      data: d.event.data as unknown as Record<string, unknown>, commandId, recordedAt: new Date(at++).toISOString(), schemaVersion: SCHEMA_VERSION,
    };
    out.push({ envelope, json: encodeEnvelope(envelope) });
  }
  return out;
}

export interface ExpectedAccount {
  account_id: string; owner_name: string; currency: string; balance: string; status: string; version: string;
  opened_at: string; updated_at: string; closed_at: string | null;
}
export interface ExpectedTransaction {
  account_id: string; version: string; event_id: string; event_type: string; amount: string; balance_after: string;
  currency: string; command_id: string; recorded_at: string; transfer_id: string | null; counterparty_id: string | null;
}

/** The read models a complete history folds into, as text columns (the shape of the comparison queries). */
export function foldHistory(events: EventEnvelope[]): { accounts: Map<string, ExpectedAccount>; transactions: Map<string, ExpectedTransaction> } {
  const byAccount = new Map<string, EventEnvelope[]>();
  for (const e of events) {
    const l = byAccount.get(e.accountId) ?? [];
    l.push(e);
    byAccount.set(e.accountId, l);
  }
  const accounts = new Map<string, ExpectedAccount>();
  const transactions = new Map<string, ExpectedTransaction>();
  const iso = (s: string) => new Date(s).toISOString();
  for (const [id, list] of byAccount) {
    list.sort((a, b) => a.version - b.version);
    list.forEach((e, i) => { if (e.version !== i + 1) throw new Error(`history of ${id} is not contiguous at ${e.version}`); });
    const created = list[0];
    if (created.type !== 'AccountCreated') throw new Error(`history of ${id} does not start with AccountCreated`);
    const last = list[list.length - 1];
    let prev = 0n;
    for (const e of list) {
      const bal = BigInt(e.data.balanceAfter as string);
      if (e.type !== 'AccountClosed') {
        transactions.set(`${id}/${e.version}`, {
          account_id: id, version: String(e.version), event_id: e.eventId, event_type: e.type, amount: String(bal - prev),
          balance_after: String(bal), currency: e.data.currency as string, command_id: e.commandId, recorded_at: iso(e.recordedAt),
          transfer_id: (e.data.transferId as string | undefined) ?? null,
          counterparty_id: ((e.type === 'TransferCredited' ? e.data.fromAccountId : e.data.toAccountId) as string | undefined) ?? null,
        });
      }
      prev = bal;
    }
    accounts.set(id, {
      account_id: id, owner_name: created.data.ownerName as string, currency: last.data.currency as string,
      balance: last.data.balanceAfter as string, status: last.type === 'AccountClosed' ? 'closed' : 'open', version: String(last.version),
      opened_at: iso(created.recordedAt), updated_at: iso(last.recordedAt), closed_at: last.type === 'AccountClosed' ? iso(last.recordedAt) : null,
    });
  }
  return { accounts, transactions };
}
