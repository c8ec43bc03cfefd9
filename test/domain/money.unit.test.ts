import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addMinor, formatMoney, parseMinor, parseMoney } from '../../src/domain/money';
import { currencyCodes, fractionDigits } from '../../src/domain/currency';

const ALLOW = { allowZero: true };
const NO_ZERO = { allowZero: false };

const valid: [string, number, number][] = [
  ['0.01', 2, 1],
  ['0.1', 2, 10],
  ['1000.10', 2, 100010],
  ['10.5', 2, 1050],
  ['0', 2, 0],
  ['0.00', 2, 0],
  ['5', 0, 5],
  ['1.234', 3, 1234],
  ['1.2345', 4, 12345],
  ['90071992547409.91', 2, Number.MAX_SAFE_INTEGER],
  ['9007199254740991', 0, Number.MAX_SAFE_INTEGER],
  ['0.29', 2, 29], // 0.29 * 100 is 28.999999999999996 in floating point
];

for (const [text, digits, minor] of valid) {
  test(`parseMoney(${JSON.stringify(text)}, ${digits}) = ${minor}`, () => {
    assert.is(parseMoney(text, digits, ALLOW), minor);
  });
}

const invalid: [unknown, number, string][] = [
  ['1e3', 2, 'FORMAT'],
  ['1E3', 2, 'FORMAT'],
  ['-0', 2, 'NEGATIVE'],
  ['-1', 2, 'NEGATIVE'],
  ['-1.50', 2, 'NEGATIVE'],
  ['-1.001', 2, 'NEGATIVE'],
  ['-', 2, 'FORMAT'],
  ['-x', 2, 'FORMAT'],
  ['--1', 2, 'FORMAT'],
  ['1.', 2, 'FORMAT'],
  ['.5', 2, 'FORMAT'],
  ['1..5', 2, 'FORMAT'],
  ['1.2.3', 2, 'FORMAT'],
  ['NaN', 2, 'FORMAT'],
  ['Infinity', 2, 'FORMAT'],
  [' 1', 2, 'FORMAT'],
  ['1 ', 2, 'FORMAT'],
  ['+1', 2, 'FORMAT'],
  ['01', 2, 'FORMAT'],
  ['007', 2, 'FORMAT'],
  ['00', 2, 'FORMAT'],
  ['00.5', 2, 'FORMAT'],
  ['0x10', 2, 'FORMAT'],
  ['1,5', 2, 'FORMAT'],
  ['１', 2, 'FORMAT'], // full-width digit
  ['', 2, 'FORMAT'],
  ['1.001', 2, 'TOO_MANY_DECIMALS'],
  ['1.000', 2, 'TOO_MANY_DECIMALS'],
  ['1.5', 0, 'TOO_MANY_DECIMALS'],
  ['1.0', 0, 'TOO_MANY_DECIMALS'],
  ['1.23456', 4, 'TOO_MANY_DECIMALS'],
  ['90071992547409.92', 2, 'TOO_LARGE'],
  ['9007199254740992', 0, 'TOO_LARGE'],
  ['100000000000000', 2, 'TOO_LARGE'],
  ['1' + '0'.repeat(40), 2, 'TOO_LARGE'],
  ['1' + '0'.repeat(40) + 'x', 2, 'FORMAT'],
  [10, 2, 'FORMAT'],
  [0.1, 2, 'FORMAT'],
  [null, 2, 'FORMAT'],
  [undefined, 2, 'FORMAT'],
  [{}, 2, 'FORMAT'],
  [10n, 2, 'FORMAT'],
];

for (const [text, digits, err] of invalid) {
  const label = typeof text === 'bigint' ? `${text}n` : JSON.stringify(text) ?? String(text);
  test(`parseMoney(${label}, ${digits}) = ${err}`, () => {
    assert.is(parseMoney(text, digits, ALLOW), err);
  });
}

test('zero is refused unless allowed', () => {
  assert.is(parseMoney('0', 2, NO_ZERO), 'ZERO');
  assert.is(parseMoney('0.00', 2, NO_ZERO), 'ZERO');
  assert.is(parseMoney('0.01', 2, NO_ZERO), 1);
  assert.is(parseMoney('0', 2, ALLOW), 0);
});

test('formatMoney is exact', () => {
  assert.is(formatMoney(100010, 2), '1000.10');
  assert.is(formatMoney(1, 2), '0.01');
  assert.is(formatMoney(10, 2), '0.10');
  assert.is(formatMoney(0, 2), '0.00');
  assert.is(formatMoney(5, 0), '5');
  assert.is(formatMoney(0, 0), '0');
  assert.is(formatMoney(1234, 3), '1.234');
  assert.is(formatMoney(1, 4), '0.0001');
  assert.is(formatMoney(Number.MAX_SAFE_INTEGER, 2), '90071992547409.91');
  assert.is(formatMoney(-150, 2), '-1.50');
});

test('formatMoney and parseMoney round trip', () => {
  const samples = [0, 1, 9, 10, 99, 100, 101, 123456789, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER];
  for (const digits of [0, 2, 3, 4]) {
    for (const minor of samples) {
      const text = formatMoney(minor, digits);
      assert.is(parseMoney(text, digits, ALLOW), minor, `${minor} @${digits} via ${text}`);
    }
  }
  // Canonicalisation: "10.5" USD is stored as "10.50".
  assert.is(formatMoney(parseMoney('10.5', 2, ALLOW) as number, 2), '10.50');
});

test('addMinor refuses to leave the safe range', () => {
  assert.is(addMinor(1, 2), 3);
  assert.is(addMinor(Number.MAX_SAFE_INTEGER - 1, 1), Number.MAX_SAFE_INTEGER);
  assert.is(addMinor(Number.MAX_SAFE_INTEGER, 1), 'TOO_LARGE');
  assert.is(addMinor(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), 'TOO_LARGE');
});

test('parseMinor reads stored balances only in canonical form', () => {
  assert.is(parseMinor('0'), 0);
  assert.is(parseMinor('100010'), 100010);
  assert.is(parseMinor('1.5'), undefined);
  assert.is(parseMinor('-1'), undefined);
  assert.is(parseMinor(5), undefined);
});

test('fractionDigits follows ISO 4217', () => {
  const expected: Record<string, number> = {
    USD: 2, EUR: 2, GBP: 2, JPY: 0, KRW: 0, VND: 0, ISK: 0, CLP: 0,
    BHD: 3, KWD: 3, JOD: 3, OMR: 3, TND: 3, LYD: 3, IQD: 3, CLF: 4, UYW: 4,
  };
  for (const [code, digits] of Object.entries(expected)) assert.is(fractionDigits(code), digits, code);
  for (const code of ['usd', 'XXX', 'XAU', 'XDR', '', '__proto__', 'toString', 'constructor']) {
    assert.is(fractionDigits(code), undefined, code);
  }
  const codes = currencyCodes();
  assert.ok(codes.length > 150, `only ${codes.length} codes`);
  assert.is(new Set(codes).size, codes.length);
  for (const c of codes) assert.ok(/^[A-Z]{3}$/.test(c), c);
});

test.run();
