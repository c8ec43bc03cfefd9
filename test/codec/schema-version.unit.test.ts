/**
 * The envelope's schema version (src/codec/envelope.ts): envelopes written
 * before it existed are read, projected and relayed exactly as before, and
 * the transfer events exist only from version 2 on.
 *
 * test/fixtures/events-v1*.ndjson are 97 envelopes of three accounts written
 * by the build before the version existed (0396344): its encodeEnvelope's
 * bytes, and the same envelopes as Postgres prints their jsonb column (what
 * a relay publishes for a row written then).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SCHEMA_VERSION, encodeEnvelope, parseEnvelope, type EventEnvelope } from '../../src/codec/envelope';
import { scanEnvelope } from '../../src/codec/envelope-scan';
import { projectShard } from '../../src/pipeline/projections/project-shard';
import { Packer } from '../../src/pipeline/pack';
import { packageRoot } from '../../src/paths';
import { foldHistory } from '../helpers/event-history';
import { ACCOUNT_ROW, TRANSACTION_ROW, decodeCopyRows } from '../helpers/copy-rows';

const fixture = (name: string): Buffer[] =>
  fs.readFileSync(path.join(packageRoot(), 'test', 'fixtures', name), 'utf8').split('\n').filter((l) => l.length > 0).map((l) => Buffer.from(l, 'utf8'));
const v1 = fixture('events-v1.ndjson');
const v1jsonb = fixture('events-v1-jsonb.ndjson');

function project(values: Buffer[]) {
  const p = new Packer(1024);
  values.forEach((v, i) => p.message(0, i, (parseEnvelope(v) as EventEnvelope).accountId, v));
  const r = projectShard({ msgs: p.finish(), projectedIds: [], projectedVersions: [] });
  return { ...r, tx: decodeCopyRows(r.transactions, TRANSACTION_ROW), acc: decodeCopyRows(r.accounts, ACCOUNT_ROW) };
}

test('the fixtures are what was written before: no schemaVersion, all four account event types', () => {
  assert.is(v1.length, 97);
  const types = new Set<string>();
  for (const b of [...v1, ...v1jsonb]) {
    const raw = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    assert.not.ok('schemaVersion' in raw);
    types.add(raw.type as string);
  }
  assert.equal([...types].sort(), ['AccountClosed', 'AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn']);
});

test('a version-1 envelope reads as version 2, unchanged otherwise, by both readers', () => {
  for (const b of [...v1, ...v1jsonb]) {
    const raw = JSON.parse(b.toString('utf8')) as Omit<EventEnvelope, 'schemaVersion'>;
    const parsed = parseEnvelope(b);
    assert.ok(!('error' in parsed), JSON.stringify(parsed));
    assert.equal(parsed, { eventId: raw.eventId, accountId: raw.accountId, version: raw.version, type: raw.type, data: raw.data, commandId: raw.commandId, recordedAt: raw.recordedAt, schemaVersion: SCHEMA_VERSION });
    const scanned = scanEnvelope(b);
    if (scanned !== undefined) { // the fast path may decline (a non-ASCII owner name); when it answers, it agrees
      const { recordedAtMs, ...rest } = scanned;
      assert.equal(rest, parsed);
      assert.is(recordedAtMs, Date.parse(raw.recordedAt));
    }
  }
  assert.ok(v1.filter((b) => scanEnvelope(b) !== undefined).length > 80, 'the fast path reads version 1');
});

test('the projector folds version-1 envelopes into the rows it folds version 2 into, and the rows the history says', () => {
  const old = project(v1);
  const oldJsonb = project(v1jsonb);
  const envs = v1.map((b) => parseEnvelope(b) as EventEnvelope);
  const now = project(envs.map((e) => Buffer.from(encodeEnvelope(e))));
  assert.is(old.dlq.length, 0);
  assert.is(old.applied, 97);
  for (const r of [oldJsonb, now]) {
    assert.equal(r.tx, old.tx);
    assert.equal(r.acc, old.acc);
  }
  const want = foldHistory(envs);
  assert.equal(old.tx, [...want.transactions.values()].sort((a, b) => (a.account_id < b.account_id ? -1 : a.account_id > b.account_id ? 1 : Number(a.version) - Number(b.version))));
  assert.ok(old.acc.some((a) => a.status === 'closed'));
});

test('versions a reader does not know are refused, and transfer events need version 2', () => {
  // a deposit or withdrawal: ASCII only, so the fast path answers for it
  const base = JSON.parse(v1.find((b) => scanEnvelope(b) !== undefined)!.toString('utf8')) as Record<string, unknown> & { data: { currency: string } };
  for (const bad of [3, 0, -1, 1.5, '2', null, true]) {
    const text = JSON.stringify({ ...base, schemaVersion: bad });
    const r = parseEnvelope(text);
    assert.ok('error' in r && /schemaVersion/.test(r.error), `${JSON.stringify(bad)}: ${JSON.stringify(r)}`);
    assert.is(scanEnvelope(Buffer.from(text)), undefined);
  }
  for (const good of [1, 2]) {
    const text = JSON.stringify({ ...base, schemaVersion: good });
    const r = parseEnvelope(text);
    assert.ok(!('error' in r) && r.schemaVersion === SCHEMA_VERSION);
    assert.equal(scanEnvelope(Buffer.from(text))?.schemaVersion, SCHEMA_VERSION);
  }
  const debit = { ...base, type: 'TransferDebited', data: { transferId: base.commandId, toAccountId: '1c7e7d2f-9b6e-4d66-8b9f-6b8a5a1a8b22', amount: '1', currency: base.data.currency, balanceAfter: '5' } };
  for (const text of [JSON.stringify(debit), JSON.stringify({ ...debit, schemaVersion: 1 })]) {
    const r = parseEnvelope(text);
    assert.ok('error' in r && /TransferDebited needs schemaVersion 2/.test(r.error), JSON.stringify(r));
    assert.is(scanEnvelope(Buffer.from(text)), undefined);
  }
  const ok = JSON.stringify({ ...debit, schemaVersion: 2 });
  assert.ok(!('error' in parseEnvelope(ok)));
  assert.equal(scanEnvelope(Buffer.from(ok))?.type, 'TransferDebited');
});

test('transfer events project as signed movements that name the transfer and the other account', () => {
  const A = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11', B = '1c7e7d2f-9b6e-4d66-8b9f-6b8a5a1a8b22';
  const T1 = '5d3c2b1a-0f9e-4d8c-b7a6-958473625140', T2 = '5d3c2b1a-0f9e-4d8c-b7a6-958473625141';
  let n = 0;
  const ev = (accountId: string, version: number, type: EventEnvelope['type'], data: Record<string, unknown>) => Buffer.from(encodeEnvelope({
    eventId: `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`, accountId, version, type, data,
    commandId: `00000000-0000-4000-9000-${String(n).padStart(12, '0')}`, recordedAt: new Date(Date.UTC(2026, 0, 1) + n * 1000).toISOString(),
  }));
  const r = project([
    ev(A, 1, 'AccountCreated', { ownerName: 'Ada', currency: 'USD', initialBalance: '10.00', balanceAfter: '1000' }),
    ev(B, 1, 'AccountCreated', { ownerName: 'Bo', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }),
    ev(A, 2, 'TransferDebited', { transferId: T1, toAccountId: B, amount: '4.00', currency: 'USD', balanceAfter: '600' }),
    ev(B, 2, 'TransferCredited', { transferId: T1, fromAccountId: A, amount: '4.00', currency: 'USD', balanceAfter: '400' }),
    ev(A, 3, 'TransferDebited', { transferId: T2, toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '500' }),
    ev(A, 4, 'TransferRefunded', { transferId: T2, toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '600', reason: 'DESTINATION_CLOSED' }),
    // no transferId: not a transfer this daemon wrote
    ev(A, 5, 'TransferDebited', { toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '500' }),
  ]);
  assert.equal(r.tx.map((x) => [x.account_id === A ? 'A' : 'B', x.version, x.event_type, x.amount, x.balance_after, x.transfer_id, x.counterparty_id === A ? 'A' : x.counterparty_id === B ? 'B' : x.counterparty_id]), [
    ['A', '1', 'AccountCreated', '1000', '1000', null, null],
    ['A', '2', 'TransferDebited', '-400', '600', T1, 'B'],
    ['A', '3', 'TransferDebited', '-100', '500', T2, 'B'],
    ['A', '4', 'TransferRefunded', '100', '600', T2, 'B'],
    ['B', '1', 'AccountCreated', '0', '0', null, null],
    ['B', '2', 'TransferCredited', '400', '400', T1, 'A'],
  ]);
  assert.equal(r.acc.map((a) => [a.balance, a.version, a.status]), [['600', '4', 'open'], ['400', '2', 'open']]);
  assert.equal(r.dlq.map((d) => [d.code, d.message]), [['INVALID_DATA', 'data.transferId must be a UUID string']]);

  // refused as data no daemon writes: a refund without a destination's reason, a transfer to the account itself
  const bad = project([
    ev(A, 1, 'AccountCreated', { ownerName: 'Ada', currency: 'USD', initialBalance: '10.00', balanceAfter: '1000' }),
    ev(A, 2, 'TransferRefunded', { transferId: T1, toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '1100', reason: 'x' }),
    ev(A, 2, 'TransferRefunded', { transferId: T1, toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '1100' }),
    ev(A, 2, 'TransferDebited', { transferId: T1, toAccountId: A.toUpperCase(), amount: '1.00', currency: 'USD', balanceAfter: '900' }),
    ev(A, 2, 'TransferDebited', { transferId: T1, toAccountId: B, amount: '1.00', currency: 'USD', balanceAfter: '900' }),
  ]);
  assert.equal(bad.dlq.map((d) => d.message), [
    'data.reason must be one of DESTINATION_NOT_FOUND, DESTINATION_CLOSED, CURRENCY_MISMATCH, LIMIT_EXCEEDED',
    'data.reason must be one of DESTINATION_NOT_FOUND, DESTINATION_CLOSED, CURRENCY_MISMATCH, LIMIT_EXCEEDED',
    'data.toAccountId must be another account',
  ]);
  assert.is(bad.applied, 2);
});

test('recordedAt needs a UTC offset: an instant must not depend on the reader\'s time zone', () => {
  const base = JSON.parse(v1.find((b) => scanEnvelope(b) !== undefined)!.toString('utf8')) as Record<string, unknown>;
  for (const bad of ['2026-01-01T00:00:00', '2026-01-01T00:00:00.000', '1', '2026-01-01', 'Thu, 01 Jan 2026 00:00:00 GMT', '2026-01-01 00:00:00Z']) {
    const text = JSON.stringify({ ...base, recordedAt: bad });
    const r = parseEnvelope(text);
    assert.ok('error' in r && /UTC offset/.test(r.error), `${bad}: ${JSON.stringify(r)}`);
    assert.is(scanEnvelope(Buffer.from(text)), undefined, bad);
  }
  for (const [good, ms] of [['2026-01-01T01:00:00+01:00', Date.UTC(2026, 0, 1)], ['2026-01-01T00:00:00Z', Date.UTC(2026, 0, 1)], ['2026-01-01T00:00:00.123456Z', Date.UTC(2026, 0, 1) + 123]] as const) {
    const text = JSON.stringify({ ...base, recordedAt: good });
    const r = parseEnvelope(text);
    assert.ok(!('error' in r) && Date.parse(r.recordedAt) === ms, good);
    assert.is(scanEnvelope(Buffer.from(text))?.recordedAtMs, ms, good);
  }
});

test('an event from outside 1970 to 2200 is dead-lettered, not a stalled partition', () => {
  const A = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11';
  const env = (version: number, recordedAt: string) => Buffer.from(encodeEnvelope({
    eventId: `00000000-0000-4000-8000-00000000000${version}`, accountId: A, version, type: version === 1 ? 'AccountCreated' : 'MoneyDeposited',
    data: version === 1 ? { ownerName: 'Ada', currency: 'USD', initialBalance: '1.00', balanceAfter: '100' } : { amount: '1.00', currency: 'USD', balanceAfter: String(100 * version) },
    commandId: `00000000-0000-4000-9000-00000000000${version}`, recordedAt,
  }));
  // each of these made the COPY encoder throw (int8 past 2^53) before: the whole slice failed, again and again
  const r = project([env(1, '2026-01-01T00:00:00.000Z'), env(2, '2400-01-01T00:00:00.000Z'), env(2, '1600-01-01T00:00:00.000Z'),
    env(2, '+275760-09-13T00:00:00.000Z'), env(2, '1969-12-31T23:59:59.999Z'), env(2, '2199-12-31T23:59:59.999Z')]);
  assert.equal(r.dlq.map((d) => [d.index, d.code]), [[1, 'INVALID_ENVELOPE'], [2, 'INVALID_ENVELOPE'], [3, 'INVALID_ENVELOPE'], [4, 'INVALID_ENVELOPE']]);
  assert.match(r.dlq[0].message, /recordedAt 2400-01-01T00:00:00.000Z is outside 1970 to 2200/);
  assert.equal(r.tx.map((t) => [t.version, t.recorded_at]), [['1', '2026-01-01T00:00:00.000Z'], ['2', '2199-12-31T23:59:59.999Z']]);
});

test.run();
