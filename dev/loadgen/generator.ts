/**
 * A deterministic workload of banking commands with its own model of the
 * outcome each must get, so a run can be checked: accounts are opened, then
 * deposits and withdrawals flow (some overdrawing, some malformed, some
 * re-sent duplicates). The model applies the same rules as the decider,
 * independently, in minor units.
 */
import { randomUUID } from 'node:crypto';

export interface GenCommand {
  key: string;
  value: string;
  commandId: string;
  accountId: string;
  expect: 'accepted' | 'rejected' | 'duplicate';
}

export interface GeneratorOptions {
  accounts: number;
  commands: number;        // total, including opens
  invalidRatio?: number;   // malformed commands (INVALID_COMMAND)
  duplicateRatio?: number; // re-sent commandIds
  seed?: number;
  /** 'uniform' or a Zipf exponent for hot-account skew. */
  skew?: 'uniform' | number;
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
  readonly accountIds: string[];
  /** Expected balance per account in minor units, as the model sees it after every command so far. */
  readonly expected = new Map<string, number>();
  private readonly rand: () => number;
  private readonly sent: GenCommand[] = [];
  private produced = 0;
  private readonly zipfCdf?: Float64Array;

  constructor(private readonly opts: GeneratorOptions) {
    this.rand = prng(opts.seed ?? 42);
    this.accountIds = Array.from({ length: opts.accounts }, () => randomUUID());
    if (typeof opts.skew === 'number') {
      const w = this.accountIds.map((_, i) => 1 / Math.pow(i + 1, opts.skew as number));
      const total = w.reduce((a, b) => a + b, 0);
      this.zipfCdf = new Float64Array(w.length);
      let acc = 0;
      w.forEach((x, i) => { acc += x / total; this.zipfCdf![i] = acc; });
    }
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
      this.expected.set(accountId, initial);
      return this.remember({ accountId, expect: 'accepted', body: { type: 'OpenAccount', ownerName: `Owner ${i}`, currency: 'USD', initialBalance: cents(initial) } });
    }
    const r = this.rand();
    if (this.sent.length > 0 && r < (this.opts.duplicateRatio ?? 0.01)) {
      const prev = this.sent[Math.floor(this.rand() * this.sent.length)];
      return { ...prev, expect: 'duplicate' };
    }
    const accountId = this.pickAccount();
    if (r < (this.opts.duplicateRatio ?? 0.01) + (this.opts.invalidRatio ?? 0.01)) {
      // three decimals in USD: readable, invalid
      return this.remember({ accountId, expect: 'rejected', body: { type: 'Deposit', amount: '1.001' } });
    }
    const balance = this.expected.get(accountId)!;
    const amount = 1 + Math.floor(this.rand() * 5_000);
    if (this.rand() < 0.5) {
      this.expected.set(accountId, balance + amount);
      return this.remember({ accountId, expect: 'accepted', body: { type: 'Deposit', amount: cents(amount) } });
    }
    if (amount > balance) return this.remember({ accountId, expect: 'rejected', body: { type: 'Withdraw', amount: cents(amount) } });
    this.expected.set(accountId, balance - amount);
    return this.remember({ accountId, expect: 'accepted', body: { type: 'Withdraw', amount: cents(amount) } });
  }

  private remember(c: { accountId: string; expect: GenCommand['expect']; body: Record<string, unknown> }): GenCommand {
    const commandId = randomUUID();
    const cmd: GenCommand = { key: c.accountId, commandId, accountId: c.accountId, expect: c.expect, value: JSON.stringify({ commandId, accountId: c.accountId, ...c.body }) };
    if (this.sent.length < 100_000) this.sent.push(cmd);
    else this.sent[Math.floor(this.rand() * this.sent.length)] = cmd;
    return cmd;
  }
}

export { cents as formatCents };
