import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CopyWriter, PGCOPY_HEADER, PGCOPY_TRAILER } from '../../src/codec/pgcopy';

const hex = (b: Buffer): string => b.toString('hex');
const field = (w: CopyWriter): string => hex(w.finish());

test('header is PGCOPY\\n\\377\\r\\n\\0, flags 0, extension length 0', () => {
  const expected = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  assert.is(expected.length, 19);
  assert.is(hex(PGCOPY_HEADER), hex(expected));
  assert.is(field(new CopyWriter().header()), hex(expected));
});

test('trailer is int16 -1', () => {
  assert.is(hex(PGCOPY_TRAILER), 'ffff');
  assert.is(field(new CopyWriter().trailer()), 'ffff');
});

test('row writes an int16 field count', () => {
  assert.is(field(new CopyWriter().row(7)), '0007');
  assert.is(field(new CopyWriter().row(300)), '012c');
});

test('int2 and int4 with length prefixes', () => {
  assert.is(field(new CopyWriter().int2(1)), '00000002' + '0001');
  assert.is(field(new CopyWriter().int2(-2)), '00000002' + 'fffe');
  assert.is(field(new CopyWriter().int4(258)), '00000004' + '00000102');
  assert.is(field(new CopyWriter().int4(-1)), '00000004' + 'ffffffff');
  assert.is(field(new CopyWriter().int4(2147483647)), '00000004' + '7fffffff');
  assert.is(field(new CopyWriter().int4(-2147483648)), '00000004' + '80000000');
});

test('int8 is exact for every safe integer, negative included', () => {
  const cases: [number | bigint, string][] = [
    [0, '0000000000000000'],
    [1, '0000000000000001'],
    [-1, 'ffffffffffffffff'],
    [2 ** 32, '0000000100000000'],
    [2 ** 32 - 1, '00000000ffffffff'],
    [-(2 ** 32), 'ffffffff00000000'],
    [2 ** 53 - 1, '001fffffffffffff'],
    [-(2 ** 53 - 1), 'ffe0000000000001'],
    [100010, '00000000000186aa'],
    [9223372036854775807n, '7fffffffffffffff'],
    [-9223372036854775808n, '8000000000000000'],
  ];
  for (const [n, h] of cases) assert.is(field(new CopyWriter().int8(n)), '00000008' + h, String(n));
  // Cross-check against Node's own encoder over a spread of values.
  for (let i = 0; i < 2000; i++) {
    const n = Math.floor((Math.random() * 2 - 1) * Number.MAX_SAFE_INTEGER);
    const ref = Buffer.alloc(8);
    ref.writeBigInt64BE(BigInt(n));
    assert.is(field(new CopyWriter().int8(n)), '00000008' + hex(ref), String(n));
  }
  assert.throws(() => new CopyWriter().int8(2 ** 53), RangeError);
  assert.throws(() => new CopyWriter().int8(1.5), RangeError);
});

test('timestamptz counts microseconds from 2000-01-01', () => {
  const at = (ms: number): bigint => new CopyWriter().timestamptz(ms).finish().readBigInt64BE(4);
  assert.is(at(Date.UTC(2000, 0, 1)), 0n);
  assert.is(at(0), -946684800000000n);
  assert.is(at(Date.UTC(2000, 0, 1, 0, 0, 1, 1)), 1001000n);
  assert.is(field(new CopyWriter().timestamptz(Date.UTC(2000, 0, 1))), '00000008' + '0000000000000000');
});

test('uuid writes 16 bytes from a hyphenated string', () => {
  const s = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11';
  assert.is(field(new CopyWriter().uuid(s)), '00000010' + s.replace(/-/g, ''));
  assert.is(field(new CopyWriter().uuid(s.toUpperCase())), '00000010' + s.replace(/-/g, ''));
  for (const bad of ['', s.slice(1), s.replace(/-/g, '0').slice(0, 36), s.replace('0b', 'zz'), s.replace('0b', 'é0')]) {
    assert.throws(() => new CopyWriter().uuid(bad), TypeError, bad);
  }
});

test('text writes UTF-8 with its byte length', () => {
  assert.is(field(new CopyWriter().text('')), '00000000');
  assert.is(field(new CopyWriter().text('abc')), '00000003' + '616263');
  assert.is(field(new CopyWriter().text('é€😀')), '00000009' + 'c3a9' + 'e282ac' + 'f09f9880');
  const long = 'x'.repeat(100) + 'é';
  assert.is(field(new CopyWriter().text(long)), '00000066' + '78'.repeat(100) + 'c3a9');
  const asciiThenWide = 'ab' + 'é'; // falls off the ASCII fast path mid-string
  assert.is(field(new CopyWriter().text(asciiThenWide)), '00000004' + '6162c3a9');
});

test('jsonb writes version 1 then the text', () => {
  assert.is(field(new CopyWriter().jsonb('{"a":1}')), '00000008' + '01' + hex(Buffer.from('{"a":1}')));
  assert.is(field(new CopyWriter().jsonb('"é"')), '00000005' + '01' + '22c3a922');
});

test('null and bytes', () => {
  assert.is(field(new CopyWriter().null()), 'ffffffff');
  assert.is(field(new CopyWriter().bytes(Buffer.from([1, 2, 3]))), '00000003' + '010203');
  assert.is(field(new CopyWriter().bytes(Buffer.alloc(0))), '00000000');
});

test('a full stream with one row of every type, compared to hand-computed bytes', () => {
  const w = new CopyWriter(64)
    .header()
    .row(9)
    .uuid('00112233-4455-6677-8899-aabbccddeeff')
    .int8(-1)
    .int4(7)
    .int2(3)
    .text('hi')
    .jsonb('{}')
    .timestamptz(Date.UTC(2000, 0, 1, 0, 0, 0, 1))
    .null()
    .bytes(Buffer.from([0xde, 0xad]))
    .trailer();
  const expected =
    hex(PGCOPY_HEADER) +
    '0009' +
    '00000010' + '00112233445566778899aabbccddeeff' +
    '00000008' + 'ffffffffffffffff' +
    '00000004' + '00000007' +
    '00000002' + '0003' +
    '00000002' + '6869' +
    '00000003' + '01' + '7b7d' +
    '00000008' + '00000000000003e8' +
    'ffffffff' +
    '00000002' + 'dead' +
    'ffff';
  assert.is(field(w), expected);
  assert.is(w.length, expected.length / 2);
});

test('the buffer grows and earlier views stay intact', () => {
  const w = new CopyWriter(64).header();
  const early = w.finish();
  for (let i = 0; i < 10000; i++) w.row(2).int4(i).text('row-' + i);
  assert.is(hex(early), hex(PGCOPY_HEADER));
  const out = w.trailer().finish();
  assert.is(out.length, w.length);
  // Walk the stream back to prove every length prefix is right.
  let p = 19;
  for (let i = 0; i < 10000; i++) {
    assert.is(out.readInt16BE(p), 2);
    assert.is(out.readInt32BE(p + 2), 4);
    assert.is(out.readInt32BE(p + 6), i);
    const len = out.readInt32BE(p + 10);
    assert.is(out.toString('utf8', p + 14, p + 14 + len), 'row-' + i);
    p += 14 + len;
  }
  assert.is(out.readInt16BE(p), -1);
  assert.is(p + 2, out.length);
  // Own backing store, so it can go in a transfer list.
  assert.is(out.buffer.byteLength >= out.length, true);
  assert.is(out.byteOffset, 0);
});

test.run();
