/**
 * The logical relay's pure parts: LSN arithmetic, the commit tracker that
 * decides which LSN may be confirmed (docs/architecture.md §3), the standby status update
 * bytes, and the pgoutput decoder keeping column text as sent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatLsn, parseLsn } from '../../src/relay/lsn';
import { CommitTracker } from '../../src/relay/commit-tracker';
import { standbyStatusUpdate } from '../../src/relay/logical-relay';
import { RawPgoutputPlugin } from '../../src/relay/raw-pgoutput';

test('LSNs parse to bigints and format back', () => {
  assert.is(parseLsn('0/0'), 0n);
  assert.is(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  assert.is(formatLsn(parseLsn('16/B374D848')), '16/B374D848');
  assert.is(formatLsn(parseLsn('FFFFFFFF/FFFFFFFF')), 'FFFFFFFF/FFFFFFFF');
  assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'));
  assert.throws(() => parseLsn('16-B3'), /not an LSN/);
});

test('a transaction is confirmable only when committed and every event acknowledged', () => {
  const t = new CommitTracker(100n);
  t.begin();
  const e1 = t.event();
  const e2 = t.event();
  assert.is(t.commit(200n), false, 'events in flight');
  assert.is(t.confirmed, 100n);
  assert.is(t.delivered(e1), false);
  assert.is(t.delivered(e2), true);
  assert.is(t.confirmed, 200n);
  assert.is(t.inFlight, 0);
});

test('a later acknowledged transaction never confirms an earlier one still in flight', () => {
  const t = new CommitTracker(0n);
  t.begin();
  const a = t.event();
  t.commit(300n);
  t.begin();
  const b = t.event();
  t.commit(400n);
  assert.is(t.delivered(b), false);
  assert.is(t.confirmed, 0n);
  assert.is(t.delivered(a), true);
  assert.is(t.confirmed, 400n, 'both settle together');
  assert.is(t.pending, 0);
});

test('an uncommitted transaction holds confirmation even when all its events are acknowledged', () => {
  const t = new CommitTracker(0n);
  t.begin();
  assert.is(t.delivered(t.event()), false);
  assert.is(t.confirmed, 0n);
  assert.ok(t.inTransaction);
});

test('keepalives advance past event-free WAL, but only outside a transaction and behind pending ones', () => {
  const t = new CommitTracker(10n);
  assert.is(t.keepalive(50n), true);
  assert.is(t.confirmed, 50n);
  t.begin();
  const e = t.event();
  assert.is(t.keepalive(90n), false, 'inside a transaction the keepalive is ignored');
  t.commit(100n);
  assert.is(t.keepalive(150n), false, 'queued behind the unacknowledged transaction');
  assert.is(t.confirmed, 50n);
  assert.is(t.delivered(e), true);
  assert.is(t.confirmed, 150n);
  assert.is(t.keepalive(120n), false, 'never moves backwards');
  assert.is(t.confirmed, 150n);
});

test('protocol violations throw', () => {
  const t = new CommitTracker(0n);
  assert.throws(() => t.event(), /outside a transaction/);
  assert.throws(() => t.commit(1n), /without Begin/);
  t.begin();
  assert.throws(() => t.begin(), /inside an open transaction/);
});

test('standby status update: r, write = flush = apply = lsn, microseconds since 2000-01-01, reply flag', () => {
  const lsn = parseLsn('2/10');
  const b = standbyStatusUpdate(lsn, true, Date.UTC(2000, 0, 1, 0, 0, 1));
  assert.is(b.length, 34);
  assert.is(String.fromCharCode(b[0]), 'r');
  assert.is(b.readBigUInt64BE(1), lsn);
  assert.is(b.readBigUInt64BE(9), lsn);
  assert.is(b.readBigUInt64BE(17), lsn);
  assert.is(b.readBigInt64BE(25), 1_000_000n);
  assert.is(b[33], 1);
  assert.is(standbyStatusUpdate(0n).readBigUInt64BE(9), 0n, 'nothing confirmed reports 0/0');
});

function cstr(s: string): Buffer { return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]); }
function i32(n: number): Buffer { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; }
function i16(n: number): Buffer { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; }

test('pgoutput decoding keeps jsonb and every other column as the text Postgres sent', () => {
  const plugin = new RawPgoutputPlugin({ protoVersion: 1, publicationNames: ['p'] });
  const JSONB = 3802;
  const INT8 = 20;
  const relation = Buffer.concat([
    Buffer.from('R'), i32(16384), cstr('public'), cstr('events'), Buffer.from('d'), i16(2),
    Buffer.from([1]), cstr('version'), i32(INT8), i32(-1),
    Buffer.from([0]), cstr('payload'), i32(JSONB), i32(-1),
  ]);
  const payload = '{"data": {"amount": "1.00"}, "type": "MoneyDeposited", "version": 12345678901234567890}';
  const col = (s: string) => Buffer.concat([Buffer.from('t'), i32(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);
  const insert = Buffer.concat([Buffer.from('I'), i32(16384), Buffer.from('N'), i16(2), col('42'), col(payload)]);
  const rel = plugin.parse(relation);
  assert.is(rel.tag, 'relation');
  const ins = plugin.parse(insert);
  assert.is(ins.tag, 'insert');
  if (ins.tag !== 'insert') return;
  assert.is(ins.relation.name, 'events');
  assert.is(ins.new.version, '42');
  assert.is(ins.new.payload, payload, 'not parsed: no precision lost, no key reordering');
});

test.run();
