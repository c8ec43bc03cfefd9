/**
 * A seeded stream of deposits, withdrawals and transfers between random
 * accounts (some to missing or closed accounts, some across currencies, some
 * closing their destination right behind them, re-sends among them), and the
 * check of what the ledger made of it. The order in which the command and
 * transfer roles decide is not deterministic, so the check is the ledger's
 * algebra, not one sequence:
 *
 * - every command has outcomes, and all of a command's outcomes agree (a
 *   repeat is identical but for processedAt; a Transfer has one final outcome);
 * - every account's balance in the event store is its opening balance plus
 *   its accepted deposits and transfers in, minus its accepted withdrawals and
 *   transfers out: an accepted transfer moved its amount exactly once, a
 *   refused one moved nothing in the end;
 * - the transfers table has nothing in flight, and its credited and refunded
 *   rows are exactly the accepted and destination-refused transfers;
 * - a transfer's final outcome reports its source as the events have it: the
 *   version and balance of its TransferDebited (accepted) or TransferRefunded
 *   (refused at the destination), for that transfer;
 * - per currency, the balances add up to openings plus deposits minus
 *   withdrawals; no (account, command) has two events; versions are 1..n.
 *
 * Used by transfers-crash (SIGKILLs of one daemon), transfers-two-instances
 * (two daemons sharing the partitions, one SIGKILLed), transfers-races (a few
 * hot accounts) and outcome-redelivery.
 */
import * as assert from 'uvu/assert';
import { cents, rng } from './oracle';
import { OutcomeTap, type Rig, sleep } from './reliability';
import { uuidFrom } from './event-history';
import { DESTINATION_REASONS as DESTINATION_REASON_LIST } from '../../src/domain/transfer';

const DESTINATION_REASONS = new Set<string>(DESTINATION_REASON_LIST);

/** How many accounts the stream uses: funded USD and EUR ones, empty closable ones, ids never opened. */
export interface LedgerPool { usd: number; eur: number; empty: number; missing: number }

interface Sent { type: string; accountId: string; to?: string; amount: number; json: string }
interface Out { commandId: string; type: string; status: string; originalStatus?: string; reason?: string; version?: number; balance?: string; toAccountId?: string; transferId?: string; processedAt?: string }

export class TransferLedger {
  private readonly next: () => number;
  private readonly sent = new Map<string, Sent>();
  private readonly outs = new Map<string, Out[]>();
  private readonly currencyOf = new Map<string, string>();
  private readonly opening = new Map<string, number>();
  private readonly usd: string[];
  private readonly eur: string[];
  private readonly empty: string[];
  private readonly missing: string[];
  private tap: OutcomeTap | undefined;
  private opens = 0;
  /** commands produced by stream() so far */
  produced = 0;

  private constructor(private readonly rig: Rig, seed: number, pool: LedgerPool) {
    this.next = rng(seed);
    const id = () => this.id();
    this.usd = Array.from({ length: pool.usd }, id);
    this.eur = Array.from({ length: pool.eur }, id);
    this.empty = Array.from({ length: pool.empty }, id);
    this.missing = Array.from({ length: pool.missing }, id);
  }

  /** Listens to the rig's outcomes from now on. A small `pool` makes every command race others on the same accounts. */
  static async open(rig: Rig, seed: number, pool: LedgerPool = { usd: 160, eur: 40, empty: 30, missing: 10 }): Promise<TransferLedger> {
    const l = new TransferLedger(rig, seed, pool);
    l.tap = await OutcomeTap.open(rig.brokers, rig.topics.results, rig.partitions, (o) => {
      const v = o as Out | undefined;
      if (!v?.commandId) return;
      const list = l.outs.get(v.commandId) ?? [];
      list.push(v);
      l.outs.set(v.commandId, list);
    });
    return l;
  }

  async close(): Promise<void> {
    await this.tap?.close();
  }

  private id(): string {
    return uuidFrom(this.next);
  }

  private pick<T>(a: readonly T[]): T {
    return a[Math.floor(this.next() * a.length)];
  }

  /** Commands sent (re-sends not counted) that have at least one outcome. */
  answered(): number {
    let n = 0;
    for (const k of this.sent.keys()) if (this.outs.has(k)) n++;
    return n;
  }

  get size(): number {
    return this.sent.size;
  }

  private async send(cmd: Record<string, unknown> & { commandId: string; accountId: string; type: string }, amount = 0, to?: string): Promise<void> {
    const json = JSON.stringify(cmd);
    this.sent.set(cmd.commandId, { type: cmd.type, accountId: cmd.accountId, to, amount, json });
    await this.rig.producer.send(this.rig.topics.commands, cmd.accountId, json);
  }

  /** USD and EUR accounts opened with a balance, closable ones opened empty (some ids are never opened); waits for every open's outcome. */
  async openAccounts(timeoutMs = 60000): Promise<void> {
    for (const [list, currency, balance] of [[this.usd, 'USD', 50000], [this.eur, 'EUR', 50000], [this.empty, 'USD', 0]] as const) {
      for (const a of list) {
        this.currencyOf.set(a, currency);
        this.opening.set(a, balance);
        await this.send({ commandId: this.id(), type: 'OpenAccount', accountId: a, ownerName: 'ledger', currency, initialBalance: cents(balance) });
      }
    }
    this.opens = this.sent.size;
    const by = Date.now() + timeoutMs;
    while (this.answered() < this.opens) { if (Date.now() > by) throw new Error('accounts not opened'); await sleep(50); }
  }

  /**
   * Produces `commands` in chunks of 100, `paceMs` apart, never more than 6,000 ahead of the outcomes:
   * 25% deposits, 20% withdrawals, 52% transfers, 3% closes of the empty accounts, and 3% re-sends;
   * half the transfers to an empty account have that account's close sent right behind them.
   * Goes on past `commands` while `more()` says so.
   */
  async stream(commands: number, paceMs: number, more: () => boolean = () => false): Promise<void> {
    const ids: string[] = [];
    const all = this.usd.concat(this.eur);
    while (this.produced < commands || more()) {
      while (this.produced - this.answered() + this.opens > 6000) await sleep(20);
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < 100 && (this.produced < commands || more()); i++, this.produced++) {
        const x = this.next();
        const commandId = this.id();
        if (x < 0.03 && ids.length) {
          // a re-send of an earlier command, byte for byte
          const old = this.sent.get(this.pick(ids))!;
          sends.push(this.rig.producer.send(this.rig.topics.commands, old.accountId, old.json));
          continue;
        }
        ids.push(commandId);
        if (x < 0.25) {
          const a = this.pick(all), amount = 1 + Math.floor(this.next() * 2000);
          sends.push(this.send({ commandId, type: 'Deposit', accountId: a, amount: cents(amount) }, amount));
        } else if (x < 0.45) {
          const a = this.pick(all), amount = 1 + Math.floor(this.next() * 40000);
          sends.push(this.send({ commandId, type: 'Withdraw', accountId: a, amount: cents(amount) }, amount));
        } else if (x < 0.97) {
          const from = this.pick(all);
          const y = this.next();
          const same = this.currencyOf.get(from) === 'USD' ? this.usd : this.eur, other = same === this.usd ? this.eur : this.usd;
          // mostly within a currency; some across, some to missing accounts, some to the empty (closable) ones
          const to = y < 0.8 ? this.pick(same) : y < 0.88 ? this.pick(other) : y < 0.93 ? this.pick(this.missing) : this.pick(this.empty);
          const amount = 1 + Math.floor(this.next() * 5000);
          sends.push(this.send({ commandId, type: 'Transfer', accountId: from, toAccountId: to, amount: cents(amount) }, amount, to));
          if (this.empty.includes(to) && this.next() < 0.5) {
            // its destination closed right behind it: the close and the credit race (refunded DESTINATION_CLOSED, or BALANCE_NOT_ZERO)
            const closeId = this.id();
            ids.push(closeId);
            sends.push(this.send({ commandId: closeId, type: 'CloseAccount', accountId: to }));
          }
        } else {
          // close an empty account: it may have been credited meanwhile (BALANCE_NOT_ZERO) or close under a transfer in flight to it
          sends.push(this.send({ commandId, type: 'CloseAccount', accountId: this.pick(this.empty) }));
        }
      }
      await Promise.all(sends);
      await sleep(paceMs);
    }
  }

  /** Waits until every command has an outcome, then a second for trailing re-publications. */
  async drain(timeoutMs = 120000): Promise<void> {
    const by = Date.now() + timeoutMs;
    while (this.answered() < this.sent.size) {
      if (Date.now() > by) throw new Error(`${this.sent.size - this.answered()} commands without an outcome, e.g. ${[...this.sent.keys()].filter((k) => !this.outs.has(k)).slice(0, 3).join(', ')}`);
      await sleep(100);
    }
    await sleep(1000);
  }

  /** The ledger's algebra (see the file comment), asserted; returns what the transfers came to. */
  async check(): Promise<{ transfers: number; credited: number; refunded: number }> {
    const expected = new Map(this.opening);
    const add = (a: string, v: number) => expected.set(a, (expected.get(a) ?? 0) + v);
    const moved = new Map<string, number>(); // currency -> deposits - withdrawals
    let credited = 0, refunded = 0, transfers = 0;
    const problems: string[] = [];
    const effective = (o: Out) => (o.status === 'duplicate' ? o.originalStatus : o.status);
    for (const [commandId, s] of this.sent) {
      const list = this.outs.get(commandId)!;
      const first = list[0];
      for (const o of list) {
        if (effective(o) !== effective(first) || o.reason !== first.reason || o.version !== first.version || o.balance !== first.balance || o.toAccountId !== first.toAccountId) {
          problems.push(`${s.type} ${commandId}: ${JSON.stringify(first)} then ${JSON.stringify(o)}`);
        }
      }
      if (s.type === 'Transfer') {
        transfers++;
        assert.ok(list.every((o) => o.status !== 'duplicate'), `a Transfer is answered with its final outcome: ${JSON.stringify(list)}`);
        if (first.status === 'accepted') { add(s.accountId, -s.amount); add(s.to!, s.amount); credited++; }
        else if (DESTINATION_REASONS.has(first.reason!)) refunded++;
      } else if (effective(first) === 'accepted') {
        const c = this.currencyOf.get(s.accountId)!;
        if (s.type === 'Deposit') { add(s.accountId, s.amount); moved.set(c, (moved.get(c) ?? 0) + s.amount); }
        if (s.type === 'Withdraw') { add(s.accountId, -s.amount); moved.set(c, (moved.get(c) ?? 0) - s.amount); }
      }
    }
    assert.equal(problems.slice(0, 5), [], `${problems.length} commands answered two ways`);

    const pg = this.rig.pg;
    const { rows } = await pg.query<{ account_id: string; balance: string; version: string; n: number }>(
      `SELECT DISTINCT ON (account_id) account_id, payload->'data'->>'balanceAfter' AS balance, version, count(*) OVER (PARTITION BY account_id)::int AS n
         FROM events ORDER BY account_id, version DESC`);
    const store = new Map(rows.map((x) => [x.account_id, x]));
    const wrong: string[] = [];
    for (const [a, want] of expected) {
      const got = store.get(a);
      if (Number(got?.balance) !== want) wrong.push(`${a}: store ${got?.balance}, outcomes say ${want}`);
      if (got && Number(got.version) !== got.n) wrong.push(`${a}: ${got.n} events up to version ${got.version}`);
    }
    assert.equal(wrong.slice(0, 5), [], `${wrong.length} accounts differ`);
    assert.ok(this.missing.every((a) => !store.has(a)), 'a missing destination stays missing');
    const { rows: [t] } = await pg.query<{ open: number; credited: number; refunded: number }>(
      `SELECT count(*) FILTER (WHERE settled IS NULL)::int AS open, count(*) FILTER (WHERE settled = 'credited')::int AS credited,
              count(*) FILTER (WHERE settled = 'refunded')::int AS refunded FROM transfers`);
    assert.equal(t, { open: 0, credited, refunded }, 'the transfers table: nothing in flight, one row per debited transfer');
    for (const c of ['USD', 'EUR']) {
      const accounts = [...this.currencyOf].filter(([, cc]) => cc === c).map(([a]) => a);
      const sum = accounts.reduce((s, a) => s + Number(store.get(a)?.balance ?? 0), 0);
      const open = accounts.reduce((s, a) => s + this.opening.get(a)!, 0);
      assert.is(sum, open + (moved.get(c) ?? 0), `${c} is conserved`);
    }
    const { rows: steps } = await pg.query<{ account_id: string; version: string; event_type: string; transfer_id: string; balance: string }>(
      `SELECT account_id, version, event_type, payload->'data'->>'transferId' AS transfer_id, payload->'data'->>'balanceAfter' AS balance
         FROM events WHERE event_type IN ('TransferDebited', 'TransferRefunded')`);
    const stepAt = new Map(steps.map((x) => [`${x.account_id}/${x.version}`, x]));
    const misreported: string[] = [];
    for (const [commandId, s] of this.sent) {
      const o = this.outs.get(commandId)![0];
      if (s.type !== 'Transfer' || !(o.status === 'accepted' || DESTINATION_REASONS.has(o.reason!))) continue;
      const e = stepAt.get(`${s.accountId}/${o.version}`);
      const type = o.status === 'accepted' ? 'TransferDebited' : 'TransferRefunded';
      // outcome balances are decimal strings, event balances minor units (USD and EUR: cents)
      if (!e || e.event_type !== type || e.transfer_id !== commandId || Math.round(Number(o.balance) * 100) !== Number(e.balance)) {
        misreported.push(`${commandId}: outcome version ${o.version} balance ${o.balance}, event ${JSON.stringify(e)}`);
      }
    }
    assert.equal(misreported.slice(0, 5), [], `${misreported.length} transfer outcomes report the source otherwise than its events`);
    const { rows: [dup] } = await pg.query<{ n: number }>('SELECT count(*)::int AS n FROM (SELECT 1 FROM events GROUP BY account_id, command_id HAVING count(*) > 1) x');
    assert.is(dup.n, 0, 'no command or step applied twice');
    return { transfers, credited, refunded };
  }
}
