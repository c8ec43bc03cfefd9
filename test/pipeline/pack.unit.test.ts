/**
 * The packed-messages layout (src/pipeline/pack.ts) read back in place by
 * PackReader and as objects by unpackMessages: every field, null and empty
 * keys and values, large offsets, and the key comparison the projection
 * worker uses instead of making a string.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PackReader, Packer, forEachRecord, recordAt, unpackMessages } from '../../src/pipeline/pack';

const msgs = [
  { partition: 0, offset: 0, key: Buffer.from('3f2504e0-4f89-41d3-9a0c-0305e82c3301'), value: Buffer.from('{"a":1}') },
  { partition: 3, offset: 2 ** 40 + 7, key: null, value: Buffer.from('no key') },
  { partition: 4_000_000_000, offset: 12, key: Buffer.from('k'), value: null },
  { partition: 1, offset: 13, key: Buffer.alloc(0), value: Buffer.alloc(0) },
  { partition: 2, offset: 14, key: Buffer.from([0xc3, 0xa9]), value: Buffer.from([0, 255, 10]) },
];

function packed(): Uint8Array {
  const p = new Packer(16); // small, so it grows on the way
  for (const m of msgs) p.message(m.partition, m.offset, m.key, m.value);
  return p.finish();
}

test('PackReader reads every field in place; views are made on request', () => {
  const r = new PackReader(packed());
  for (const m of msgs) {
    assert.ok(r.next());
    assert.is(r.partition, m.partition);
    assert.is(r.offset, m.offset);
    assert.is(r.keyLen, m.key === null ? -1 : m.key.length);
    assert.is(r.valueLen, m.value === null ? -1 : m.value.length);
    assert.equal(r.key(), m.key);
    assert.equal(r.value(), m.value);
    if (m.value) assert.equal(r.buf.subarray(r.valueAt, r.valueAt + r.valueLen), m.value);
  }
  assert.not.ok(r.next());
  assert.not.ok(r.next());
});

test('unpackMessages gives the same messages as objects', () => {
  assert.equal([...unpackMessages(packed())], msgs);
  assert.equal([...unpackMessages(new Uint8Array(0))], []);
});

test('keyIs compares the key bytes with a string of single-byte characters', () => {
  const r = new PackReader(packed());
  r.next();
  assert.ok(r.keyIs('3f2504e0-4f89-41d3-9a0c-0305e82c3301'));
  assert.not.ok(r.keyIs('3f2504e0-4f89-41d3-9a0c-0305e82c3302'));
  assert.not.ok(r.keyIs('3f2504e0-4f89-41d3-9a0c-0305e82c330'));
  assert.not.ok(r.keyIs('3F2504E0-4F89-41D3-9A0C-0305E82C3301'));
  r.next(); // null key: equal to nothing, not even ''
  assert.not.ok(r.keyIs(''));
  r.next();
  assert.ok(r.keyIs('k'));
  r.next(); // empty key
  assert.ok(r.keyIs(''));
  r.next(); // UTF-8 bytes of 'é' are two bytes: as latin1 they read 'Ã©', which is what toString('latin1') gives
  assert.ok(r.keyIs('\u00c3\u00a9'));
  assert.not.ok(r.keyIs('\u00e9'));
});

test('records of strings are their UTF-8 bytes, whatever the characters, as the buffer grows', () => {
  // ASCII, two-, three- and four-byte characters, a lone surrogate (written as U+FFFD, three bytes), empty, long
  const strings = ['3f2504e0-4f89-41d3-9a0c-0305e82c3301', 'é', '€ and ✓', '\ud83d\ude00', 'a\ud800b', '', 'x'.repeat(10_000), '{"detail":"ü\\n"}'];
  const p = new Packer(8);
  const starts: number[] = [];
  for (let i = 0; i < strings.length; i++) {
    starts.push(p.size);
    p.record(strings[i], strings[strings.length - 1 - i]);
  }
  const bytes = p.finish();
  const want = strings.map((s, i) => [Buffer.from(s, 'utf8'), Buffer.from(strings[strings.length - 1 - i], 'utf8')]);
  const got: Array<[Buffer | null, Buffer | null]> = [];
  forEachRecord(bytes, (k, v) => got.push([k && Buffer.from(k), v && Buffer.from(v)]));
  assert.equal(got, want);
  assert.is(p.count, strings.length);
  // each record read where it started, in any order
  for (const i of [3, 0, 7, 5]) {
    const { key, value } = recordAt(bytes, starts[i]);
    assert.equal([key && Buffer.from(key), value && Buffer.from(value)], want[i]);
  }
});

test('a string is written whole wherever it falls: every starting size, and a packer sized exactly does not grow', () => {
  // Buffer#write cuts a string short rather than overflow: too little room made for one shows as a short record
  const strings = ['€€€€€', 'aé€\ud83d\ude00', 'a\ud800b', 'plain ascii', ''];
  for (let size = 1; size <= 64; size++) {
    const p = new Packer(size);
    for (const s of strings) p.record(s, s);
    const got: string[] = [];
    forEachRecord(p.finish(), (k, v) => got.push(String(k), String(v)));
    assert.equal(got, strings.flatMap((s) => [Buffer.from(s).toString(), Buffer.from(s).toString()]), `initial size ${size}`);
  }
  const exact = strings.reduce((n, s) => n + 8 + 2 * Buffer.byteLength(s), 0);
  const p = new Packer(exact);
  for (const s of strings) p.record(s, s);
  const bytes = p.finish();
  assert.is(bytes.byteLength, exact);
  assert.is(bytes.buffer.byteLength, exact, 'sized exactly, it never needed more room');
});

test.run();
