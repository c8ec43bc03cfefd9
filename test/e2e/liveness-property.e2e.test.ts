/**
 * One bad message must never stop the ledger (issue #12), as a property.
 *
 * fast-check generates scenarios: a few accounts (4-8, each with its own key
 * casing: lower, UPPER or MiXeD, all valid) and 50-90 steps interleaving
 *
 *  - valid Deposits/Withdraws (some INSUFFICIENT_FUNDS, some with a right or
 *    wrong expectedVersion, some padded to exactly LIMITS_MAX_MESSAGE_BYTES,
 *    some with the accountId or commandId upper-cased, some with a decoy
 *    `commandId` earlier in the bytes than the real one: a duplicate JSON key
 *    or a nested one, which the main thread's byte scan sees and the decoder
 *    does not);
 *  - "barrier" commands keyed null, empty or in another case than the
 *    account's other commands (another partition: sent once the account is
 *    quiet, answered before anything else is sent);
 *  - readable but invalid commands (bad amounts, unknown types full of
 *    `, } " \` and non-ASCII, non-UUID accountIds beside a good key, bad
 *    expectedVersions, a second OpenAccount with a NUL in its ownerName):
 *    rejected with a reason, never dead-lettered;
 *  - re-sends of earlier commands (same bytes, or the commandId upper-cased,
 *    or with a decoy commandId): `duplicate` with the original's fields;
 *  - poison, 1-3 identical copies: every decoder class (EMPTY_VALUE,
 *    TOO_LARGE, NOT_UTF8, NOT_JSON, NOT_OBJECT, NO_COMMAND_ID, NO_ACCOUNT_ID,
 *    KEY_MISMATCH) with ids and keys built from `, } " \`, NUL, non-ASCII and
 *    invalid UTF-8 bytes, null keys, keys of 4-30 kB, values up to 50 kB, and
 *    hostile original headers; and what only Postgres refuses (POISON): a NUL
 *    in an unknown type, a NUL or a lone surrogate in a new account's ownerName;
 *  - restarts at random points (at most 2 a run: a SIGKILL costs the dead
 *    member's 6 s session): SIGTERM or SIGKILL 0-400 ms after the last send,
 *    sometimes with a few steps sent while the daemon is down.
 *
 * The model predicts every outcome (status, reason, version, balance; a
 * re-send: duplicate + originalStatus + the original's fields). Invariants:
 * progress within PROGRESS_MS at every checkpoint (every ~12 sends, around
 * each barrier, after each restart): every command sent so far has its
 * outcomes and every poison copy its dead letter; at the end of a run the
 * outcomes are the model's, each account's first outcomes arrive in send
 * order, the events are the accepted commands in order with the model's final
 * balance, the rejection rows are the model's, every poison copy has exactly
 * one dead letter (more only after a SIGKILL: at most 1 + the kills since it
 * was sent) with the right error.code and its bytes, nothing else is
 * dead-lettered, and the daemon is ready and not stalled. Re-published
 * outcomes (after a SIGKILL only) must be identical but for processedAt.
 *
 * All runs share one daemon and one fixture (fresh accounts per run); the
 * seed is fixed (LIVENESS_SEED to change it, LIVENESS_RUNS for the number of
 * runs) and a failure ends the property at once, without shrinking, printing
 * the scenario compactly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { PipelineFixture } from '../helpers/pipeline';
import type { Daemon } from '../helpers/daemon';
import type { Delivered, Headers, ReadMessage } from '../helpers/kafka';
import { withTimeout } from '../helpers/stack';

const SEED = Number(process.env.LIVENESS_SEED ?? 1212);
const RUNS = Number(process.env.LIVENESS_RUNS ?? 5);
const MAX_BYTES = 4096;
const PROGRESS_MS = 15000;
const CHECK_EVERY = 12;
const MAX_RESTARTS_PER_RUN = 2;

let fx: PipelineFixture | undefined;
const daemons: Daemon[] = [];

test.after(async () => {
  await fx?.release();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cents = (minor: number): string => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const notUuid = (s: string) => (UUID_RE.test(s) ? `${s}x` : s);
const short = (s: string, n = 60) => {
  const j = JSON.stringify(s);
  return j.length > n ? `${j.slice(0, n)}…(${s.length})` : j;
};

// ───────────────────────────── generators ─────────────────────────────

const SPECIAL = [',', '}', '{', '"', '\\', ']', '[', ':', ' ', 'é', 'ß', 'ÿ', '\u2028', '\u202e', '\ufeff', '😀', 'İ', '\u212a', '\n', '\t', '\u0001', '\u007f'];
/** Short strings full of what breaks hand-built literals: `, } " \`, control and non-ASCII characters, any code point (NUL too). */
const weirdText = fc.array(fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...SPECIAL) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom('a', '0', '-', 'Z') },
), { minLength: 1, maxLength: 16 }).map((a) => a.join(''));

/** Keys that are no account: weird text, raw bytes (often not UTF-8), a 4-30 kB key, classics. */
const weirdKey = fc.oneof(
  weirdText.map((s) => Buffer.from(s, 'utf8')),
  fc.uint8Array({ minLength: 1, maxLength: 24 }).map((b) => Buffer.from(b)),
  fc.integer({ min: 4097, max: 30000 }).map((n) => Buffer.from(`k,}"\\é${'k'.repeat(n)}`, 'utf8')),
  fc.constantFrom('a}b"c', '\\,}', 'null', '0', 'é').map((s) => Buffer.from(s, 'utf8')),
);

type Op = 'Deposit' | 'Withdraw';
type Decoy = 'none' | 'random' | 'earlier' | 'nested';
interface ValidStep { kind: 'valid'; acct: number; op: Op; amount: number; upperValue: boolean; upperId: boolean; ev: 'none' | 'right' | 'wrong'; wrongBy: number; pad: boolean; decoy: Decoy; n: number }
interface BarrierStep extends Omit<ValidStep, 'kind'> { kind: 'barrier'; key: 'null' | 'empty' | 'otherCase' }
interface InvalidStep { kind: 'invalid'; acct: number; shape: 'amount' | 'type' | 'accountId' | 'ev' | 'reopen'; op: Op; text: string; n: number }
interface ResendStep { kind: 'resend'; pick: number; upperId: boolean; decoy: 'keep' | 'random' | 'earlier' | 'nested' }
type PoisonShape = 'empty' | 'tooLarge' | 'notUtf8' | 'notJson' | 'notObject' | 'noCommandId' | 'noAccountId' | 'keyMismatch' | 'nulType' | 'nulOwner' | 'surrogateOwner';
interface PoisonStep { kind: 'poison'; acct: number; shape: PoisonShape; copies: number; text: string; keyChoice: 'account' | 'null' | 'weird' | 'other'; weirdKey: Buffer; n: number; headers: Headers | null }
interface RestartStep { kind: 'restart'; mode: 'term' | 'kill'; delayMs: number; down: number }
type Step = ValidStep | BarrierStep | InvalidStep | ResendStep | PoisonStep | RestartStep;
interface AccountSpec { initial: number; style: 'lower' | 'upper' | 'mixed'; mask: number }
interface Scenario { accounts: AccountSpec[]; steps: Step[] }

const validFields = {
  acct: fc.nat(),
  op: fc.constantFrom<Op>('Deposit', 'Deposit', 'Withdraw'),
  amount: fc.integer({ min: 1, max: 1500 }),
  upperValue: fc.boolean(),
  upperId: fc.boolean(),
  ev: fc.constantFrom<'none' | 'right' | 'wrong'>('none', 'none', 'none', 'none', 'right', 'wrong'),
  wrongBy: fc.nat(3),
  pad: fc.constantFrom(false, false, false, false, false, true),
  decoy: fc.constantFrom<Decoy>('none', 'none', 'none', 'none', 'random', 'earlier', 'nested'),
  n: fc.nat(),
};
const validStep: fc.Arbitrary<Step> = fc.record({ kind: fc.constant('valid' as const), ...validFields });
const barrierStep: fc.Arbitrary<Step> = fc.record({ kind: fc.constant('barrier' as const), ...validFields, key: fc.constantFrom<'null' | 'empty' | 'otherCase'>('null', 'empty', 'otherCase') });
const invalidStep: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('invalid' as const), acct: fc.nat(),
  shape: fc.constantFrom<InvalidStep['shape']>('amount', 'type', 'accountId', 'ev', 'reopen'),
  op: fc.constantFrom<Op>('Deposit', 'Withdraw'), text: weirdText, n: fc.nat(),
});
const resendStep: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('resend' as const), pick: fc.nat(), upperId: fc.boolean(),
  decoy: fc.constantFrom<ResendStep['decoy']>('keep', 'keep', 'keep', 'random', 'earlier', 'nested'),
});
const poisonStep: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('poison' as const), acct: fc.nat(),
  shape: fc.constantFrom<PoisonShape>('empty', 'tooLarge', 'notUtf8', 'notJson', 'notObject', 'noCommandId', 'noAccountId', 'keyMismatch', 'nulType', 'nulType', 'nulOwner', 'surrogateOwner'),
  copies: fc.integer({ min: 1, max: 3 }), text: weirdText,
  keyChoice: fc.constantFrom<PoisonStep['keyChoice']>('account', 'account', 'null', 'weird', 'other'),
  weirdKey, n: fc.nat(),
  headers: fc.option<Headers, null>(fc.dictionary(fc.constantFrom('x-trace', 'error.code', 'source.offset', 'é,}"\\'), weirdText.map((s) => s.split('\u0000').join('')), { maxKeys: 3 }) as fc.Arbitrary<Headers>, { freq: 3 }),
});
const restartStep: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('restart' as const), mode: fc.constantFrom<'term' | 'kill'>('term', 'kill'),
  delayMs: fc.integer({ min: 0, max: 400 }), down: fc.constantFrom(0, 0, 0, 1, 3, 5),
});
const step = fc.oneof(
  { weight: 40, arbitrary: validStep },
  { weight: 4, arbitrary: barrierStep },
  { weight: 9, arbitrary: invalidStep },
  { weight: 12, arbitrary: resendStep },
  { weight: 25, arbitrary: poisonStep },
  { weight: 6, arbitrary: restartStep },
);

function stepToken(s: Step, k: number): string {
  const v = (x: Omit<ValidStep, 'kind'>) => `${x.op[0]}${x.acct % k}:${x.amount}${x.ev === 'none' ? '' : x.ev === 'right' ? '@=' : `@!${x.wrongBy}`}${x.upperValue ? 'U' : ''}${x.upperId ? 'I' : ''}${x.pad ? 'P' : ''}${x.decoy === 'none' ? '' : `~${x.decoy}`}`;
  switch (s.kind) {
    case 'valid': return v(s);
    case 'barrier': return `B[${s.key}]${v(s)}`;
    case 'invalid': return `I:${s.shape}${s.acct % k}${s.shape === 'type' || s.shape === 'accountId' ? short(s.text, 24) : ''}`;
    case 'resend': return `R${s.pick}${s.upperId ? 'I' : ''}${s.decoy === 'keep' ? '' : `~${s.decoy}`}`;
    case 'poison': return `X:${s.shape}${s.acct % k}x${s.copies}/${s.keyChoice}${s.headers ? 'H' : ''}`;
    case 'restart': return `${s.mode === 'kill' ? 'KILL' : 'TERM'}+${s.delayMs}${s.down ? `/down${s.down}` : ''}`;
  }
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  accounts: fc.array(fc.record({ initial: fc.integer({ min: 0, max: 3000 }), style: fc.constantFrom<AccountSpec['style']>('lower', 'upper', 'mixed'), mask: fc.nat() }), { minLength: 4, maxLength: 8 }),
  steps: fc.array(step, { minLength: 50, maxLength: 90 }),
}).map((sc) => {
  let restarts = 0;
  const steps = sc.steps.filter((s) => s.kind !== 'restart' || ++restarts <= MAX_RESTARTS_PER_RUN);
  const out: Scenario = { accounts: sc.accounts, steps };
  return Object.assign(out, {
    [fc.toStringMethod]: () => `{accounts: ${sc.accounts.map((a) => `${a.style}:${cents(a.initial)}`).join(' ')}; steps: ${steps.map((s) => stepToken(s, sc.accounts.length)).join(' ')}}`,
  });
});

// ───────────────────────────── the model ─────────────────────────────

interface Account { id: string; key: Buffer; otherKey: Buffer; version: number; balance: number; accepted: string[] }
type Want = { type: string; status: 'accepted'; version: number; balance: string } | { type: string; status: 'rejected'; reason: string };
interface Build { commandId: string; idUpper: boolean; type: string; accountText: string; fields: string; decoy: string | null; nested: boolean }

/** A command (not poison): what its first outcome must be, and how often it was sent. */
interface CmdRec {
  label: string; run: number; acct: number; commandId: string; accountId: string; want: Want;
  key: Buffer | null; build: Build; barrier: boolean;
  sent: number; killsAtFirstSend: number;
}
interface PoisonCopy { label: string; run: number; code: string; key: Buffer | null; value: Buffer | null; headers?: Headers; place?: Delivered; killsAtSend: number }
type Action =
  | { kind: 'send'; label: string; key: Buffer | null; value: Buffer | null; headers?: Headers; rec?: CmdRec; poison?: PoisonCopy; barrier: boolean }
  | { kind: 'restart'; mode: 'term' | 'kill'; delayMs: number; down: number };

function commandJson(b: Build): string {
  const decoy = b.decoy === null ? '' : b.nested ? `"meta":{"commandId":"${b.decoy}"},` : `"commandId":"${b.decoy}",`;
  const id = b.idUpper ? b.commandId.toUpperCase() : b.commandId;
  return `{${decoy}"commandId":"${id}","type":${JSON.stringify(b.type)},"accountId":${b.accountText},${b.fields}}`;
}

/** Pads a command's JSON with a `pad` field to exactly `bytes` bytes (when it is not already longer). */
function padTo(json: string, bytes: number, text = ''): string {
  const head = json.slice(0, -1) + `,"pad":"${JSON.stringify(text).slice(1, -1)}`;
  const fill = bytes - Buffer.byteLength(head, 'utf8') - 2;
  return fill >= 0 ? `${head}${'x'.repeat(fill)}"}` : json;
}

function keyOf(id: string, style: AccountSpec['style'], mask: number): string {
  if (style === 'lower') return id;
  if (style === 'upper') return id.toUpperCase();
  let i = 0;
  const s = id.replace(/[a-f]/g, (c) => ((mask >> (i++ % 30)) & 1 ? c.toUpperCase() : c));
  return s === id ? id.toUpperCase() : s;
}

class Plan {
  readonly accounts: Account[];
  readonly actions: Action[] = [];
  readonly recs: CmdRec[] = [];
  readonly poison: PoisonCopy[] = [];
  /** ids that must never get an outcome: poison commandIds and decoys */
  readonly silentIds = new Set<string>();
  readonly freshAccounts: string[] = [];
  readonly counts: Record<string, number> = {};

  constructor(readonly run: number, readonly sc: Scenario) {
    this.accounts = sc.accounts.map((a) => {
      const id = randomUUID();
      const key = keyOf(id, a.style, a.mask);
      return { id, key: Buffer.from(key), otherKey: Buffer.from(key === id ? id.toUpperCase() : id), version: 0, balance: 0, accepted: [] };
    });
    sc.accounts.forEach((a, i) => {
      const acc = this.accounts[i];
      const b: Build = { commandId: randomUUID(), idUpper: false, type: 'OpenAccount', accountText: JSON.stringify(acc.id), fields: `"ownerName":"owner ${i} ,}\\"\\\\é","currency":"USD","initialBalance":"${cents(a.initial)}"`, decoy: null, nested: false };
      acc.balance = a.initial;
      this.accept(i, b, 'OpenAccount', acc.key, false, `open a${i}`);
    });
    for (const s of sc.steps) this.add(s);
  }

  private count(k: string, n = 1) { this.counts[k] = (this.counts[k] ?? 0) + n; }

  private push(rec: CmdRec, key: Buffer | null, value: string, label: string) {
    this.actions.push({ kind: 'send', label, key, value: Buffer.from(value, 'utf8'), rec, barrier: rec.barrier });
  }

  private newRec(acct: number, b: Build, want: Want, key: Buffer | null, barrier: boolean, label: string): CmdRec {
    const rec: CmdRec = { label: `run ${this.run} #${this.recs.length} ${label}`, run: this.run, acct, commandId: b.commandId, accountId: this.accounts[acct].id, want, key, build: b, barrier, sent: 0, killsAtFirstSend: 0 };
    this.recs.push(rec);
    this.push(rec, key, commandJson(b), rec.label);
    return rec;
  }

  private accept(acct: number, b: Build, type: string, key: Buffer | null, barrier: boolean, label: string) {
    const a = this.accounts[acct];
    a.version++;
    a.accepted.push(b.commandId);
    this.newRec(acct, b, { type, status: 'accepted', version: a.version, balance: cents(a.balance) }, key, barrier, `${label} → accepted v${a.version} ${cents(a.balance)}`);
  }

  private reject(acct: number, b: Build, type: string, reason: string, key: Buffer | null, barrier: boolean, label: string) {
    this.newRec(acct, b, { type: type.slice(0, 64), status: 'rejected', reason }, key, barrier, `${label} → ${reason}`);
  }

  private decoyId(d: Decoy | ResendStep['decoy'], n: number, not: string): { decoy: string | null; nested: boolean } | undefined {
    if (d === 'none' || d === 'keep') return undefined;
    const others = this.recs.filter((r) => r.commandId !== not);
    const id = d === 'earlier' && others.length ? others[n % others.length].commandId : randomUUID();
    if (d === 'random' || d === 'nested') this.silentIds.add(id);
    return { decoy: id, nested: d === 'nested' };
  }

  private add(s: Step) {
    const k = this.accounts.length;
    switch (s.kind) {
      case 'valid':
      case 'barrier': {
        const i = s.acct % k;
        const a = this.accounts[i];
        const key = s.kind === 'valid' ? a.key : s.key === 'null' ? null : s.key === 'empty' ? Buffer.alloc(0) : a.otherKey;
        let ev = '';
        let conflict = false;
        if (s.ev === 'right') ev = `,"expectedVersion":${a.version}`;
        if (s.ev === 'wrong') {
          const wrong = s.wrongBy === 3 ? a.version - 1 : a.version + 1 + s.wrongBy;
          ev = `,"expectedVersion":${wrong}`;
          conflict = true;
        }
        const commandId = randomUUID();
        const b: Build = { commandId, idUpper: s.upperId, type: s.op, accountText: JSON.stringify(s.upperValue ? a.id.toUpperCase() : a.id), fields: `"amount":"${cents(s.amount)}"${ev}`, decoy: null, nested: false, ...this.decoyId(s.decoy, s.n, commandId) };
        if (s.pad) {
          // exactly at the limit: still a command
          const padded = padTo(commandJson(b), MAX_BYTES, 'é,}"\\');
          b.fields = padded.slice(padded.indexOf('"amount"'), -1);
        }
        const label = `${s.kind === 'barrier' ? `[key ${s.key}] ` : ''}${s.op} a${i} ${cents(s.amount)}${ev}${s.pad ? ' padded' : ''}${b.decoy ? ` decoy${b.nested ? '(nested)' : ''}` : ''}`;
        this.count(s.kind);
        if (conflict) return this.reject(i, b, s.op, 'VERSION_CONFLICT', key, s.kind === 'barrier', label);
        if (s.op === 'Withdraw' && s.amount > a.balance) return this.reject(i, b, s.op, 'INSUFFICIENT_FUNDS', key, s.kind === 'barrier', label);
        a.balance += s.op === 'Deposit' ? s.amount : -s.amount;
        return this.accept(i, b, s.op, key, s.kind === 'barrier', label);
      }
      case 'invalid': {
        const i = s.acct % k;
        const a = this.accounts[i];
        const commandId = randomUUID();
        const base: Build = { commandId, idUpper: false, type: s.op, accountText: JSON.stringify(a.id), fields: '"amount":"1.00"', decoy: null, nested: false };
        this.count('invalid');
        switch (s.shape) {
          case 'amount': {
            const bad: Array<[string, string]> = [['"1.001"', 'INVALID_COMMAND'], ['"-1"', 'INVALID_COMMAND'], ['"0"', 'INVALID_COMMAND'], ['"0.00"', 'INVALID_COMMAND'], ['"1e3"', 'INVALID_COMMAND'],
              ['" 1"', 'INVALID_COMMAND'], ['""', 'INVALID_COMMAND'], ['"1,5"', 'INVALID_COMMAND'], ['"١"', 'INVALID_COMMAND'], ['"90071992547409.92"', 'LIMIT_EXCEEDED'],
              ['5', 'INVALID_COMMAND'], ['null', 'INVALID_COMMAND'], [JSON.stringify(`x${s.text}`), 'INVALID_COMMAND'], [`{"v":${JSON.stringify(s.text)}}`, 'INVALID_COMMAND']];
            const [amount, reason] = bad[s.n % bad.length];
            return this.reject(i, { ...base, fields: `"amount":${amount}` }, s.op, reason, a.key, false, `${s.op} a${i} amount ${short(amount, 30)}`);
          }
          case 'type': {
            const long = s.n % 3 === 0;
            // a long one is cut at 64 UTF-16 units when echoed: sometimes inside a surrogate pair
            let type = long ? `${'t'.repeat(60 + (s.n % 4))}😀${s.text}` : s.text;
            type = type.split('\u0000').join('\u0001');
            if (['OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount'].includes(type)) type += ',';
            return this.reject(i, { ...base, type }, type, 'INVALID_COMMAND', a.key, false, `type ${short(type, 40)} a${i}`);
          }
          case 'accountId': {
            const acc = [JSON.stringify(notUuid(s.text)), JSON.stringify(`${a.id.slice(0, 35)}}`), JSON.stringify(`${a.id},`), '12', 'null', `{"id":"${a.id}"}`][s.n % 6];
            return this.reject(i, { ...base, accountText: acc }, s.op, 'INVALID_COMMAND', a.key, false, `accountId ${short(acc, 40)} under the key of a${i}`);
          }
          case 'ev': {
            const ev = ['-1', '1.5', '"1"', '9007199254740992', 'true', JSON.stringify(s.text)][s.n % 6];
            return this.reject(i, { ...base, fields: `"amount":"1.00","expectedVersion":${ev}` }, s.op, 'INVALID_COMMAND', a.key, false, `${s.op} a${i} expectedVersion ${short(ev, 30)}`);
          }
          case 'reopen': {
            // the NUL never reaches Postgres: the rejection row holds no ownerName
            const owner = `${s.text.slice(0, 40)}\u0000${s.text.slice(0, 3)}`;
            return this.reject(i, { ...base, type: 'OpenAccount', fields: `"ownerName":${JSON.stringify(owner)},"currency":"USD","initialBalance":"1.00"` }, 'OpenAccount', 'ACCOUNT_EXISTS', a.key, false, `second OpenAccount a${i} with a NUL in ownerName`);
          }
        }
        return;
      }
      case 'resend': {
        const rec = this.recs[s.pick % this.recs.length];
        let b: Build = { ...rec.build, idUpper: s.upperId, ...this.decoyId(s.decoy, s.pick, rec.commandId) };
        // a decoy must not push a command padded to the limit over it
        if (Buffer.byteLength(commandJson(b), 'utf8') > MAX_BYTES) b = { ...rec.build, idUpper: s.upperId };
        this.count('resend');
        this.actions.push({ kind: 'send', label: `re-send of ${rec.label}${s.upperId ? ' (id upper-cased)' : ''}${s.decoy === 'keep' ? '' : ` decoy ${s.decoy}`}`, key: rec.key, value: Buffer.from(commandJson(b), 'utf8'), rec, barrier: false });
        return;
      }
      case 'poison': return this.addPoison(s);
      case 'restart':
        this.count(s.mode);
        this.actions.push({ kind: 'restart', mode: s.mode, delayMs: s.delayMs, down: s.down });
        return;
    }
  }

  private addPoison(s: PoisonStep) {
    const k = this.accounts.length;
    const i = s.acct % k;
    const a = this.accounts[i];
    const cid = randomUUID();
    this.silentIds.add(cid);
    const deposit = (extra = '') => `{"commandId":"${cid}","type":"Deposit","accountId":"${a.id}","amount":"1.00"${extra}}`;
    const weird = (() => {
      const w = Buffer.from(s.weirdKey);
      return w.length === 0 || isUuidText(w.toString('utf8')) ? Buffer.from('x,}') : w;
    })();
    const anyKey = (): Buffer | null => (s.keyChoice === 'null' ? null : s.keyChoice === 'weird' ? weird : s.keyChoice === 'other' ? this.accounts[(i + 1) % k].key : a.key);
    let key: Buffer | null = anyKey();
    let value: Buffer | null;
    let code: string;
    let what: string = s.shape;
    switch (s.shape) {
      case 'empty':
        value = s.n % 2 ? null : Buffer.alloc(0);
        code = 'EMPTY_VALUE';
        what = value === null ? 'null value' : 'empty value';
        break;
      case 'tooLarge': {
        const size = s.n % 3 === 0 ? MAX_BYTES + 1 : MAX_BYTES + 1 + (s.n % 50000);
        value = Buffer.from(padTo(deposit(), size, s.text), 'utf8');
        code = 'TOO_LARGE';
        what = `${value.length}-byte value`;
        break;
      }
      case 'notUtf8': {
        const bad = [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xfe, 0xfe]][s.n % 6];
        const where = s.n % 2;
        value = where
          ? Buffer.concat([Buffer.from(`{"commandId":"${cid}","type":"Deposit","accountId":"${a.id}","amount":"1.00","note":"`), Buffer.from(bad), Buffer.from('"}')])
          : Buffer.concat([Buffer.from('{"commandId":"'), Buffer.from(bad), Buffer.from(`${cid}","type":"Deposit","accountId":"${a.id}","amount":"1.00"}`)]);
        code = 'NOT_UTF8';
        what = `bytes ${Buffer.from(bad).toString('hex')} in ${where ? 'a note' : 'the commandId'}`;
        break;
      }
      case 'notJson': {
        const t = s.text;
        let text = [deposit().slice(0, 20 + (s.n % 40)) + t, `${t}{`, `{"commandId":"${cid}",${t}}`, `{'commandId':'${cid}','accountId':'${a.id}'}`, `${deposit()}${t}`][s.n % 5];
        if (isJson(text)) text = `{${text}`;
        value = Buffer.from(text, 'utf8');
        code = 'NOT_JSON';
        what = `not JSON ${short(text, 40)}`;
        break;
      }
      case 'notObject': {
        const text = [`[${deposit()}]`, JSON.stringify(s.text), String(s.n), 'null', 'true', JSON.stringify(deposit())][s.n % 6];
        value = Buffer.from(text, 'utf8');
        code = 'NOT_OBJECT';
        what = `not an object ${short(text, 40)}`;
        break;
      }
      case 'noCommandId': {
        const id = [JSON.stringify(notUuid(s.text)), '"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"', '"aaaaaaaa,bbbb-cccc-dddd-eeeeeeeeeeee"', JSON.stringify(`${cid.slice(0, 35)}"`), '12345', 'null', `{"$oid":${JSON.stringify(s.text)}}`][s.n % 7];
        // half of them carry a valid UUID first under the same key: the byte scan sees it, the decoder does not
        const decoy = s.n % 2 ? `"commandId":"${cid}",` : '';
        value = Buffer.from(`{${decoy}"commandId":${id},"type":"Deposit","accountId":"${a.id}","amount":"1.00"}`, 'utf8');
        code = 'NO_COMMAND_ID';
        what = `commandId ${short(id, 40)}${decoy ? ' after a valid one' : ''}`;
        break;
      }
      case 'noAccountId': {
        if (key !== null && (s.keyChoice === 'account' || s.keyChoice === 'other')) key = s.n % 2 ? null : weird;
        const acc = [JSON.stringify(notUuid(s.text)), JSON.stringify(`${a.id.slice(0, 35)}}`), JSON.stringify(`${a.id.toUpperCase()},`), '7', 'null'][s.n % 5];
        value = Buffer.from(`{"commandId":"${cid}","type":"Deposit","accountId":${acc},"amount":"1.00"}`, 'utf8');
        code = 'NO_ACCOUNT_ID';
        what = `accountId ${short(acc, 40)}`;
        break;
      }
      case 'keyMismatch': {
        if (key === null || key === a.key) key = s.n % 3 === 0 ? Buffer.from(randomUUID()) : weird;
        value = Buffer.from(deposit(s.n % 2 ? `,"x":${JSON.stringify(s.text)}` : ''), 'utf8');
        code = 'KEY_MISMATCH';
        break;
      }
      case 'nulType': {
        if (key !== null && key !== a.key) key = a.key;
        const type = `${s.text.slice(0, 20)}\u0000${s.text}`;
        value = Buffer.from(`{"commandId":"${cid}","type":${JSON.stringify(type)},"accountId":"${a.id}","amount":"1.00"}`, 'utf8');
        code = 'POISON';
        what = `NUL in the unknown type ${short(type, 40)}`;
        break;
      }
      case 'nulOwner':
      case 'surrogateOwner': {
        const fresh = randomUUID();
        this.freshAccounts.push(fresh);
        key = s.keyChoice === 'null' ? null : Buffer.from(s.n % 2 ? fresh.toUpperCase() : fresh);
        const owner = `${s.text.slice(0, 30)}${s.shape === 'nulOwner' ? '\u0000' : '\ud800'}${s.text.slice(0, 5)}`;
        value = Buffer.from(`{"commandId":"${cid}","type":"OpenAccount","accountId":"${fresh}","ownerName":${JSON.stringify(owner)},"currency":"USD","initialBalance":"1.00"}`, 'utf8');
        code = 'POISON';
        what = `${s.shape === 'nulOwner' ? 'NUL' : 'lone surrogate'} in a new account's ownerName ${short(owner, 40)}`;
        break;
      }
    }
    this.count(`poison:${s.shape}`);
    for (let c = 0; c < s.copies; c++) {
      const copy: PoisonCopy = { label: `run ${this.run} poison ${what} (copy ${c + 1}/${s.copies}, key ${key === null ? 'null' : short(key.toString('utf8'), 30)})`, run: this.run, code, key, value, headers: s.headers ?? undefined, killsAtSend: 0 };
      this.poison.push(copy);
      this.actions.push({ kind: 'send', label: copy.label, key, value, headers: copy.headers, poison: copy, barrier: false });
    }
  }
}

function isUuidText(s: string): boolean { return UUID_RE.test(s); }
function isJson(s: string): boolean { try { JSON.parse(s); return true; } catch { return false; } }

// ───────────────────────────── what was read ─────────────────────────────

type O = Record<string, unknown>;
const canon = (o: O, drop: string[] = []): string => JSON.stringify(Object.keys(o).filter((k) => k !== 'processedAt' && !drop.includes(k)).sort().map((k) => [k, o[k]]));

/** The outcome and dead-letter topics indexed as they are read. */
class Seen {
  readonly byCmd = new Map<string, Array<{ o: O; at: number }>>();
  readonly byPlace = new Map<string, ReadMessage[]>();
  readonly unreadable: string[] = [];
  private o = 0;
  private d = 0;
  constructor(private readonly f: PipelineFixture) {}
  scan(): void {
    const om = this.f.outcomes.messages;
    for (; this.o < om.length; this.o++) {
      const v = om[this.o].value as unknown as O | undefined;
      if (!v || typeof v.commandId !== 'string') { this.unreadable.push(String(om[this.o].raw)); continue; }
      const id = v.commandId;
      const l = this.byCmd.get(id) ?? [];
      l.push({ o: v, at: this.o });
      this.byCmd.set(id, l);
    }
    const dm = this.f.dlq.messages;
    for (; this.d < dm.length; this.d++) {
      const h = dm[this.d].headers;
      const k = `${h['source.topic']}|${h['source.partition']}:${h['source.offset']}`;
      this.byPlace.set(k, [...(this.byPlace.get(k) ?? []), dm[this.d]]);
    }
  }
  outcomes(id: string) { return this.byCmd.get(id) ?? []; }
  letters(topic: string, d: Delivered | undefined) { return d ? this.byPlace.get(`${topic}|${d.partition}:${d.offset}`) ?? [] : []; }
}

// ───────────────────────────── the run ─────────────────────────────

let kills = 0;
const allRecs: CmdRec[] = [];
const allPoison: PoisonCopy[] = [];
const silent = new Set<string>();
let seen: Seen;
let outstanding: CmdRec[] = [];
let undelivered: PoisonCopy[] = [];
let deliveries: Array<Promise<unknown>> = [];
const errorLines: string[] = [];
const logsSeen = new Map<Daemon, number>();

function progressed(r: CmdRec): boolean {
  const outs = seen.outcomes(r.commandId);
  const orig = outs.some((x) => x.o.status !== 'duplicate');
  return orig && outs.filter((x) => x.o.status === 'duplicate').length >= r.sent - 1;
}

function tail(): string {
  const out = fx?.daemon?.output() ?? '';
  return out.slice(-2500);
}

/** Every command sent so far has its outcomes and every poison copy its dead letter, within PROGRESS_MS. */
async function progress(what: string): Promise<number> {
  const f = fx!;
  await withTimeout(Promise.all(deliveries), PROGRESS_MS, `${what}: delivery reports`);
  deliveries = [];
  const t0 = Date.now();
  for (;;) {
    seen.scan();
    outstanding = outstanding.filter((r) => !progressed(r));
    undelivered = undelivered.filter((p) => seen.letters(f.topics.commands, p.place).length === 0);
    if (outstanding.length === 0 && undelivered.length === 0) return Date.now() - t0;
    if (!f.daemon?.alive) throw new Error(`${what}: the daemon is not running (${f.daemon?.child.exitCode ?? f.daemon?.child.signalCode}):\n${tail()}`);
    if (Date.now() - t0 > PROGRESS_MS) {
      throw new Error(`${what}: no progress within ${PROGRESS_MS} ms: ${outstanding.length} commands lack outcomes [${outstanding.slice(0, 4).map((r) => `${r.label} (${seen.outcomes(r.commandId).length}/${r.sent} outcomes)`).join('; ')}], ` +
        `${undelivered.length} poison copies lack a dead letter [${undelivered.slice(0, 4).map((p) => `${p.label} at ${p.place?.partition}:${p.place?.offset}`).join('; ')}]\ndaemon output tail:\n${tail()}`);
    }
    await sleep(25);
  }
}

async function startDaemon(): Promise<number> {
  const t0 = Date.now();
  const d = await fx!.start();
  daemons.push(d);
  return Date.now() - t0;
}

function collectErrorLogs(): void {
  for (const d of daemons) {
    const logs = d.logs();
    for (const l of logs.slice(logsSeen.get(d) ?? 0)) {
      if ((l.level ?? 0) >= 50 && l.msg !== 'poison message isolated: its content fails the commit; dead-lettered, the partition goes on') {
        errorLines.push(`${l.msg} ${JSON.stringify(l.err ?? '').slice(0, 200)}`);
      }
    }
    logsSeen.set(d, logs.length);
  }
}

/** The final checks of one command's outcomes; problems are pushed. */
function checkRec(r: CmdRec, problems: string[]): void {
  const outs = seen.outcomes(r.commandId).map((x) => x.o);
  const origs = outs.filter((o) => o.status !== 'duplicate');
  const dups = outs.filter((o) => o.status === 'duplicate');
  const killed = kills > r.killsAtFirstSend;
  const p = (s: string): void => { problems.push(`${r.label}: ${s}; outcomes: ${outs.map((o) => JSON.stringify({ ...o, processedAt: undefined })).join(' | ').slice(0, 600)}`); };
  if (origs.length === 0) return p('no original outcome');
  const first = seen.outcomes(r.commandId)[0].o;
  if (first.status === 'duplicate') p('the first outcome is a duplicate');
  const o = origs[0];
  const w = r.want;
  const base = o.commandId === r.commandId && o.accountId === r.accountId && o.type === w.type && o.status === w.status;
  const fields = w.status === 'accepted'
    ? o.version === w.version && o.balance === w.balance && o.reason === undefined && o.originalStatus === undefined
    : o.reason === w.reason && typeof o.detail === 'string' && o.version === undefined && o.balance === undefined;
  if (!base || !fields) p(`want ${JSON.stringify(w)}`);
  if (origs.some((x) => canon(x) !== canon(o))) p('re-published originals differ');
  if (dups.length < r.sent - 1) p(`${dups.length} duplicates for ${r.sent - 1} re-sends`);
  for (const d of dups) {
    if (d.originalStatus !== o.status || canon(d, ['status', 'originalStatus']) !== canon(o, ['status'])) { p('a duplicate does not carry the original'); break; }
  }
  if (!killed && (origs.length !== 1 || dups.length !== r.sent - 1)) p(`${origs.length} originals and ${dups.length} duplicates, want 1 and ${r.sent - 1} (no SIGKILL since it was sent)`);
}

function checkPoison(pc: PoisonCopy, problems: string[]): void {
  const letters = seen.letters(fx!.topics.commands, pc.place);
  const most = 1 + (kills - pc.killsAtSend);
  const p = (s: string): void => { problems.push(`${pc.label} at ${pc.place?.partition}:${pc.place?.offset}: ${s}`); };
  if (letters.length < 1 || letters.length > most) p(`${letters.length} dead letters, want ${most === 1 ? '1' : `1..${most}`}`);
  for (const m of letters) {
    if (m.headers['error.code'] !== pc.code) p(`error.code ${m.headers['error.code']}, want ${pc.code} (${m.headers['error.message']})`);
    if (m.headers['error.class'] !== 'poison') p(`error.class ${m.headers['error.class']}`);
    if (pc.code === 'POISON' && !/^22/.test(m.headers['error.sqlstate'] ?? '')) p(`error.sqlstate ${m.headers['error.sqlstate']}, want 22xxx`);
    const want = pc.value ?? Buffer.alloc(0);
    // a letter that would not fit the broker's limit goes without its value, saying how large it was
    const dropped = m.raw === null && m.headers['error.value.bytes'] === String(want.length);
    if (!dropped && !(m.raw ?? Buffer.alloc(0)).equals(want)) p('value not preserved');
    if ((m.key ?? '') !== (pc.key?.toString() ?? '')) p('key not preserved');
  }
}

async function runScenario(sc: Scenario, run: number): Promise<void> {
  const f = fx!;
  const t0 = Date.now();
  const plan = new Plan(run, sc);
  allRecs.push(...plan.recs);
  allPoison.push(...plan.poison);
  for (const id of plan.silentIds) silent.add(id);
  let down = false;
  let downLeft = 0;
  let sinceCheck = 0;
  let maxWait = 0;
  const restarts: string[] = [];
  const killsBefore = kills;

  const wait = async (what: string) => { maxWait = Math.max(maxWait, await progress(`run ${run}: ${what}`)); sinceCheck = 0; };
  const up = async (what: string) => {
    if (!down) return;
    const ms = await startDaemon();
    restarts[restarts.length - 1] += ` (started in ${(ms / 1000).toFixed(1)} s)`;
    down = false;
    downLeft = 0;
    await wait(what);
  };
  const send = (a: Extract<Action, { kind: 'send' }>) => {
    if (a.rec) {
      if (a.rec.sent === 0) a.rec.killsAtFirstSend = kills;
      a.rec.sent++;
      if (!outstanding.includes(a.rec)) outstanding.push(a.rec);
    }
    const pc = a.poison;
    if (pc) { pc.killsAtSend = kills; undelivered.push(pc); }
    deliveries.push(f.send({ key: a.key, value: a.value, headers: a.headers }).then((d) => { if (pc) pc.place = d; }));
  };

  for (const a of plan.actions) {
    if (a.kind === 'restart') {
      await up('after the daemon came back');
      await withTimeout(Promise.all(deliveries), PROGRESS_MS, 'delivery reports');
      await sleep(a.delayMs);
      if (a.mode === 'kill') { kills++; await f.daemon!.kill(); } else await f.stop();
      restarts.push(`${a.mode === 'kill' ? 'SIGKILL' : 'SIGTERM'} ${a.delayMs} ms after the last send${a.down ? `, ${a.down} steps sent while down` : ''}`);
      down = true;
      downLeft = a.down;
      if (downLeft === 0) await up(`after a ${a.mode === 'kill' ? 'SIGKILL' : 'SIGTERM'}`);
      continue;
    }
    if (a.barrier) {
      await up('after the daemon came back');
      await wait(`before ${a.label}`);
      send(a);
      await wait(a.label);
      continue;
    }
    send(a);
    if (down) {
      if (--downLeft <= 0) await up('after messages sent while it was down');
    } else if (++sinceCheck >= CHECK_EVERY) {
      await wait(`checkpoint after ${a.label}`);
    }
  }
  await up('after the daemon came back');
  await wait('end of run');

  // ── the end state against the model
  const problems: string[] = [];
  for (const r of plan.recs) checkRec(r, problems);
  for (const pc of plan.poison) checkPoison(pc, problems);
  for (const [i, a] of plan.accounts.entries()) {
    // first outcomes of each account in send order (one key, one results partition)
    const firsts = plan.recs.filter((r) => r.acct === i).map((r) => seen.outcomes(r.commandId).find((x) => x.o.status !== 'duplicate')?.at ?? -1);
    if (firsts.some((x, j) => j > 0 && x < firsts[j - 1])) problems.push(`a${i}: first outcomes out of send order: ${firsts.join(',')}`);
    const ev = await f.events(a.id);
    const ids = ev.map((e) => e.command_id);
    if (JSON.stringify(ids) !== JSON.stringify(a.accepted) || ev.some((e, j) => e.version !== j + 1)) {
      problems.push(`a${i} ${a.id}: events [${ev.map((e) => `v${e.version} ${e.event_type} ${e.command_id.slice(0, 8)}`).join(', ')}], want the ${a.accepted.length} accepted commands [${a.accepted.map((c) => c.slice(0, 8)).join(', ')}] in order`);
    }
    const bal = ev.length ? String(ev[ev.length - 1].payload.data.balanceAfter) : undefined;
    if (bal !== String(a.balance)) problems.push(`a${i}: final balanceAfter ${bal}, want ${a.balance}`);
  }
  const { rows: stray } = await f.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE account_id = ANY($1::uuid[])', [plan.freshAccounts]);
  if (stray[0].n !== 0) problems.push(`${stray[0].n} events for accounts only poison tried to open`);
  const ids = [...plan.accounts.map((a) => a.id), ...plan.freshAccounts];
  const { rows: rej } = await f.pg.query<{ a: string; c: string; reason: string }>('SELECT account_id::text AS a, command_id::text AS c, reason FROM command_rejections WHERE account_id = ANY($1::uuid[])', [ids]);
  const wantRej = new Map(plan.recs.filter((r) => r.want.status === 'rejected').map((r) => [`${r.accountId}/${r.commandId}`, (r.want as { reason: string }).reason]));
  const gotRej = new Map(rej.map((r) => [`${r.a}/${r.c}`, r.reason]));
  for (const [k, v] of wantRej) if (gotRej.get(k) !== v) problems.push(`rejection row ${k}: ${gotRej.get(k) ?? 'missing'}, want ${v}`);
  for (const [k, v] of gotRej) if (!wantRej.has(k)) problems.push(`unexpected rejection row ${k} ${v}`);
  const ready = await f.daemon!.get('/readyz');
  if (ready.status !== 200) problems.push(`not ready: ${ready.status} ${ready.body}`);
  const stalled = (await f.daemon!.get('/metrics')).body.split('\n').find((l) => l.startsWith('banking_es_pipeline_stalled{pipeline="commands"}'));
  if (stalled !== 'banking_es_pipeline_stalled{pipeline="commands"} 0') problems.push(`stalled: ${stalled}`);
  collectErrorLogs();

  const letters = plan.poison.reduce((s, pc) => s + seen.letters(f.topics.commands, pc.place).length, 0);
  const outcomes = plan.recs.reduce((s, r) => s + seen.outcomes(r.commandId).length, 0);
  const owed = plan.recs.reduce((s, r) => s + r.sent, 0);
  const c = plan.counts;
  const poisonKinds = Object.keys(c).filter((k) => k.startsWith('poison:')).map((k) => `${k.slice(7)}×${c[k]}`).join(' ');
  console.log(`run ${run}: ${plan.accounts.length} accounts, ${sc.steps.length} steps: ${c.valid ?? 0} valid, ${c.barrier ?? 0} barrier-keyed, ${c.invalid ?? 0} invalid, ${c.resend ?? 0} re-sends, ` +
    `${plan.poison.length} poison copies (${poisonKinds}); restarts: ${restarts.join('; ') || 'none'}; ${plan.recs.length} commands sent ${owed} times → ${outcomes} outcomes (${outcomes - owed} re-published), ${letters} dead letters (${letters - plan.poison.length} repeated); ` +
    `max progress wait ${(maxWait / 1000).toFixed(2)} s; ${((Date.now() - t0) / 1000).toFixed(1)} s${kills > killsBefore ? ` (${kills - killsBefore} SIGKILLs)` : ''}`);
  if (problems.length) throw new Error(`run ${run}: ${problems.length} problems:\n  ${problems.slice(0, 15).join('\n  ')}`);
}

test('liveness: generated interleavings of commands, poison, re-sends and restarts never stop the ledger', async () => {
  const t0 = Date.now();
  fx = await PipelineFixture.create('liveness', { LIMITS_MAX_MESSAGE_BYTES: String(MAX_BYTES) });
  seen = new Seen(fx);
  await startDaemon();
  console.log(`liveness property: seed ${SEED}, ${RUNS} runs (replay with LIVENESS_SEED=${SEED} LIVENESS_RUNS=${RUNS})`);
  let run = 0;
  await fc.assert(fc.asyncProperty(scenario, async (sc) => {
    run++;
    try {
      await runScenario(sc, run);
    } catch (e) {
      console.log(`run ${run} FAILED: ${(e as Error).message}\nscenario: ${(sc as unknown as Record<symbol, () => string>)[fc.toStringMethod]()}`);
      throw e;
    }
  }), { numRuns: RUNS, seed: SEED, endOnFailure: true, includeErrorInReport: true });

  // across all runs: late re-publications still identical, nothing unknown answered or dead-lettered
  await sleep(300);
  seen.scan();
  const problems: string[] = [];
  for (const r of allRecs) checkRec(r, problems);
  for (const pc of allPoison) checkPoison(pc, problems);
  const known = new Set(allRecs.map((r) => r.commandId));
  for (const [id, outs] of seen.byCmd) {
    if (!known.has(id)) problems.push(`an outcome for ${silent.has(id) ? 'a poison or decoy' : 'an unknown'} commandId: ${JSON.stringify(outs[0].o).slice(0, 300)}`);
  }
  if (seen.unreadable.length) problems.push(`${seen.unreadable.length} unreadable outcomes, e.g. ${seen.unreadable[0].slice(0, 200)}`);
  const places = new Set(allPoison.map((pc) => `${fx!.topics.commands}|${pc.place?.partition}:${pc.place?.offset}`));
  for (const [k, ms] of seen.byPlace) if (!places.has(k)) problems.push(`${ms.length} dead letters for ${k}, which is no poison: ${ms[0].headers['error.code']} ${ms[0].headers['error.message']}`);
  collectErrorLogs();
  const grouped = new Map<string, number>();
  for (const l of errorLines) grouped.set(l, (grouped.get(l) ?? 0) + 1);
  console.log(`${run} runs, ${allRecs.length} commands, ${allPoison.length} poison copies, ${kills} SIGKILLs, ${fx.dlqMessages().length} dead letters in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
    `error-level log lines besides poison reports: ${errorLines.length ? [...grouped].map(([l, n]) => `${n}× ${l}`).join(' | ') : 'none'}`);
  assert.equal(problems.slice(0, 15), [], `${problems.length} problems across runs`);
  await fx.stop();
});

test.run();
