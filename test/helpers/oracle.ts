/**
 * A seeded command stream and its oracle: what the domain (docs/architecture.md §2.1, §4)
 * must make of every command, checked incrementally as outcomes arrive and,
 * at the end, against the event store.
 *
 * Built for long streams (millions of commands): command and account ids
 * encode their index (`<tag>-c000-4000-8000-<index>`), so expectations live in
 * typed arrays and an outcome finds its command without a map. Per account the
 * oracle keeps the running md5 of its accepted commands in version order; the
 * store check compares it with md5(string_agg(command_id ORDER BY version)),
 * which catches lost, duplicated and reordered events at once.
 *
 * The stream mixes opens, deposits, withdrawals (some overdrawn), closes
 * (mostly refused for a non-zero balance, sometimes accepted after emptying the
 * account), commands to unknown accounts, second opens, expectedVersion (right
 * and wrong) and re-sent commands (answered `duplicate` with the original
 * outcome). `expectedAccounts()` gives each account's final state, for the
 * read-model checks (verifyAccountProjections, verifyTransactionProjections).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { Client } from 'pg';
import { prng } from '../../dev/loadgen/generator';

export const REASONS = ['', 'INSUFFICIENT_FUNDS', 'ACCOUNT_NOT_FOUND', 'ACCOUNT_EXISTS', 'ACCOUNT_CLOSED', 'BALANCE_NOT_ZERO', 'VERSION_CONFLICT'] as const;
type Reason = (typeof REASONS)[number];
const TYPES = ['OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount'] as const;
type CmdType = (typeof TYPES)[number];

const ACCEPTED = 1;
const REJECTED = 2;

/** the load generator's seeded PRNG (mulberry32), re-exported for the tests */
export const rng = prng;

export const cents = (minor: number): string => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;

interface AccountModel {
  id: string;
  opened: boolean;
  closed: boolean;
  version: number;
  balance: number;
  history: number[]; // indices of commands sent to it, for re-sends
  acceptedMd5: Hash;
  accepted: number;
  lastFirstOutcome: number; // index of the latest command whose first outcome arrived
}

export interface WireCommand { index: number; accountId: string; commandId: string; json: string }

export interface OutcomeJson {
  commandId?: string; accountId?: string; type?: string; status?: string; originalStatus?: string;
  reason?: string; version?: number; balance?: string;
}

export interface OracleOptions {
  accounts: number;
  seed: number;
  /** Share of re-sent commands (default 0.03). */
  resendRate?: number;
}

class Grow {
  u8 = new Uint8Array(1024);
  u16 = new Uint16Array(1024);
  u16b = new Uint16Array(1024);
  u32 = new Uint32Array(1024);
  u32b = new Uint32Array(1024);
  f64 = new Float64Array(1024);
  ensure(n: number): void {
    if (n < this.u8.length) return;
    let len = this.u8.length;
    while (len <= n) len *= 2;
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(a: T, C: new (l: number) => T): T => { const b = new C(len); b.set(a); return b; };
    this.u8 = grow(this.u8, Uint8Array);
    this.u16 = grow(this.u16, Uint16Array);
    this.u16b = grow(this.u16b, Uint16Array);
    this.u32 = grow(this.u32, Uint32Array);
    this.u32b = grow(this.u32b, Uint32Array);
    this.f64 = grow(this.f64, Float64Array);
  }
}

export class CommandOracle {
  readonly tag: string;
  private readonly next: () => number;
  private readonly accounts: AccountModel[];
  private readonly resendRate: number;
  // per original command index: u8 = status | reason << 2 | type << 5; u16 = outcomes seen; u16b = re-sends; u32 = account; u32b = version; f64 = balance
  private readonly a = new Grow();
  private count = 0;
  /** Commands handed out, re-sends included (= outcomes owed). */
  sent = 0;
  /** Outcomes received that were owed (at most 1 + re-sends per command). */
  satisfied = 0;
  /** Outcome messages received in all. */
  received = 0;
  /** Outcomes beyond those owed: re-published after a crash or a rebalance (at-least-once, docs/architecture.md §2.2). */
  republished = 0;
  duplicates = 0;
  readonly mismatches: string[] = [];
  mismatchCount = 0;
  /** of mismatchCount: a command's first outcome arriving after a later command's on the same account */
  reorderCount = 0;
  /** outcomes `duplicate` of a command never re-sent, after its first outcome (an original is answered again with its own status) */
  duplicateOfOriginal = 0;

  constructor(opts: OracleOptions) {
    this.tag = randomBytes(4).toString('hex');
    this.next = rng(opts.seed);
    this.resendRate = opts.resendRate ?? 0.03;
    this.accounts = Array.from({ length: opts.accounts }, (_, i) => ({
      id: `${this.tag}-a000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      opened: false, closed: false, version: 0, balance: 0, history: [], acceptedMd5: createHash('md5'), accepted: 0, lastFirstOutcome: -1,
    }));
  }

  commandId(index: number): string {
    return `${this.tag}-c000-4000-8000-${index.toString(16).padStart(12, '0')}`;
  }

  private indexOf(commandId: string): number {
    if (commandId.length !== 36 || !commandId.startsWith(`${this.tag}-c000-4000-8000-`)) return -1;
    const n = parseInt(commandId.slice(24), 16);
    return Number.isSafeInteger(n) && n < this.count ? n : -1;
  }

  private record(acc: number, type: CmdType, status: number, reason: Reason, version: number, balance: number): number {
    const i = this.count++;
    this.a.ensure(i);
    this.a.u8[i] = status | (REASONS.indexOf(reason) << 2) | (TYPES.indexOf(type) << 5);
    this.a.u32[i] = acc;
    this.a.u32b[i] = version;
    this.a.f64[i] = balance;
    return i;
  }

  /** The next command of the stream, with its expected outcome recorded. */
  nextCommand(): WireCommand {
    const r = this.next;
    const acc = Math.floor(r() * this.accounts.length);
    const a = this.accounts[acc];
    const roll = r();
    this.sent++;
    if (a.history.length > 0 && roll < this.resendRate) {
      this.sent--;
      return this.resend(a.history[Math.floor(r() * a.history.length)]);
    }
    let i: number;
    let extra = '';
    const accept = (type: CmdType) => {
      a.version++;
      const idx = this.record(acc, type, ACCEPTED, '', a.version, a.balance);
      a.acceptedMd5.update(`${this.commandId(idx)};`);
      a.accepted++;
      return idx;
    };
    const rejectAs = (type: CmdType, reason: Reason) => this.record(acc, type, REJECTED, reason, 0, 0);
    if (!a.opened) {
      if (roll < 0.06) {
        i = rejectAs('Deposit', 'ACCOUNT_NOT_FOUND');
        extra = `"amount":"1.00"`;
      } else {
        const initial = Math.floor(r() * 10000);
        a.opened = true;
        a.balance = initial;
        i = accept('OpenAccount');
        extra = `"ownerName":"owner ${acc}","currency":"USD","initialBalance":"${cents(initial)}"`;
      }
    } else {
      const op = r();
      const ev = r() < 0.04 ? (r() < 0.5 ? a.version : a.version + 1 + Math.floor(r() * 3)) : -1;
      if (ev >= 0) extra = `"expectedVersion":${ev},`;
      const conflict = ev >= 0 && ev !== a.version;
      if (op < 0.02) {
        i = conflict ? rejectAs('OpenAccount', 'VERSION_CONFLICT') : rejectAs('OpenAccount', 'ACCOUNT_EXISTS');
        extra += `"ownerName":"again","currency":"USD","initialBalance":"0"`;
      } else if (op < 0.05) {
        if (conflict) i = rejectAs('CloseAccount', 'VERSION_CONFLICT');
        else if (a.closed) i = rejectAs('CloseAccount', 'ACCOUNT_CLOSED');
        else if (a.balance !== 0) i = rejectAs('CloseAccount', 'BALANCE_NOT_ZERO');
        else { a.closed = true; i = accept('CloseAccount'); }
        extra += `"reason":"test"`;
      } else if (op < 0.55) {
        const amount = 1 + Math.floor(r() * 5000);
        if (conflict) i = rejectAs('Deposit', 'VERSION_CONFLICT');
        else if (a.closed) i = rejectAs('Deposit', 'ACCOUNT_CLOSED');
        else { a.balance += amount; i = accept('Deposit'); }
        extra += `"amount":"${cents(amount)}"`;
      } else {
        // now and then empty the account exactly, so a later close is accepted
        const amount = op > 0.985 && a.balance > 0 ? a.balance : 1 + Math.floor(r() * 8000);
        if (conflict) i = rejectAs('Withdraw', 'VERSION_CONFLICT');
        else if (a.closed) i = rejectAs('Withdraw', 'ACCOUNT_CLOSED');
        else if (amount > a.balance) i = rejectAs('Withdraw', 'INSUFFICIENT_FUNDS');
        else { a.balance -= amount; i = accept('Withdraw'); }
        extra += `"amount":"${cents(amount)}"`;
      }
    }
    a.history.push(i);
    const type = TYPES[this.a.u8[i] >> 5];
    return { index: i, accountId: a.id, commandId: this.commandId(i), json: `{"commandId":"${this.commandId(i)}","type":"${type}","accountId":"${a.id}",${extra}}` };
  }

  /** Sends command `index` (already sent) again: it is owed one more outcome, a duplicate of the first. */
  resend(index: number): WireCommand {
    if (index < 0 || index >= this.count) throw new Error(`no command #${index}`);
    this.sent++;
    this.a.u16b[index]++;
    // an outcome counted as re-published may already pay for this re-send
    if (this.a.u16[index] >= 1 + this.a.u16b[index]) { this.satisfied++; this.republished--; }
    return this.wire(index);
  }

  /** Distinct commands handed out so far. */
  get distinct(): number {
    return this.count;
  }

  private wire(i: number): WireCommand {
    // a re-send is byte-identical to the original only in its id; the fields do not matter for a duplicate
    const a = this.accounts[this.a.u32[i]];
    const type = TYPES[this.a.u8[i] >> 5];
    const body = type === 'OpenAccount' ? '"ownerName":"resent","currency":"USD","initialBalance":"0"' : type === 'CloseAccount' ? '"reason":"resent"' : '"amount":"1.00"';
    return { index: i, accountId: a.id, commandId: this.commandId(i), json: `{"commandId":"${this.commandId(i)}","type":"${type}","accountId":"${a.id}",${body}}` };
  }

  private mismatch(s: string): void {
    this.mismatchCount++;
    if (this.mismatches.length < 20) this.mismatches.push(s);
  }

  /** Checks one outcome message (docs/architecture.md §2.2) against the expectation of its command. */
  observe(o: OutcomeJson | undefined): void {
    this.received++;
    const i = o?.commandId ? this.indexOf(o.commandId) : -1;
    if (!o || i < 0) return this.mismatch(`outcome for an unknown command: ${JSON.stringify(o)}`);
    const meta = this.a.u8[i];
    const acc = this.accounts[this.a.u32[i]];
    const type = TYPES[meta >> 5];
    const want = (meta & 3) === ACCEPTED
      ? { status: 'accepted', version: this.a.u32b[i], balance: cents(this.a.f64[i]) }
      : { status: 'rejected', reason: REASONS[(meta >> 2) & 7] };
    const status = o.status === 'duplicate' ? o.originalStatus : o.status;
    const got = status === 'accepted' ? { status, version: o.version, balance: o.balance } : { status, reason: o.reason };
    if (JSON.stringify(got) !== JSON.stringify(want) || o.accountId !== acc.id || o.type !== type) {
      this.mismatch(`${type} #${i}: want ${JSON.stringify(want)}, got ${JSON.stringify(o)}`);
    }
    const seen = ++this.a.u16[i];
    if (o.status === 'duplicate') this.duplicates++;
    if (o.status === 'duplicate' && this.a.u16b[i] === 0 && seen > 1) this.duplicateOfOriginal++;
    if (seen === 1) {
      if (o.status === 'duplicate' && this.a.u16b[i] === 0) this.mismatch(`first outcome of #${i} (never re-sent) is a duplicate: ${JSON.stringify(o)}`);
      if (i < acc.lastFirstOutcome) {
        this.reorderCount++;
        this.mismatch(`outcome of #${i} arrived after that of #${acc.lastFirstOutcome} on the same account (reordered)`);
      }
      acc.lastFirstOutcome = Math.max(acc.lastFirstOutcome, i);
    }
    if (seen <= 1 + this.a.u16b[i]) this.satisfied++;
    else this.republished++;
  }

  /** Every command sent has all the outcomes it is owed. */
  get complete(): boolean {
    return this.satisfied >= this.sent;
  }

  /** Commands sent and not yet answered. */
  get outstanding(): number {
    return this.sent - this.satisfied;
  }

  /** Original commands whose outcomes are missing, for failure messages. */
  missing(limit = 5): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count && out.length < limit; i++) if (this.a.u16[i] < 1 + this.a.u16b[i]) out.push(`#${i} ${TYPES[this.a.u8[i] >> 5]} ${this.commandId(i)} (${this.a.u16[i]}/${1 + this.a.u16b[i]})`);
    return out;
  }

  /** Final state per opened account: for account_projections checks. */
  expectedAccounts(): Array<{ accountId: string; version: number; balance: number; status: 'open' | 'closed' }> {
    return this.accounts.filter((a) => a.opened).map((a) => ({ accountId: a.id, version: a.version, balance: a.balance, status: a.closed ? 'closed' : 'open' }));
  }

  /**
   * The event store against the oracle: per account versions 1..n without
   * gaps, the accepted commands in order (md5 of the sequence), the final
   * balance; every rejection row with its reason; envelopes agree with rows.
   */
  async verifyStore(pg: Client): Promise<string[]> {
    const problems: string[] = [];
    const { rows } = await pg.query<{ account_id: string; n: number; min: number; max: number; seq: string; balance: string }>(
      `SELECT account_id::text, count(*)::int AS n, min(version)::int AS min, max(version)::int AS max,
              md5(string_agg(command_id::text || ';', '' ORDER BY version)) AS seq,
              (array_agg(payload->'data'->>'balanceAfter' ORDER BY version DESC))[1] AS balance
         FROM events GROUP BY account_id`);
    const byId = new Map(this.accounts.map((a) => [a.id, a]));
    const seenAccounts = new Set<string>();
    for (const r of rows) {
      const a = byId.get(r.account_id);
      if (!a) { problems.push(`events for an unknown account ${r.account_id}`); continue; }
      seenAccounts.add(a.id);
      const seq = a.acceptedMd5.copy().digest('hex');
      if (r.n !== a.accepted || r.min !== 1 || r.max !== a.version) problems.push(`${a.id}: ${r.n} events, versions ${r.min}..${r.max}; expected ${a.accepted}, 1..${a.version}`);
      else if (r.seq !== seq) problems.push(`${a.id}: events are not the accepted commands in order (lost, duplicated or reordered)`);
      if (r.balance !== String(a.balance)) problems.push(`${a.id}: balance ${r.balance}, expected ${a.balance}`);
    }
    for (const a of this.accounts) if (a.accepted > 0 && !seenAccounts.has(a.id)) problems.push(`${a.id}: no events, expected ${a.accepted}`);

    const rej = await pg.query<{ id: string; reason: string }>('SELECT command_id::text AS id, reason FROM command_rejections');
    let expectedRejections = 0;
    for (let i = 0; i < this.count; i++) if ((this.a.u8[i] & 3) === REJECTED) expectedRejections++;
    if (rej.rows.length !== expectedRejections) problems.push(`${rej.rows.length} rejection rows, expected ${expectedRejections}`);
    for (const r of rej.rows) {
      const i = this.indexOf(r.id);
      if (i < 0 || (this.a.u8[i] & 3) !== REJECTED || REASONS[(this.a.u8[i] >> 2) & 7] !== r.reason) {
        problems.push(`rejection row ${r.id} ${r.reason} is not expected`);
        if (problems.length > 20) break;
      }
    }
    const { rows: [env] } = await pg.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE (payload->>'version')::bigint <> version OR (payload->>'commandId')::uuid <> command_id OR (payload->>'accountId')::uuid <> account_id");
    if (env.n !== 0) problems.push(`${env.n} events whose envelope disagrees with its row`);
    return problems;
  }

  /** One line for logs and docs. */
  summary(): string {
    return `${this.sent} commands sent (${this.count} distinct), ${this.received} outcomes read: ${this.duplicates} duplicates, ${this.republished} re-published, ${this.mismatchCount} mismatches`;
  }
}

/**
 * account_projections against the oracle: every opened account at its final
 * version, balance (minor units) and status, and no row for any other account.
 */
export async function verifyAccountProjections(pg: Client, oracle: CommandOracle, limit = 20): Promise<string[]> {
  const problems: string[] = [];
  const { rows } = await pg.query<{ id: string; version: string; balance: string; status: string }>('SELECT account_id::text AS id, version::text, balance::text, status FROM account_projections');
  const got = new Map(rows.map((r) => [r.id, r]));
  const want = oracle.expectedAccounts();
  let n = 0;
  const problem = (s: string) => { if (n++ < limit) problems.push(s); };
  for (const a of want) {
    const r = got.get(a.accountId);
    got.delete(a.accountId);
    if (!r) problem(`${a.accountId}: no projection`);
    else if (Number(r.version) !== a.version || Number(r.balance) !== a.balance || r.status !== a.status) problem(`${a.accountId}: projection ${JSON.stringify(r)}, expected ${JSON.stringify(a)}`);
  }
  for (const r of got.values()) problem(`${r.id}: projected, but the oracle never opened it: ${JSON.stringify(r)}`);
  if (n > limit) problems.push(`… ${n} account projection problems in all`);
  return problems;
}

/**
 * transaction_projections against a fold of the events table (docs/projections.md):
 * one row per money movement (AccountCreated with its initial balance,
 * MoneyDeposited positive, MoneyWithdrawn negative; AccountClosed none), with
 * the event's id, type, command, currency and recordedAt, balance_after from
 * the event and amount = the change of balanceAfter since the previous event.
 * The fold is also checked against each event's own amount (USD: cents) and
 * sign, so it cross-checks the events too. Empty = equal.
 */
export async function verifyTransactionProjections(pg: Client, limit = 20): Promise<string[]> {
  const { rows } = await pg.query<{ account_id: string; version: string; problem: string; want: string | null; got: string | null; total: number }>(
    `WITH folded AS (
       SELECT account_id, version, event_id, event_type, command_id,
              (payload->>'recordedAt')::timestamptz AS recorded_at,
              payload->'data'->>'currency' AS currency,
              (payload->'data'->>'balanceAfter')::bigint AS balance_after,
              (payload->'data'->>'balanceAfter')::bigint
                - coalesce(lag((payload->'data'->>'balanceAfter')::bigint) OVER (PARTITION BY account_id ORDER BY version), 0) AS amount,
              coalesce(payload->'data'->>'amount', payload->'data'->>'initialBalance') AS data_amount
         FROM events),
     want AS (SELECT * FROM folded WHERE event_type <> 'AccountClosed'),
     diff AS (
       SELECT coalesce(w.account_id, t.account_id)::text AS account_id, coalesce(w.version, t.version)::text AS version,
              CASE
                WHEN t.account_id IS NULL THEN 'missing'
                WHEN w.account_id IS NULL THEN 'not a money movement in the event store'
                WHEN (w.event_type = 'AccountCreated' AND w.amount < 0) OR (w.event_type = 'MoneyDeposited' AND w.amount <= 0)
                  OR (w.event_type = 'MoneyWithdrawn' AND w.amount >= 0) THEN 'event store: balanceAfter moves the wrong way for its type'
                WHEN w.currency = 'USD' AND abs(w.amount) <> round(w.data_amount::numeric * 100) THEN 'event store: balanceAfter does not move by the event amount'
                WHEN (w.event_id, w.event_type, w.amount, w.balance_after, w.currency, w.command_id, w.recorded_at)
                     IS DISTINCT FROM (t.event_id, t.event_type, t.amount, t.balance_after, t.currency, t.command_id, t.recorded_at) THEN 'differs'
              END AS problem,
              CASE WHEN w.account_id IS NOT NULL THEN json_build_object('event_type', w.event_type, 'amount', w.amount, 'balance_after', w.balance_after, 'data_amount', w.data_amount, 'event_id', w.event_id, 'command_id', w.command_id, 'currency', w.currency, 'recorded_at', w.recorded_at)::text END AS want,
              CASE WHEN t.account_id IS NOT NULL THEN json_build_object('event_type', t.event_type, 'amount', t.amount, 'balance_after', t.balance_after, 'event_id', t.event_id, 'command_id', t.command_id, 'currency', t.currency, 'recorded_at', t.recorded_at)::text END AS got
         FROM want w FULL JOIN transaction_projections t ON t.account_id = w.account_id AND t.version = w.version)
     SELECT *, count(*) OVER ()::int AS total FROM diff WHERE problem IS NOT NULL ORDER BY account_id, version::bigint LIMIT $1`,
    [limit]);
  const problems = rows.map((r) => `transaction ${r.account_id}/${r.version}: ${r.problem}; want ${r.want ?? '-'}, got ${r.got ?? '-'}`);
  if (rows.length > 0 && rows[0].total > rows.length) problems.push(`… ${rows[0].total} transaction projection problems in all`);
  return problems;
}
