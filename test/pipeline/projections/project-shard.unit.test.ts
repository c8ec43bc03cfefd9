import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { accountOfEvent, projectShard, type ProjectResult } from '../../../src/pipeline/projections/project-shard';
import { shardOf } from '../../../src/codec/hash';
import { Packer } from '../../../src/pipeline/pack';
import { SCHEMA_VERSION, encodeEnvelope, type EventEnvelope } from '../../../src/codec/envelope';
import { foldHistory, generateHistory } from '../../helpers/event-history';
import { ACCOUNT_ROW, decodeCopyRows, TRANSACTION_ROW } from '../../helpers/copy-rows';

type Msg = { key?: string | null; value: string | Buffer | null };

function run(msgs: Msg[], projected: Record<string, number> = {}): ProjectResult & { txRows: ReturnType<typeof decodeCopyRows>; accRows: ReturnType<typeof decodeCopyRows> } {
  const p = new Packer(1024);
  msgs.forEach((m, i) => p.message(0, i, m.key ?? null, m.value === null ? null : Buffer.isBuffer(m.value) ? m.value : Buffer.from(m.value)));
  const r = projectShard({ msgs: p.finish(), projectedIds: Object.keys(projected), projectedVersions: Object.values(projected) });
  return { ...r, txRows: decodeCopyRows(r.transactions, TRANSACTION_ROW), accRows: decodeCopyRows(r.accounts, ACCOUNT_ROW) };
}

const A = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11';
const B = '1c7f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a22';
let n = 0;
const id = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
const t0 = Date.UTC(2024, 4, 1, 12);

function ev(accountId: string, version: number, type: EventEnvelope['type'], data: Record<string, unknown>): EventEnvelope {
  return { eventId: id(), accountId, version, type, data, commandId: id(), recordedAt: new Date(t0 + version * 1000).toISOString(), schemaVersion: SCHEMA_VERSION };
}
// A: open with 100.00, +25.50, -120.00, -5.50 (to zero), close
const historyA = [
  ev(A, 1, 'AccountCreated', { ownerName: 'Ada', currency: 'USD', initialBalance: '100.00', balanceAfter: '10000' }),
  ev(A, 2, 'MoneyDeposited', { amount: '25.50', currency: 'USD', balanceAfter: '12550' }),
  ev(A, 3, 'MoneyWithdrawn', { amount: '120.00', currency: 'USD', balanceAfter: '550' }),
  ev(A, 4, 'MoneyWithdrawn', { amount: '5.50', currency: 'USD', balanceAfter: '0' }),
  ev(A, 5, 'AccountClosed', { currency: 'USD', balanceAfter: '0', reason: 'moving' }),
];
const msgOf = (e: EventEnvelope): Msg => ({ key: e.accountId, value: encodeEnvelope(e) });

test('a whole history: signed amounts, the creation as the first movement, AccountClosed without a row', () => {
  const r = run(historyA.map(msgOf));
  assert.equal(r.txRows.map((x) => [x.version, x.event_type, x.amount, x.balance_after]), [
    ['1', 'AccountCreated', '10000', '10000'], ['2', 'MoneyDeposited', '2550', '12550'],
    ['3', 'MoneyWithdrawn', '-12000', '550'], ['4', 'MoneyWithdrawn', '-550', '0'],
  ]);
  assert.equal(r.txRows[1], {
    account_id: A, version: '2', event_id: historyA[1].eventId, event_type: 'MoneyDeposited', amount: '2550', balance_after: '12550',
    currency: 'USD', command_id: historyA[1].commandId, recorded_at: historyA[1].recordedAt, transfer_id: null, counterparty_id: null,
  });
  assert.equal(r.accRows, [{
    account_id: A, owner_name: 'Ada', currency: 'USD', balance: '0', status: 'closed', version: '5',
    opened_at: historyA[0].recordedAt, updated_at: historyA[4].recordedAt, closed_at: historyA[4].recordedAt,
  }]);
  assert.equal([r.applied, r.stale, r.tombstones, r.dlq.length, r.gapCount, r.transactionCount, r.accountCount], [5, 0, 0, 0, 0, 4, 1]);
  assert.equal([r.advancedIds, r.advancedVersions], [[A], [5]]);
  assert.is(r.newestRecordedAtMs, Date.parse(historyA[4].recordedAt));
});

test('events at or below the projected version are dropped; the row keeps no owner it did not see', () => {
  const r = run(historyA.slice(0, 4).map(msgOf), { [A]: 2 });
  assert.equal(r.txRows.map((x) => x.version), ['3', '4']);
  assert.equal([r.applied, r.stale, r.gapCount], [2, 2, 0]);
  assert.equal(r.accRows.map((x) => [x.owner_name, x.version, x.balance, x.status, x.closed_at]), [['', '4', '0', 'open', null]]);
  const none = run(historyA.map(msgOf), { [A]: 5 });
  assert.equal([none.applied, none.stale, none.transactionCount, none.accountCount, none.advancedIds, none.advancedVersions], [0, 5, 0, 0, [], []]);
});

test('re-sends inside one slice are dropped; several accounts fold to one row each; rows come out in key order', () => {
  const b1 = ev(B, 1, 'AccountCreated', { ownerName: 'Bo', currency: 'JPY', initialBalance: '500', balanceAfter: '500' });
  const b2 = ev(B, 2, 'MoneyWithdrawn', { amount: '499', currency: 'JPY', balanceAfter: '1' });
  const [a1, a2, a3, a4] = historyA;
  const r = run([a1, b1, a2, a3, a2, b2, a3, b1, a4].map(msgOf));
  assert.equal([r.applied, r.stale], [6, 3]);
  assert.equal(r.txRows.map((x) => `${x.account_id!.slice(0, 2)}${x.version}:${x.amount}`), ['0b1:10000', '0b2:2550', '0b3:-12000', '0b4:-550', '1c1:500', '1c2:-499'], 'by account, then version');
  assert.equal(r.accRows.map((x) => [x.account_id, x.owner_name, x.balance, x.version, x.currency]), [[A, 'Ada', '0', '4', 'USD'], [B, 'Bo', '1', '2', 'JPY']]);
});

test('a gap is applied and reported', () => {
  const r = run([historyA[2], historyA[3]].map(msgOf));
  assert.equal([r.applied, r.gapCount], [2, 1]);
  assert.equal(r.gaps, [{ accountId: A, projected: 0, version: 3 }]);
  assert.equal(r.accRows[0].opened_at, historyA[2].recordedAt, 'opened_at unknown: the first event seen');
  const r2 = run([historyA[3]].map(msgOf), { [A]: 1 });
  assert.equal(r2.gaps, [{ accountId: A, projected: 1, version: 4 }]);
});

test('tombstones and Debezium deletes are skipped silently; unreadable events are dead letters with a code', () => {
  const good = historyA[0];
  const bad: Array<[Msg, string]> = [
    [{ key: A, value: '{"eventId": nope' }, 'NOT_JSON'],
    [{ key: A, value: Buffer.from([0x7b, 0xff, 0xfe]) }, 'NOT_UTF8'],
    [{ key: A, value: JSON.stringify({ ...good, version: 0 }) }, 'INVALID_ENVELOPE'],
    [{ key: A, value: JSON.stringify({ ...good, type: 'MoneyTeleported' }) }, 'INVALID_ENVELOPE'],
    [{ key: B, value: encodeEnvelope(good) }, 'KEY_MISMATCH'],
    [{ key: A, value: encodeEnvelope({ ...historyA[1], data: { ...historyA[1].data, amount: '25.505' } }) }, 'INVALID_DATA'],
    [{ key: A, value: encodeEnvelope({ ...historyA[1], data: { ...historyA[1].data, balanceAfter: '-1' } }) }, 'INVALID_DATA'],
    [{ key: A, value: encodeEnvelope({ ...historyA[1], data: { ...historyA[1].data, currency: 'XXX' } }) }, 'INVALID_DATA'],
  ];
  const del = JSON.stringify({ before: { account_id: A, version: 1 }, after: null, source: {}, op: 'd', ts_ms: 1 });
  const msgs: Msg[] = [{ key: A, value: null }, { key: A, value: del }, ...bad.map(([m]) => m), msgOf(good)];
  const r = run(msgs);
  assert.is(r.tombstones, 2);
  assert.equal(r.dlq.map((d) => [d.index, d.code]), bad.map(([, code], i) => [i + 2, code]));
  assert.ok(r.dlq.every((d) => d.message.length > 0));
  assert.equal([r.applied, r.transactionCount], [1, 1]);
});

test('accountOfEvent: the key, a Debezium key struct, else the value', () => {
  const v = Buffer.from(encodeEnvelope(historyA[0]));
  assert.is(accountOfEvent(A.toUpperCase(), v), A);
  assert.is(accountOfEvent(Buffer.from(JSON.stringify({ account_id: A })), null), A);
  assert.is(accountOfEvent(JSON.stringify({ schema: { type: 'struct' }, payload: { account_id: A, version: 3 } }), null), A);
  assert.is(accountOfEvent(null, v), A);
  assert.is(accountOfEvent('not-an-account', v), A);
  assert.is(accountOfEvent(null, Buffer.from('junk')), '');
  assert.is(accountOfEvent(null, null), '');
});

test('shardOf is stable and in range', () => {
  for (let s = 1; s <= 8; s++) {
    const x = shardOf(A, s);
    assert.ok(x >= 0 && x < s);
    assert.is(shardOf(A, s), x);
  }
});

test('a decider-made history over 50 accounts folds exactly as the independent fold says', () => {
  const h = generateHistory({ accounts: 50, commands: 2000, seed: 7 });
  const r = run(h.map((e) => ({ key: e.envelope.accountId, value: e.json })));
  const want = foldHistory(h.map((e) => e.envelope));
  assert.is(r.applied, h.length);
  assert.ok([...want.accounts.values()].some((a) => a.status === 'closed'), 'the history closes some accounts');
  assert.ok(new Set([...want.accounts.values()].map((a) => a.currency)).size > 2, 'several currencies');
  assert.is(r.accRows.length, want.accounts.size);
  for (const a of r.accRows) assert.equal(a, want.accounts.get(a.account_id!));
  assert.is(r.txRows.length, want.transactions.size);
  for (const t of r.txRows) assert.equal(t, want.transactions.get(`${t.account_id}/${t.version}`));
});

test.run();
