/**
 * A deterministic workload of banking commands with its own model of the
 * outcome each must get, so a run can be checked: accounts are opened, then
 * deposits and withdrawals flow (some overdrawing, some malformed, some
 * re-sent duplicates). The model applies the same rules as the decider,
 * independently, in minor units.
 *
 * With `transferRatio`, transfers flow too: between random accounts, some
 * to accounts that were closed or never opened, some across currencies (a
 * tenth of the accounts are in EUR). A credit or a refund lands whenever the
 * transfer process gets to it, so the model keeps two balances per account:
 * `surely` (without the credits and refunds still on their way) and
 * `expected` (with them: what the account holds once all have landed). A
 * command is only generated when its outcome is the same whenever it is
 * decided: a withdrawal or a transfer out of at most `surely` is accepted;
 * one is refused only for more than any balance can ever reach, since a
 * credit generated later (on another partition) may land before it.
 */
import { randomUUID } from 'node:crypto';

export interface GenCommand {
  key: string;
  value: string;
  commandId: string;
  accountId: string;
  expect: 'accepted' | 'rejected' | 'duplicate';
  /** the reason a rejection must carry (docs/message-contracts.md) */
  reason?: string;
  /** a Transfer: a re-send is answered with the final outcome again, not `duplicate` */
  transfer?: boolean;
}

export interface GeneratorOptions {
  accounts: number;
  commands: number;        // total, including opens
  invalidRatio?: number;   // malformed commands (INVALID_COMMAND)
  duplicateRatio?: number; // re-sent commandIds
  seed?: number;
  /** 'uniform' or a Zipf exponent for hot-account skew. */
  skew?: 'uniform' | number;
  /** share of transfers among the commands after the opens (default 0: none, and the same sequence as before) */
  transferRatio?: number;
}

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cents = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;

export class Workload {
  /** the accounts opened and used (the closed ones are in closedIds) */
  readonly accountIds: string[];
  /** Expected balance per account in minor units once everything sent so far has landed. */
  readonly expected = new Map<string, number>();
  /** The balance every command sent so far leaves for sure, whatever credits and refunds are still on their way. */
  private readonly surely = new Map<string, number>();
  readonly currencyOf = new Map<string, string>();
  /** Opened, then closed at once (transfers only): destinations that refuse credits. */
  readonly closedIds: string[] = [];
  /** Never opened (transfers only): destinations that do not exist. */
  readonly missingIds: string[] = [];
  /** Transfers expected to be credited, and refused at the destination (then refunded). */
  transfers = { credited: 0, refunded: 0 };
  /** Transfers generated (first sends, re-sends not counted), whatever their outcome. */
  transferCommands = 0;
  private readonly openAndClose: string[] = [];
  private readonly rand: () => number;
  private readonly sent: GenCommand[] = [];
  private produced = 0;
  private readonly zipfCdf?: Float64Array;

  constructor(private readonly opts: GeneratorOptions) {
    this.rand = prng(opts.seed ?? 42);
    this.accountIds = Array.from({ length: opts.accounts }, () => randomUUID());
    if (opts.transferRatio) {
      const few = Math.max(2, Math.floor(opts.accounts / 50));
      this.closedIds.push(...Array.from({ length: few }, () => randomUUID()));
      this.missingIds.push(...Array.from({ length: few }, () => randomUUID()));
      this.openAndClose.push(...this.closedIds);
    }
    if (typeof opts.skew === 'number') {
      const w = this.accountIds.map((_, i) => 1 / Math.pow(i + 1, opts.skew as number));
      const total = w.reduce((a, b) => a + b, 0);
      this.zipfCdf = new Float64Array(w.length);
      let acc = 0;
      w.forEach((x, i) => { acc += x / total; this.zipfCdf![i] = acc; });
    }
  }

  /**
   * Commands that set the accounts up (opens, and the opens and closes of closedIds) and must be
   * answered before the rest is sent: with transfers, a credit must find its destination opened.
   * 0 without transfers: every command is on its own account's partition, in order.
   */
  get setupCommands(): number {
    return this.opts.transferRatio ? this.accountIds.length + 2 * this.closedIds.length : 0;
  }

  get total(): number {
    return this.opts.commands;
  }

  get done(): boolean {
    return this.produced >= this.opts.commands;
  }

  private pickAccount(): string {
    if (!this.zipfCdf) return this.accountIds[Math.floor(this.rand() * this.accountIds.length)];
    const r = this.rand();
    let lo = 0, hi = this.zipfCdf.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.zipfCdf[mid] < r) lo = mid + 1; else hi = mid; }
    return this.accountIds[lo];
  }

  /** The next command, or undefined when the workload is exhausted. */
  next(): GenCommand | undefined {
    if (this.done) return undefined;
    const i = this.produced++;
    if (i < this.accountIds.length) {
      const accountId = this.accountIds[i];
      const initial = Math.floor(this.rand() * 100_000);
      // with transfers, every tenth account is in EUR
      const currency = this.opts.transferRatio && i % 10 === 9 ? 'EUR' : 'USD';
      this.set(accountId, initial, initial);
      this.currencyOf.set(accountId, currency);
      return this.remember({ accountId, expect: 'accepted', body: { type: 'OpenAccount', ownerName: `Owner ${i}`, currency, initialBalance: cents(initial) } });
    }
    const closing = this.openAndClose.shift();
    if (closing !== undefined) return this.openThenClose(closing);
    const r = this.rand();
    if (this.sent.length > 0 && r < (this.opts.duplicateRatio ?? 0.01)) {
      const prev = this.sent[Math.floor(this.rand() * this.sent.length)];
      // a Transfer has one final outcome, whoever asks
      return prev.transfer ? { ...prev } : { ...prev, expect: 'duplicate', reason: undefined };
    }
    const accountId = this.pickAccount();
    if (this.opts.transferRatio && this.rand() < this.opts.transferRatio) return this.transfer(accountId);
    if (r < (this.opts.duplicateRatio ?? 0.01) + (this.opts.invalidRatio ?? 0.01)) {
      // three decimals: readable, and invalid in USD and EUR, the only currencies the model opens
      return this.remember({ accountId, expect: 'rejected', reason: 'INVALID_COMMAND', body: { type: 'Deposit', amount: '1.001' } });
    }
    const balance = this.expected.get(accountId)!;
    const sure = this.surely.get(accountId)!;
    const amount = 1 + Math.floor(this.rand() * 5_000);
    if (this.rand() < 0.5 || (amount > sure && amount <= balance)) {
      // a deposit; or a withdrawal whose outcome would depend on when credits land: a deposit instead
      this.set(accountId, sure + amount, balance + amount);
      return this.remember({ accountId, expect: 'accepted', body: { type: 'Deposit', amount: cents(amount) } });
    }
    if (amount > balance) return this.remember({ accountId, expect: 'rejected', reason: 'INSUFFICIENT_FUNDS', body: { type: 'Withdraw', amount: cents(this.opts.transferRatio ? this.beyondAnyBalance : amount) } });
    this.set(accountId, sure - amount, balance - amount);
    return this.remember({ accountId, expect: 'accepted', body: { type: 'Withdraw', amount: cents(amount) } });
  }

  /**
   * More than every account of the run together can ever hold (every opening and every deposit): a
   * withdrawal or transfer of it is refused whenever it is decided. `expected` is no such bound: a
   * credit from a transfer generated later, out of an account on another partition, may land before
   * this command is decided (test/dev/generator-transfers.unit.test.ts interleaves the partitions).
   */
  private get beyondAnyBalance(): number {
    return this.opts.accounts * 100_000 + this.opts.commands * 5_000 + 1;
  }

  private set(accountId: string, surely: number, expected: number): void {
    this.surely.set(accountId, surely);
    this.expected.set(accountId, expected);
  }

  /** An account that exists only to be closed: opened empty, closed right after (before anything is sent to it). */
  private openThenClose(accountId: string): GenCommand {
    if (!this.expected.has(accountId)) {
      this.set(accountId, 0, 0);
      this.currencyOf.set(accountId, 'USD');
      this.openAndClose.unshift(accountId); // its close comes next
      return this.remember({ accountId, expect: 'accepted', body: { type: 'OpenAccount', ownerName: 'Closed soon', currency: 'USD', initialBalance: '0' } });
    }
    return this.remember({ accountId, expect: 'accepted', body: { type: 'CloseAccount', reason: 'demo: a destination that refuses credits' } });
  }

  /** A transfer out of `from`: to an open account in its currency mostly; some refused at the destination. */
  private transfer(from: string): GenCommand {
    this.transferCommands++;
    const y = this.rand();
    const currency = this.currencyOf.get(from)!;
    let to: string;
    if (y < 0.04) to = this.missingIds[Math.floor(this.rand() * this.missingIds.length)];
    else if (y < 0.08) to = this.closedIds[Math.floor(this.rand() * this.closedIds.length)];
    else {
      to = this.pickAccount();
      if (to === from) to = this.accountIds[(this.accountIds.indexOf(from) + 1) % this.accountIds.length];
    }
    const sure = this.surely.get(from)!, balance = this.expected.get(from)!;
    let amount = 1 + Math.floor(this.rand() * 5_000);
    // never decided by timing: what is surely there, or more than any balance can ever reach
    if (amount > sure) amount = amount <= balance && sure >= 1 ? Math.max(1, Math.floor(sure / 2)) : this.beyondAnyBalance;
    const body = { type: 'Transfer', toAccountId: to, amount: cents(amount) };
    if (amount > sure) return this.remember({ accountId: from, expect: 'rejected', reason: 'INSUFFICIENT_FUNDS', body, transfer: true });
    // in the order the destination checks them (decideCredit)
    const refused = !this.expected.has(to) ? 'DESTINATION_NOT_FOUND' : this.closedIds.includes(to) ? 'DESTINATION_CLOSED'
      : this.currencyOf.get(to) !== currency ? 'CURRENCY_MISMATCH' : undefined;
    if (refused) {
      // debited now, refunded when the destination has refused: the money is back in the end
      this.surely.set(from, sure - amount);
      this.transfers.refunded++;
      return this.remember({ accountId: from, expect: 'rejected', reason: refused, body, transfer: true });
    }
    this.set(from, sure - amount, balance - amount);
    this.expected.set(to, this.expected.get(to)! + amount); // surely(to) is unchanged until it lands
    this.transfers.credited++;
    return this.remember({ accountId: from, expect: 'accepted', body, transfer: true });
  }

  private remember(c: { accountId: string; expect: GenCommand['expect']; reason?: string; body: Record<string, unknown>; transfer?: boolean }): GenCommand {
    const commandId = randomUUID();
    const cmd: GenCommand = { key: c.accountId, commandId, accountId: c.accountId, expect: c.expect, value: JSON.stringify({ commandId, accountId: c.accountId, ...c.body }) };
    if (c.reason) cmd.reason = c.reason;
    if (c.transfer) cmd.transfer = true;
    if (this.sent.length < 100_000) this.sent.push(cmd);
    else this.sent[Math.floor(this.rand() * this.sent.length)] = cmd;
    return cmd;
  }
}

export { cents as formatCents };
