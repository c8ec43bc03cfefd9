/**
 * A fast path for reading an event envelope: one pass over the bytes for
 * the plain JSON the relays publish (the envelope as encodeEnvelope writes
 * it, or as Postgres prints the jsonb column: any key order, whitespace
 * between tokens), instead of UTF-8 check, decode, JSON.parse and validate.
 * 20k decider events (microbenchmark, one hour): ~2.3 µs each through parseEnvelope, ~1.8 µs here;
 * `node dist/bench/project-shard-micro.js` times this scan on relay-shaped envelopes.
 *
 * It answers only when it can vouch that parseEnvelope would return an equal
 * envelope, and returns undefined otherwise, for the caller to take the
 * general path: any byte outside printable ASCII, an escape, a key other
 * than the envelope keys and the data keys the deciders write, a
 * key twice, a data value that is not a string, a number that is not a plain
 * positive integer, a UUID that is not lower-case, an unknown event type, a
 * timestamp Date.parse rejects. So it never produces an error of its own,
 * and wrappers (Debezium change events, converters) always go the long way.
 */
import { EVENT_TYPES, type EventType } from '../domain/types';
import { SCHEMA_VERSION, isTimestamp, schemaVersionError, type EventEnvelope } from './envelope';
import { isLowerUuidAt } from './hex';

/** What the fast path read, plus recordedAt as milliseconds (it parsed it to validate it). */
export interface ScannedEnvelope extends EventEnvelope {
  recordedAtMs: number;
}

const QUOTE = 0x22, COLON = 0x3a, COMMA = 0x2c, OPEN = 0x7b, CLOSE = 0x7d, BACKSLASH = 0x5c;

const TOP = ['eventId', 'accountId', 'version', 'type', 'data', 'commandId', 'recordedAt', 'schemaVersion'] as const;
/** every key but schemaVersion (absent in envelopes written before it: version 1) */
const REQUIRED = (1 << (TOP.length - 1)) - 1;
const DATA = ['ownerName', 'currency', 'initialBalance', 'balanceAfter', 'amount', 'reason', 'transferId', 'toAccountId', 'fromAccountId'] as const;
const TOP_BYTES = TOP.map((k) => Buffer.from(k, 'latin1'));
const DATA_BYTES = DATA.map((k) => Buffer.from(k, 'latin1'));
const TYPE_BYTES = EVENT_TYPES.map((t) => Buffer.from(t, 'latin1'));

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Which of `names` the bytes [s, e) spell, or -1. */
function nameAt(b: Buffer, s: number, e: number, names: Buffer[]): number {
  const len = e - s;
  for (let k = 0; k < names.length; k++) {
    const n = names[k];
    if (n.length !== len) continue;
    let i = 0;
    while (i < len && b[s + i] === n[i]) i++;
    if (i === len) return k;
  }
  return -1;
}

/** The bytes [s, e) as a string; they are printable ASCII, so latin1 is UTF-8 here. */
function text(b: Buffer, s: number, e: number): string {
  return (b as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(s, e);
}

/** Reads a lower-case canonical UUID from [s, e), or undefined. */
function lowerUuid(b: Buffer, s: number, e: number): string | undefined {
  return isLowerUuidAt(b, s, e) ? text(b, s, e) : undefined;
}

const DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The two decimal digits at p as a number, or NaN. */
function two(b: Buffer, p: number): number {
  const x = b[p] - 0x30, y = b[p + 1] - 0x30;
  return x >= 0 && x <= 9 && y >= 0 && y <= 9 ? x * 10 + y : NaN;
}

/**
 * Milliseconds since the epoch of `YYYY-MM-DDTHH:mm:ss.sssZ` at [s, e), the
 * shape toISOString writes, read from the bytes: ~30 ns where Date.parse
 * takes ~180. NaN for any other shape and for dates that do not exist (the
 * caller then asks Date.parse, which is more lenient: it takes Feb 30 or
 * 24:00), so whatever this returns is what Date.parse returns.
 */
export function isoMillisAt(b: Buffer, s: number, e: number): number {
  if (e - s !== 24 || b[s + 4] !== 0x2d || b[s + 7] !== 0x2d || b[s + 10] !== 0x54 || b[s + 13] !== 0x3a
    || b[s + 16] !== 0x3a || b[s + 19] !== 0x2e || b[s + 23] !== 0x5a) return NaN;
  const year = two(b, s) * 100 + two(b, s + 2), month = two(b, s + 5), day = two(b, s + 8);
  const hour = two(b, s + 11), minute = two(b, s + 14), second = two(b, s + 17);
  const msLast = b[s + 22] - 0x30;
  const ms = two(b, s + 20) * 10 + (msLast >= 0 && msLast <= 9 ? msLast : NaN);
  // a NaN anywhere (a byte that is not a digit) fails a comparison here or comes out as the result
  if (!(month >= 1 && month <= 12 && day >= 1 && hour <= 23 && minute <= 59 && second <= 59)) return NaN;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > DAYS_IN_MONTH[month] || (month === 2 && day === 29 && !leap)) return NaN;
  // days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const days = era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
  return ((days * 24 + hour) * 60 + minute) * 60000 + second * 1000 + ms;
}

// The scanner's cursor: module state rather than closures, so a call allocates nothing but its results.
const EMPTY = Buffer.alloc(0);
let b: Buffer = EMPTY;
let i = 0;
let end = 0;
let strEnd = 0;

// The loops below copy the cursor into locals: a module variable is a context slot, loaded and stored on
// every byte otherwise (`node dist/bench/project-shard-micro.js`, 6 interleaved rounds: 2.65 → 2.29 µs per scan).
function ws(): void {
  const buf = b, stop = end;
  let p = i;
  while (p < stop && isWs(buf[p])) p++;
  i = p;
}

/** At a quote: the string's content is [returned, strEnd) and i moves past the closing quote; -1 = not a plain string. */
function str(): number {
  const buf = b, stop = end;
  let p = i;
  if (buf[p] !== QUOTE) return -1;
  const s = ++p;
  for (;;) {
    if (p >= stop) return -1;
    const c = buf[p];
    if (c === QUOTE) break;
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1;
    p++;
  }
  strEnd = p;
  i = p + 1;
  return s;
}

/** After a key: ws ':' ws. */
function colon(): boolean {
  ws();
  if (b[i] !== COLON) return false;
  i++;
  ws();
  return true;
}

/** A key among `names` that is not in `seen` (a bit per name), then ':'; its index, or -1. */
function keyOf(names: Buffer[], seen: number): number {
  const s = str();
  if (s < 0) return -1;
  const k = nameAt(b, s, strEnd, names);
  if (k < 0 || seen & (1 << k) || !colon()) return -1;
  return k;
}

/** After a value: ws, then ',' (true: more follow) or '}' (false: done); undefined for anything else. */
function more(): boolean | undefined {
  ws();
  const c = b[i++];
  if (c === COMMA) { ws(); return true; }
  if (c === CLOSE) return false;
  return undefined;
}

/**
 * The envelope in `value` (bytes [start, end) of it), when the fast path can
 * vouch for it; undefined sends the caller to parseEnvelope.
 */
export function scanEnvelope(value: Buffer, start = 0, stop = value.length): ScannedEnvelope | undefined {
  b = value;
  i = start;
  end = stop;
  const found = scan();
  b = EMPTY;
  return found;
}

function scan(): ScannedEnvelope | undefined {
  let eventId: string | undefined, accountId: string | undefined, commandId: string | undefined, recordedAt: string | undefined;
  let version = 0, recordedAtMs = 0, schemaVersion = 1;
  let type: EventType | undefined;
  let data: Record<string, string> | undefined;
  let seen = 0;

  ws();
  if (b[i++] !== OPEN) return undefined;
  ws();
  for (let again = true; again;) {
    const k = keyOf(TOP_BYTES, seen);
    if (k < 0) return undefined;
    seen |= 1 << k;
    switch (TOP[k]) {
      case 'version': {
        // a positive integer without sign, fraction or exponent, at most 16 digits, safe
        const s = i;
        if (!(b[i] >= 0x31 && b[i] <= 0x39)) return undefined;
        let v = 0;
        while (i < end && b[i] >= 0x30 && b[i] <= 0x39) v = v * 10 + (b[i++] - 0x30);
        if (i - s > 16 || !Number.isSafeInteger(v)) return undefined;
        version = v;
        break;
      }
      case 'schemaVersion': {
        // one digit, a version this reader knows
        const v = b[i] - 0x30;
        if (!(v >= 1 && v <= SCHEMA_VERSION) || (b[i + 1] >= 0x30 && b[i + 1] <= 0x39)) return undefined;
        i++;
        schemaVersion = v;
        break;
      }
      case 'data': {
        if (b[i++] !== OPEN) return undefined;
        ws();
        data = {};
        let dataSeen = 0;
        if (b[i] === CLOSE) i++;
        else {
          for (let dAgain = true; dAgain;) {
            const d = keyOf(DATA_BYTES, dataSeen);
            if (d < 0) return undefined;
            dataSeen |= 1 << d;
            const vs = str();
            if (vs < 0) return undefined;
            data[DATA[d]] = text(b, vs, strEnd);
            const m = more();
            if (m === undefined) return undefined;
            dAgain = m;
          }
        }
        break;
      }
      default: {
        const vs = str();
        if (vs < 0) return undefined;
        const name = TOP[k];
        if (name === 'type') {
          const t = nameAt(b, vs, strEnd, TYPE_BYTES);
          if (t < 0) return undefined;
          type = EVENT_TYPES[t];
        } else if (name === 'recordedAt') {
          recordedAt = text(b, vs, strEnd);
          recordedAtMs = isoMillisAt(b, vs, strEnd);
          if (Number.isNaN(recordedAtMs)) recordedAtMs = isTimestamp(recordedAt) ? Date.parse(recordedAt) : NaN;
          if (Number.isNaN(recordedAtMs)) return undefined;
        } else {
          const id = lowerUuid(b, vs, strEnd);
          if (id === undefined) return undefined;
          if (name === 'eventId') eventId = id;
          else if (name === 'accountId') accountId = id;
          else commandId = id;
        }
      }
    }
    const m = more();
    if (m === undefined) return undefined;
    again = m;
  }
  ws();
  if (i !== end || (seen & REQUIRED) !== REQUIRED) return undefined;
  if (schemaVersion !== SCHEMA_VERSION && schemaVersionError(schemaVersion, type!) !== undefined) return undefined;
  // upcast (envelope.ts): from version 1 nothing changes but the number
  return { eventId: eventId!, accountId: accountId!, version, type: type!, data: data!, commandId: commandId!, recordedAt: recordedAt!, schemaVersion: SCHEMA_VERSION, recordedAtMs };
}
