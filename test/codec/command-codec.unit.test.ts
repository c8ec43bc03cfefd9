import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeCommand, isUuid, type Decoded } from '../../src/codec/command';

const CMD = '5f0c6b1e-2a3d-4c55-9a8e-5a7f4f0f7a11';
const ACC = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a22';
const MAX = 64 * 1024;
const key = Buffer.from(ACC);

function dec(body: unknown, k: Buffer | null = key): Decoded {
  return decodeCommand(k, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), MAX);
}

function expectDlq(d: Decoded, code: string): void {
  assert.is(d.kind, 'dlq', JSON.stringify(d));
  if (d.kind === 'dlq') {
    assert.is(d.code, code);
    assert.ok(d.message.length > 0);
  }
}

function expectInvalid(d: Decoded<unknown>, field: RegExp, accountId = ACC): void {
  assert.is(d.kind, 'invalid', JSON.stringify(d));
  if (d.kind === 'invalid') {
    assert.match(d.message, field);
    assert.is(d.commandId, CMD);
    assert.is(d.accountId, accountId);
  }
}

const deposit = { commandId: CMD, accountId: ACC, type: 'Deposit', amount: '10.00' };

test('isUuid', () => {
  assert.ok(isUuid(CMD));
  assert.ok(isUuid(CMD.toUpperCase()));
  for (const s of ['', CMD.slice(1), CMD + 'a', CMD.replace(/-/g, ''), CMD.replace('5f', 'zz'), '5f0c6b1e-2a3d-4c55-9a8e_5a7f4f0f7a11', CMD.replace('5f', 'é5')]) {
    assert.not.ok(isUuid(s), s);
  }
});

test('each command type decodes', () => {
  assert.equal(dec({ commandId: CMD, accountId: ACC, type: 'OpenAccount', ownerName: 'Ada', currency: 'EUR', initialBalance: '5.00' }), {
    kind: 'ok',
    command: { type: 'OpenAccount', commandId: CMD, accountId: ACC, ownerName: 'Ada', currency: 'EUR', initialBalance: '5.00' },
  });
  assert.equal(dec({ ...deposit, expectedVersion: 3, extra: { ignored: true } }), {
    kind: 'ok', command: { type: 'Deposit', commandId: CMD, accountId: ACC, amount: '10.00', expectedVersion: 3 },
  });
  assert.equal(dec({ ...deposit, type: 'Withdraw', amount: '1' }), {
    kind: 'ok', command: { type: 'Withdraw', commandId: CMD, accountId: ACC, amount: '1' },
  });
  assert.equal(dec({ commandId: CMD, accountId: ACC, type: 'CloseAccount', reason: 'bye', expectedVersion: 0 }), {
    kind: 'ok', command: { type: 'CloseAccount', commandId: CMD, accountId: ACC, reason: 'bye', expectedVersion: 0 },
  });
});

test('OpenAccount defaults and nulls as absent', () => {
  assert.equal(dec({ commandId: CMD, accountId: ACC, type: 'OpenAccount', ownerName: 'Ada' }), {
    kind: 'ok', command: { type: 'OpenAccount', commandId: CMD, accountId: ACC, ownerName: 'Ada', currency: 'USD', initialBalance: '0' },
  });
  assert.equal(dec({ commandId: CMD, accountId: ACC, type: 'OpenAccount', ownerName: 'Ada', currency: null, initialBalance: null, expectedVersion: null }), {
    kind: 'ok', command: { type: 'OpenAccount', commandId: CMD, accountId: ACC, ownerName: 'Ada', currency: 'USD', initialBalance: '0' },
  });
});

test('uppercase UUIDs are normalized and keys compare case-insensitively', () => {
  const d = decodeCommand(Buffer.from(ACC.toUpperCase()), Buffer.from(JSON.stringify({ ...deposit, commandId: CMD.toUpperCase(), accountId: ACC.toUpperCase() })), MAX);
  assert.equal(d, { kind: 'ok', command: { type: 'Deposit', commandId: CMD, accountId: ACC, amount: '10.00' } });
  assert.is(dec({ ...deposit, accountId: ACC.toUpperCase() }).kind, 'ok');
});

test('a missing or empty key is accepted', () => {
  assert.is(dec(deposit, null).kind, 'ok');
  assert.is(decodeCommand(undefined, Buffer.from(JSON.stringify(deposit)), MAX).kind, 'ok');
  assert.is(dec(deposit, Buffer.alloc(0)).kind, 'ok');
});

test('DLQ: EMPTY_VALUE for tombstones and empty values', () => {
  expectDlq(decodeCommand(key, null, MAX), 'EMPTY_VALUE');
  expectDlq(decodeCommand(key, undefined, MAX), 'EMPTY_VALUE');
  expectDlq(decodeCommand(key, Buffer.alloc(0), MAX), 'EMPTY_VALUE');
});

test('DLQ: TOO_LARGE before anything is parsed', () => {
  const body = JSON.stringify({ ...deposit, pad: 'x'.repeat(200) });
  expectDlq(decodeCommand(key, Buffer.from(body), 100), 'TOO_LARGE');
  assert.is(decodeCommand(key, Buffer.from(body), Buffer.byteLength(body)).kind, 'ok');
  expectDlq(decodeCommand(key, Buffer.alloc(10 * 1024 * 1024, 0x5b), MAX), 'TOO_LARGE'); // 10 MiB of '['
});

test('DLQ: NOT_UTF8', () => {
  expectDlq(decodeCommand(key, Buffer.from([0xff, 0xfe]), MAX), 'NOT_UTF8');
  const good = Buffer.from(JSON.stringify({ ...deposit, note: 'ab' }));
  const bad = Buffer.from(good);
  bad[bad.indexOf('ab')] = 0xc3; // lone lead byte inside a string value
  expectDlq(decodeCommand(key, bad, MAX), 'NOT_UTF8');
  expectDlq(decodeCommand(key, Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), MAX), 'NOT_UTF8'); // encoded surrogate
  // A real U+FFFD in the input is valid UTF-8.
  assert.is(dec({ ...deposit, note: '\ufffd' }).kind, 'ok');
});

test('DLQ: NOT_JSON and NOT_OBJECT', () => {
  for (const s of ['{', 'hello', '{"a":1}x', "{'a':1}"]) expectDlq(dec(s), 'NOT_JSON');
  for (const s of ['[]', '[1]', 'null', '1', '"str"', 'true']) expectDlq(dec(s), 'NOT_OBJECT');
  // Deep nesting within the byte limit must not crash.
  const deep = '['.repeat(60000) + ']'.repeat(60000);
  const d = decodeCommand(key, Buffer.from(deep), 200000);
  assert.ok(d.kind === 'dlq');
});

test('DLQ: NO_COMMAND_ID', () => {
  expectDlq(dec({ ...deposit, commandId: undefined }), 'NO_COMMAND_ID');
  expectDlq(dec({ ...deposit, commandId: 'abc' }), 'NO_COMMAND_ID');
  expectDlq(dec({ ...deposit, commandId: 42 }), 'NO_COMMAND_ID');
  expectDlq(dec({ ...deposit, commandId: null }), 'NO_COMMAND_ID');
});

test('DLQ: NO_ACCOUNT_ID when neither accountId nor the key is a UUID', () => {
  expectDlq(dec({ ...deposit, accountId: undefined }, null), 'NO_ACCOUNT_ID');
  expectDlq(dec({ ...deposit, accountId: 'nope' }, Buffer.from('nope')), 'NO_ACCOUNT_ID');
});

test('invalid accountId with a UUID key is answered under the key', () => {
  expectInvalid(dec({ ...deposit, accountId: 'nope' }), /accountId/);
  expectInvalid(dec({ ...deposit, accountId: 5 }, Buffer.from(ACC.toUpperCase())), /accountId/);
});

test('DLQ: KEY_MISMATCH', () => {
  expectDlq(dec(deposit, Buffer.from(CMD)), 'KEY_MISMATCH');
  expectDlq(dec(deposit, Buffer.from('not-a-uuid')), 'KEY_MISMATCH');
});

test('invalid fields name the field', () => {
  const open = { commandId: CMD, accountId: ACC, type: 'OpenAccount', ownerName: 'Ada' };
  const cases: [unknown, RegExp][] = [
    [{ ...deposit, type: 'Transfer' }, /type must be one of/],
    [{ ...deposit, type: undefined }, /type must be one of/],
    [{ ...deposit, type: 7 }, /type must be one of/],
    [{ ...open, ownerName: undefined }, /ownerName/],
    [{ ...open, ownerName: '' }, /ownerName/],
    [{ ...open, ownerName: 'x'.repeat(201) }, /ownerName/],
    [{ ...open, ownerName: 42 }, /ownerName/],
    [{ ...open, currency: 'usd' }, /currency/],
    [{ ...open, currency: 'US' }, /currency/],
    [{ ...open, currency: 'USDX' }, /currency/],
    [{ ...open, currency: 840 }, /currency/],
    [{ ...open, initialBalance: 5 }, /initialBalance must be a decimal string/],
    [{ ...deposit, amount: 10 }, /amount must be a decimal string/],
    [{ ...deposit, amount: undefined }, /amount must be a decimal string/],
    [{ ...deposit, type: 'Withdraw', amount: null }, /amount must be a decimal string/],
    [{ commandId: CMD, accountId: ACC, type: 'CloseAccount', reason: 'x'.repeat(501) }, /reason/],
    [{ commandId: CMD, accountId: ACC, type: 'CloseAccount', reason: 5 }, /reason/],
    [{ ...deposit, expectedVersion: -1 }, /expectedVersion/],
    [{ ...deposit, expectedVersion: 1.5 }, /expectedVersion/],
    [{ ...deposit, expectedVersion: '3' }, /expectedVersion/],
    [{ ...deposit, expectedVersion: 2 ** 53 }, /expectedVersion/],
  ];
  for (const [body, re] of cases) expectInvalid(dec(body), re);
});

test('an invalid result echoes the type', () => {
  const d = dec({ ...deposit, amount: 1 });
  assert.is(d.kind === 'invalid' && d.type, 'Deposit');
  const long = dec({ ...deposit, type: 'T'.repeat(1000) });
  assert.is(long.kind === 'invalid' && long.type.length, 64);
});

test('length limits count characters, not UTF-16 units', () => {
  const open = { commandId: CMD, accountId: ACC, type: 'OpenAccount', ownerName: '😀'.repeat(200) };
  assert.is(dec(open).kind, 'ok');
  expectInvalid(dec({ ...open, ownerName: '😀'.repeat(201) }), /ownerName/);
  assert.is(dec({ commandId: CMD, accountId: ACC, type: 'CloseAccount', reason: 'é'.repeat(500) }).kind, 'ok');
});

test('__proto__ payloads have no effect', () => {
  const raw = `{"__proto__":{"polluted":1,"amount":"99"},"constructor":{"prototype":{"polluted":2}},"commandId":"${CMD}","accountId":"${ACC}","type":"Deposit","amount":"1.00"}`;
  const d = dec(raw);
  assert.equal(d, { kind: 'ok', command: { type: 'Deposit', commandId: CMD, accountId: ACC, amount: '1.00' } });
  assert.is(({} as Record<string, unknown>).polluted, undefined);
  assert.is(Object.getPrototypeOf(d.kind === 'ok' ? d.command : null), Object.prototype);
  // Fields reachable only through a prototype are not fields.
  const viaProto = `{"__proto__":{"amount":"5.00"},"commandId":"${CMD}","accountId":"${ACC}","type":"Deposit"}`;
  expectInvalid(dec(viaProto), /amount/);
});

test('a polluted Object.prototype does not leak into commands', () => {
  const proto = Object.prototype as Record<string, unknown>;
  proto.amount = '1000000';
  proto.expectedVersion = 'bad';
  try {
    const d = dec({ commandId: CMD, accountId: ACC, type: 'Deposit' });
    expectInvalid(d, /amount/);
    assert.is(dec(deposit).kind, 'ok');
  } finally {
    delete proto.amount;
    delete proto.expectedVersion;
  }
});


test('where transfers are off (transfers.enabled false), Transfer and the internal steps are INVALID_COMMAND', () => {
  const T = '1c7e7d2f-9b6e-4d66-8b9f-6b8a5a1a8b22';
  const forged = [
    { commandId: CMD, accountId: ACC, type: 'Transfer', toAccountId: T, amount: '1.00' },
    { commandId: CMD, accountId: ACC, type: 'CreditTransfer', transferId: T, fromAccountId: T, amount: '1.00', currency: 'USD' },
    { commandId: CMD, accountId: ACC, type: 'RefundTransfer', transferId: T, toAccountId: T, amount: '1.00', currency: 'USD', reason: 'DESTINATION_CLOSED' },
  ];
  for (const body of forged) {
    const d = dec(body);
    expectInvalid(d, /type must be one of OpenAccount, Deposit, Withdraw, CloseAccount/);
    assert.is(d.kind === 'invalid' && d.type, body.type, 'the outcome echoes the type');
  }
});

test('Transfer decodes where transfers run; the internal steps stay refused', () => {
  const T = '1C7E7D2F-9B6E-4D66-8B9F-6B8A5A1A8B22';
  const on = (body: unknown) => decodeCommand(key, Buffer.from(JSON.stringify(body)), MAX, true);
  assert.equal(on({ commandId: CMD, accountId: ACC, type: 'Transfer', toAccountId: T, amount: '1.00', expectedVersion: 3 }), {
    kind: 'ok', command: { type: 'Transfer', commandId: CMD, accountId: ACC, toAccountId: T.toLowerCase(), amount: '1.00', expectedVersion: 3 },
  });
  expectInvalid(on({ commandId: CMD, accountId: ACC, type: 'Transfer', toAccountId: 'nope', amount: '1.00' }), /toAccountId must be a UUID/);
  expectInvalid(on({ commandId: CMD, accountId: ACC, type: 'Transfer', toAccountId: T, amount: 1 }), /amount must be a decimal string/);
  expectInvalid(on({ commandId: CMD, accountId: ACC, type: 'Transfer', toAccountId: T, amount: '1', expectedVersion: -1 }), /expectedVersion/);
  expectInvalid(on({ commandId: CMD, accountId: ACC, type: 'CreditTransfer', transferId: T, fromAccountId: T, amount: '1.00', currency: 'USD' }), /type must be one of OpenAccount, Deposit, Withdraw, CloseAccount, Transfer/);
});

test.run();
