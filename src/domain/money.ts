/**
 * Exact money: decimal strings at the edges, integer minor units inside.
 *
 * Minor units are JS numbers restricted to safe integers, which covers
 * 90 trillion dollars in cents and keeps the hot path free of bigint. Parsing
 * scans digits; parseFloat would round "0.29" and accept "1e3" or " 1".
 */

export type MoneyError = 'FORMAT' | 'TOO_MANY_DECIMALS' | 'NEGATIVE' | 'ZERO' | 'TOO_LARGE';

const MAX = Number.MAX_SAFE_INTEGER;
const CH_0 = 48;
const CH_9 = 57;
const CH_DOT = 46;
const CH_MINUS = 45;

/**
 * Parses a canonical non-negative decimal string into minor units of a
 * currency with `digits` fraction digits.
 *
 * Syntax errors win over value errors, so "-1x" is FORMAT; then a sign wins,
 * so "-1.001" is NEGATIVE.
 * Trailing zeros count as fraction digits: "1.000" is not a USD amount,
 * because the sender claims a precision the ledger cannot keep.
 */
export function parseMoney(text: unknown, digits: number, opts: { allowZero: boolean }): number | MoneyError {
  if (typeof text !== 'string') return 'FORMAT';
  const len = text.length;
  let i = 0;
  let negative = false;
  if (len > 0 && text.charCodeAt(0) === CH_MINUS) {
    negative = true;
    i = 1;
  }
  if (i >= len) return 'FORMAT';

  const first = text.charCodeAt(i);
  if (first < CH_0 || first > CH_9) return 'FORMAT';
  // A leading zero may only be the whole integer part ("0" or "0.xx").
  if (first === CH_0 && i + 1 < len && text.charCodeAt(i + 1) !== CH_DOT) return 'FORMAT';

  let value = 0;
  let overflow = false;
  let fracDigits = -1; // -1 until a dot is seen
  for (; i < len; i++) {
    const c = text.charCodeAt(i);
    if (c === CH_DOT) {
      if (fracDigits !== -1) return 'FORMAT';
      fracDigits = 0;
      continue;
    }
    if (c < CH_0 || c > CH_9) return 'FORMAT';
    if (fracDigits !== -1) fracDigits++;
    if (!overflow) {
      // value is always an exact safe integer here, so an overflowing
      // product rounds to at least 2^53 and the comparison stays exact.
      value = value * 10 + (c - CH_0);
      if (value > MAX) overflow = true;
    }
  }
  if (fracDigits === 0) return 'FORMAT'; // "1."
  if (negative) return 'NEGATIVE';
  if (fracDigits > digits) return 'TOO_MANY_DECIMALS';
  if (overflow) return 'TOO_LARGE';

  for (let pad = fracDigits === -1 ? digits : digits - fracDigits; pad > 0; pad--) {
    value *= 10;
    if (value > MAX) return 'TOO_LARGE';
  }
  if (value === 0 && !opts.allowZero) return 'ZERO';
  return value;
}

/** Formats minor units as a canonical decimal string: (100010, 2) → "1000.10". */
export function formatMoney(minor: number, digits: number): string {
  if (minor < 0) return '-' + formatMoney(-minor, digits);
  // String() of a safe integer never uses exponent notation (that starts at 1e21).
  const s = String(minor);
  if (digits === 0) return s;
  if (s.length > digits) {
    const cut = s.length - digits;
    return s.slice(0, cut) + '.' + s.slice(cut);
  }
  return '0.' + '0'.repeat(digits - s.length) + s;
}

/** Adds two non-negative minor amounts, refusing to leave the exact range. */
export function addMinor(a: number, b: number): number | 'TOO_LARGE' {
  const sum = a + b;
  // A true sum above MAX rounds to at least 2^53, so this test is exact.
  return sum > MAX ? 'TOO_LARGE' : sum;
}

/**
 * Reads a stored minor-unit integer string (balanceAfter). Returns undefined
 * for anything that is not a canonical non-negative safe integer.
 */
export function parseMinor(text: unknown): number | undefined {
  const v = parseMoney(text, 0, { allowZero: true });
  return typeof v === 'number' ? v : undefined;
}
