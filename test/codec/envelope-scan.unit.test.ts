/**
 * The envelope fast path (src/codec/envelope-scan.ts) against the general
 * reader: whenever scanEnvelope answers, parseEnvelope must return an equal
 * envelope; when it does not, the projector takes parseEnvelope's answer
 * anyway. Inputs: real decider histories in both layouts the relays publish
 * (encodeEnvelope's, Postgres jsonb text), and fast-check mutations of them
 * (bytes replaced, inserted, deleted; tokens swapped for near misses),
 * seeded so a failure replays.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { encodeEnvelope, parseEnvelope, type EventEnvelope } from '../../src/codec/envelope';
import { isoMillisAt, scanEnvelope } from '../../src/codec/envelope-scan';
import { generateHistory } from '../helpers/event-history';
import { jsonbText } from '../../bench/lib/events';

const SEED = Number(process.env.FUZZ_SEED ?? 777);

const history = generateHistory({ accounts: 6, commands: 3000, seed: 5 }).map((e) => e.envelope);
const canonical = history.map((e) => Buffer.from(encodeEnvelope(e)));
const jsonb = history.map((e) => Buffer.from(jsonbText(e)));

/** Holds for every input: the fast path answers only with what the general path answers. */
function agrees(b: Buffer): boolean {
  const fast = scanEnvelope(b);
  if (fast === undefined) return false;
  const { recordedAtMs, ...envelope } = fast;
  const slow = parseEnvelope(b);
  assert.equal(envelope, slow, `fast path differs on ${JSON.stringify(b.toString('latin1'))}`);
  assert.is(recordedAtMs, Date.parse((slow as EventEnvelope).recordedAt));
  return true;
}

const isAscii = (b: Buffer) => b.every((c) => c < 0x80);

test('both layouts the relays publish take the fast path, and read as the general path reads them', () => {
  assert.ok(history.length > 300);
  let slow = 0;
  for (const b of [...canonical, ...jsonb]) {
    // an owner name beyond ASCII (the generator writes some) is read the general way, and equal all the same
    if (isAscii(b)) assert.ok(agrees(b), b.toString());
    else { assert.is(agrees(b), false); slow++; }
  }
  assert.ok(slow > 0 && slow < history.length / 4, `${slow} events beyond ASCII`);
  // every event type and data key appears
  assert.equal([...new Set(history.map((e) => e.type))].sort(), ['AccountClosed', 'AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn']);
});

test('near misses go the general way: escapes, upper case, unknown keys, duplicates, numbers, wrappers', () => {
  const created = history.find((x) => x.type === 'AccountCreated')!;
  const e: EventEnvelope = { ...created, data: { ...created.data, ownerName: 'Owner 1' } };
  const base = encodeEnvelope(e);
  const misses = [
    base.replace(`"ownerName":"${e.data.ownerName}"`, '"ownerName":"O\\u0077ner"'), // an escape
    base.replace(e.eventId, e.eventId.toUpperCase()),
    base.replace('"version":1', '"version":1.0'),
    base.replace('"version":1', '"version":01'),
    base.replace('"version":1', '"version":-1'),
    base.replace('"version":1', '"version":1e0'),
    base.replace('"version":1', '"version":"1"'),
    base.replace('"version":1', '"version":12345678901234567'),
    base.replace('"data":{', '"data":{"extra":"x",'),
    base.replace('"data":{', '"data":{"currency":"EUR",'), // a data key twice
    base.replace('{"eventId"', '{"version":2,"eventId"'), // a key twice
    base.replace('"currency":"', '"currency":7,"x":"'),
    base.replace(`"balanceAfter":"${e.data.balanceAfter}"`, '"balanceAfter":100'),
    base.replace('"type":"AccountCreated"', '"type":"AccountOpened"'),
    base.replace(e.recordedAt, 'yesterday'),
    base.replace(`"ownerName":"${e.data.ownerName}"`, '"ownerName":"Zoë"'), // non-ASCII
    base.replace(`"ownerName":"${e.data.ownerName}"`, '"ownerName":"a\tb"'), // a raw control character
    base.slice(0, -1), // truncated
    `${base},`,
    `[${base}]`,
    JSON.stringify(base), // a JSON string holding the envelope
    JSON.stringify({ schema: {}, payload: e }),
    JSON.stringify({ before: null, after: { payload: base }, op: 'c' }),
    '{}',
  ];
  for (const m of misses) {
    assert.is.not(m, base);
    assert.is(scanEnvelope(Buffer.from(m)), undefined, m);
  }
  // whitespace anywhere JSON allows it is still the fast path
  assert.ok(agrees(Buffer.from(` \n${base.replace(/,"/g, ' ,\t"').replace(/":/g, '" :\r\n ')}  `)));
});

test('timestamps: read from the bytes exactly as Date.parse reads them, or left to Date.parse', () => {
  const iso = (t: string) => isoMillisAt(Buffer.from(t, 'latin1'), 0, t.length);
  // every instant from year 0 to 9999 that toISOString writes in 24 characters
  fc.assert(fc.property(fc.integer({ min: Date.parse('0000-01-01T00:00:00.000Z'), max: Date.parse('9999-12-31T23:59:59.999Z') }), (ms) => {
    const t = new Date(ms).toISOString();
    if (t.length !== 24) return;
    assert.is(iso(t), ms, t);
    assert.is(iso(t), Date.parse(t), t);
  }), { numRuns: 20_000, seed: SEED });
  for (const t of ['2024-02-29T12:00:00.000Z', '2000-02-29T00:00:00.000Z', '1970-01-01T00:00:00.000Z', '2026-12-31T23:59:59.999Z']) assert.is(iso(t), Date.parse(t), t);
  // impossible or other shapes are not read here; Date.parse takes some of them (Feb 30, 24:00)
  for (const t of ['2026-02-29T00:00:00.000Z', '1900-02-29T00:00:00.000Z', '2026-02-30T00:00:00.000Z', '2026-04-31T00:00:00.000Z', '2026-01-01T24:00:00.000Z',
    '2026-01-01T23:60:00.000Z', '2026-01-01T23:59:60.000Z', '2026-00-10T00:00:00.000Z', '2026-13-10T00:00:00.000Z', '2026-01-00T00:00:00.000Z',
    '2026-01-01T00:00:00.00aZ', '2026-01-01 00:00:00.000Z', '2026-01-01T00:00:00.000+', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00.0000Z', '+02026-01-01T00:00:00.000Z']) {
    assert.ok(Number.isNaN(iso(t)), t);
  }
  // any single byte changed: either not read here, or read as Date.parse reads it
  const base = '2026-11-21T15:31:03.123Z';
  fc.assert(fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (i, byte) => {
    const b = Buffer.from(base, 'latin1');
    b[i] = byte;
    const v = isoMillisAt(b, 0, b.length);
    if (!Number.isNaN(v)) assert.is(v, Date.parse(b.toString('latin1')), b.toString('latin1'));
  }), { numRuns: 5_000, seed: SEED });
});

test('fast-check: mutated envelopes never make the two paths disagree', () => {
  const inputs = [...canonical, ...jsonb];
  const alphabet = [...'{}[]":,\\ \t0123456789abcdefABCDEF-.eE+nulltrue', '\u0000', '\u00e9', '\u007f'].map((c) => c.charCodeAt(0) & 0xff);
  const edit = fc.record({
    kind: fc.constantFrom('replace', 'insert', 'delete'),
    at: fc.nat(),
    byte: fc.oneof(fc.constantFrom(...alphabet), fc.integer({ min: 0, max: 255 })),
  });
  let fast = 0;
  // what may follow a value in a pack: the next message's header bytes, here the most tempting ones
  const trailer = '},1{"}';
  fc.assert(fc.property(fc.nat(), fc.array(edit, { minLength: 1, maxLength: 3 }), (pick, edits) => {
    let b = Buffer.from(inputs[pick % inputs.length]);
    for (const { kind, at, byte } of edits) {
      const i = at % (b.length + 1);
      if (kind === 'replace' && i < b.length) { b = Buffer.from(b); b[i] = byte; }
      else if (kind === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
      else if (kind === 'delete' && i < b.length) b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
    }
    if (agrees(b)) fast++;
    // read as a range of a larger buffer (the worker scans inside its pack): the bytes after it change nothing
    const inPack = Buffer.concat([Buffer.from('{"x":'), b, Buffer.from(trailer)]);
    assert.equal(scanEnvelope(inPack, 5, 5 + b.length), scanEnvelope(b));
  }), { numRuns: 30_000, seed: SEED });
  // some mutations keep a valid envelope (a digit of an amount, a hex digit of an id): those must still be fast and equal
  assert.ok(fast > 100, `${fast} mutated inputs took the fast path`);
});

test.run();
