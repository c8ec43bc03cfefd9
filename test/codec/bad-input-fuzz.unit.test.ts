/**
 * Property-based fuzzing of the two parsers that see untrusted bytes first
 * (docs/reliability.md §6): decodeCommand (docs/architecture.md §2.1, §2.3) and parseMoney.
 * 110,000 generated inputs in all, seeded so a failure replays. decodeCommand
 * never throws, always returns one of its three kinds with the right shape,
 * never lets `__proto__` & co. reach the command or Object.prototype;
 * parseMoney agrees exactly with a BigInt reference implementation.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { decodeCommand, isUuid, type Decoded } from '../../src/codec/command';
import { parseMoney } from '../../src/domain/money';

const SEED = Number(process.env.FUZZ_SEED ?? 424242);
const MAX_BYTES = 4096;
const DLQ_CODES = new Set(['EMPTY_VALUE', 'TOO_LARGE', 'NOT_UTF8', 'NOT_JSON', 'NOT_OBJECT', 'NO_COMMAND_ID', 'NO_ACCOUNT_ID', 'KEY_MISMATCH']);
const TYPES = new Set(['OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount']);
let runs = 0;

function run<T>(arb: fc.Arbitrary<T>, numRuns: number, check: (v: T) => void): void {
  fc.assert(fc.property(arb, (v) => { check(v); }), { numRuns, seed: SEED });
  runs += numRuns;
}

/** The shape every decodeCommand result must have, whatever came in. */
function checkDecoded(d: Decoded, key: Buffer | null): void {
  assert.ok(d && typeof d === 'object', 'a result');
  switch (d.kind) {
    case 'ok': {
      const c = d.command;
      assert.is(Object.getPrototypeOf(c), Object.prototype);
      assert.ok(isUuid(c.commandId) && c.commandId === c.commandId.toLowerCase(), c.commandId);
      assert.ok(isUuid(c.accountId) && c.accountId === c.accountId.toLowerCase(), c.accountId);
      assert.ok(TYPES.has(c.type), c.type);
      if (key && key.length) assert.is(key.toString('utf8').toLowerCase(), c.accountId);
      for (const k of Object.keys(c)) assert.ok(!['__proto__', 'constructor', 'prototype'].includes(k), `command has key ${k}`);
      if (c.type === 'Deposit' || c.type === 'Withdraw') assert.type(c.amount, 'string');
      if (c.type === 'OpenAccount') { assert.type(c.ownerName, 'string'); assert.type(c.currency, 'string'); assert.type(c.initialBalance, 'string'); }
      if (c.expectedVersion !== undefined) assert.ok(Number.isSafeInteger(c.expectedVersion) && c.expectedVersion >= 0);
      break;
    }
    case 'invalid':
      assert.ok(isUuid(d.commandId) && isUuid(d.accountId));
      assert.type(d.message, 'string');
      assert.ok(d.type.length <= 64, 'echoed type is bounded');
      break;
    case 'dlq':
      assert.ok(DLQ_CODES.has(d.code), d.code);
      assert.type(d.message, 'string');
      break;
    default:
      assert.unreachable(`unknown kind ${JSON.stringify(d)}`);
  }
  assert.is(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype was polluted');
}

function decode(key: Buffer | null, value: Buffer | null): Decoded {
  let d: Decoded | undefined;
  try {
    d = decodeCommand(key, value, MAX_BYTES);
  } catch (e) {
    assert.unreachable(`decodeCommand threw ${(e as Error).stack} on key=${key?.toString('hex')} value=${value?.toString('hex')}`);
  }
  checkDecoded(d!, key);
  return d!;
}

const uuid = fc.uuid().map((u) => u);
const hostileKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', 'toString', 'hasOwnProperty');
const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(-0, 1e21, 1.5e-7, Number.MAX_SAFE_INTEGER + 2, '1e3', '-0', '0.001', 'NaN', '', '\u0000', '1.00', '10.5'));
const fieldValue = (good: fc.Arbitrary<unknown>) => fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: anyValue });

/** Objects near the command shape: right and wrong fields, hostile keys, nesting. */
const commandish = fc.record({
  commandId: fieldValue(uuid),
  accountId: fieldValue(uuid),
  type: fieldValue(fc.constantFrom('OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount', 'deposit', 'Transfer', 'x'.repeat(100))),
  amount: fieldValue(fc.constantFrom('1.00', '0.01', '1e3', '-0', '0', '1.001', '00.5', '9007199254740992')),
  expectedVersion: fieldValue(fc.integer({ min: -2, max: 5 })),
  ownerName: fieldValue(fc.string({ maxLength: 210 })),
  currency: fieldValue(fc.constantFrom('USD', 'JPY', 'KWD', 'XXX', 'usd', '__proto__')),
  initialBalance: fieldValue(fc.constantFrom('0', '10.50', '1.234', '-1')),
  reason: fieldValue(fc.string({ maxLength: 600 })),
}, { requiredKeys: [] }).chain((o) => fc.tuple(fc.constant(o), fc.dictionary(hostileKey, anyValue, { maxKeys: 3 })));

function toJsonWithHostileKeys(o: Record<string, unknown>, extra: Record<string, unknown>): string {
  // JSON.stringify drops a "__proto__" own key made by a literal; write them by hand
  const parts = Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`);
  for (const [k, v] of Object.entries(extra)) parts.push(`${JSON.stringify(k)}:${JSON.stringify(k === '__proto__' ? { polluted: true, v } : v) ?? 'null'}`);
  return `{${parts.join(',')}}`;
}

test('decodeCommand: random bytes (30,000) never throw', () => {
  run(fc.tuple(fc.option(fc.uint8Array({ maxLength: 40 })), fc.option(fc.uint8Array({ maxLength: 300 }))), 30000, ([k, v]) => {
    decode(k ? Buffer.from(k) : null, v ? Buffer.from(v) : null);
  });
});

test('decodeCommand: arbitrary JSON and arbitrary strings (30,000)', () => {
  run(fc.tuple(fc.option(fc.oneof(uuid, fc.string())), fc.oneof(fc.jsonValue({ maxDepth: 6 }).map((j) => JSON.stringify(j) ?? 'null'), fc.string({ unit: 'binary', maxLength: 200 }))), 30000, ([k, v]) => {
    decode(k === null ? null : Buffer.from(k), Buffer.from(v));
  });
});

test('decodeCommand: near-commands with hostile keys (30,000)', () => {
  run(fc.tuple(fc.option(uuid), commandish, fc.boolean()), 30000, ([k, [o, extra], keyIsAccount]) => {
    const key = keyIsAccount && typeof o.accountId === 'string' ? o.accountId.toUpperCase() : k;
    const d = decode(key === null || key === undefined ? null : Buffer.from(key), Buffer.from(toJsonWithHostileKeys(o as Record<string, unknown>, extra)));
    if (d.kind === 'ok') {
      assert.is(d.command.commandId, (o.commandId as string).toLowerCase());
      if ('amount' in d.command) assert.is(d.command.amount, o.amount);
    }
  });
});

test('decodeCommand: deeply nested and oversized values go to the DLQ, not the stack', () => {
  const deep = Buffer.from('['.repeat(200000) + ']'.repeat(200000));
  assert.is(decodeCommand(null, deep, 1 << 20).kind, 'dlq');
  const deepObj = Buffer.from(`{"commandId":"${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}","x":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`);
  const d = decodeCommand(null, deepObj, 1 << 20);
  assert.ok(d.kind === 'dlq' || d.kind === 'invalid', d.kind);
  assert.equal(decodeCommand(null, Buffer.alloc(MAX_BYTES + 1, 0x20), MAX_BYTES).kind, 'dlq');
});

/** The reference: regular expression for syntax, BigInt for value. */
function referenceMoney(text: unknown, digits: number, allowZero: boolean): number | string {
  if (typeof text !== 'string') return 'FORMAT';
  const m = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?$/.exec(text);
  if (!m) return 'FORMAT';
  if (m[1]) return 'NEGATIVE';
  const frac = m[3] ?? '';
  if (frac.length > digits) return 'TOO_MANY_DECIMALS';
  const v = BigInt(m[2] + frac) * 10n ** BigInt(digits - frac.length);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return 'TOO_LARGE';
  if (v === 0n && !allowZero) return 'ZERO';
  return Number(v);
}

const digitString = (max: number) => fc.array(fc.constantFrom(...'0123456789'), { minLength: 0, maxLength: max }).map((a) => a.join(''));
/** Mostly well-formed decimals (where the bugs hide), some near misses. */
const moneyText = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('', '', '', '-'), digitString(20), fc.option(digitString(6)), fc.constantFrom('', '', '', '', 'e3', ' ', '.', '\u0661')).map(([s, i, f, t]) => `${s}${i}${f === null ? '' : `.${f}`}${t}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 10n ** 20n }).map((b) => b.toString()) },
  { weight: 1, arbitrary: fc.constantFrom('90071992547409.91', '90071992547409.92', '9007199254740991', '9007199254740992', '0.00', '-0', '-0.00', '1e2', '1E2', '0x10', 'Infinity', 'NaN', '١') },
);

test('parseMoney agrees with a BigInt reference (20,000 strings)', () => {
  run(fc.tuple(moneyText, fc.constantFrom(0, 2, 3, 4), fc.boolean()), 20000, ([text, digits, allowZero]) => {
    let got: number | string;
    try { got = parseMoney(text, digits, { allowZero }); } catch (e) { assert.unreachable(`parseMoney threw on ${JSON.stringify(text)}: ${(e as Error).message}`); return; }
    assert.is(got, referenceMoney(text, digits, allowZero), `parseMoney(${JSON.stringify(text)}, ${digits}, allowZero=${allowZero})`);
    if (typeof got === 'number') assert.ok(Number.isSafeInteger(got) && got >= 0);
  });
});

test('parseMoney: non-strings are FORMAT, never a number (1,000)', () => {
  run(fc.oneof(fc.double(), fc.integer(), fc.constant(null), fc.constant(undefined), fc.object(), fc.array(fc.string())), 1000, (v) => {
    assert.is(parseMoney(v, 2, { allowZero: true }), 'FORMAT');
  });
});

test('at least 100,000 inputs were generated', () => {
  assert.ok(runs >= 100000, `${runs} runs`);
  console.log(`${runs} generated inputs (seed ${SEED})`);
});

test.run();
