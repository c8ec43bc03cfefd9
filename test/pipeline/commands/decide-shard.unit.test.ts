/**
 * decideShard's answers to replayed offsets (issue: every command keeps its
 * outcome across a hand-over). After a crash or a hand-over, the offsets
 * between the stored published and next offsets are decided again from what
 * Postgres holds, and their outcomes re-published: each must be identical to
 * the first answer but for processedAt. The original command is answered with
 * its own status (and a rejection with its detail); a re-send of it with
 * `duplicate`, because Postgres records which offset the original was read at.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decideShard, type KnownOutcome } from '../../../src/pipeline/commands/decide-shard';
import { decidedEntries } from '../../../src/pipeline/commands/decided-outcomes';
import { forEachRecord, Packer } from '../../../src/pipeline/pack';
import { transferStepId } from '../../../src/domain/transfer';

const A = '0a000000-0000-4000-8000-000000000001';
const C = '0c000000-0000-4000-8000-000000000001'; // rejected originally, read at 0:5
const D = '0d000000-0000-4000-8000-000000000001'; // accepted by a row from before source offsets were recorded
const E = '0e000000-0000-4000-8000-000000000001'; // decided now, then re-sent in the same batch

const withdraw = (commandId: string, amount: string) => `{"commandId":"${commandId}","type":"Withdraw","accountId":"${A}","amount":"${amount}"}`;
const deposit = (commandId: string) => `{"commandId":"${commandId}","type":"Deposit","accountId":"${A}","amount":"1.00"}`;

type Out = Record<string, unknown>;

function run(msgs: Array<[number, number, string]>, known: Record<string, KnownOutcome>, replayBelow: Record<number, number> | null, transfers?: boolean) {
  const below = replayBelow === null ? null : new Map(Object.entries(replayBelow).map(([p, o]) => [Number(p), o]));
  const p = new Packer(4096);
  for (const [partition, offset, value] of msgs) p.message(partition, offset, A, Buffer.from(value));
  const state = { accountId: A, version: 3, balance: 500, currency: 'USD', status: 'open' as const, ownerName: 'x' };
  const r = decideShard({ msgs: p.finish(), states: [state], known: new Map(Object.entries(known)), replayBelow: below, maxMessageBytes: 65536, nowMs: Date.parse('2026-12-01T00:00:00Z'), hashSeed: 0, transfers });
  const outs: Out[] = [];
  forEachRecord(r.outcomes, (_k, v) => {
    const o = JSON.parse(v!.toString()) as Out;
    delete o.processedAt;
    outs.push(o);
  });
  const steps: Out[] = [];
  forEachRecord(r.steps, (k, v) => steps.push({ key: k!.toString(), ...(JSON.parse(v!.toString()) as Out) }));
  return { r, outs, steps };
}

const rejectedC: KnownOutcome = { status: 'rejected', type: 'Withdraw', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 5.00 is less than 20.00', sourcePartition: 0, sourceOffset: 5 };
const acceptedD: KnownOutcome = { status: 'accepted', type: 'Deposit', version: 3, balance: '5.00' };

test('a replay answers the original with its own status and detail, a re-send with duplicate', () => {
  const { r, outs } = run([[0, 5, withdraw(C, '20.00')], [0, 7, withdraw(C, '20.00')], [0, 9, deposit(D)], [0, 10, deposit(D)]],
    { [`${A}/${C}`]: rejectedC, [`${A}/${D}`]: acceptedD }, { 0: 100 });
  assert.equal(outs, [
    { commandId: C, accountId: A, type: 'Withdraw', status: 'rejected', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 5.00 is less than 20.00' },
    { commandId: C, accountId: A, type: 'Withdraw', status: 'duplicate', originalStatus: 'rejected', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 5.00 is less than 20.00' },
    // no source recorded (a row from before migration 0005): the first this replay meets is taken for the original
    { commandId: D, accountId: A, type: 'Deposit', status: 'accepted', version: 3, balance: '5.00' },
    { commandId: D, accountId: A, type: 'Deposit', status: 'duplicate', originalStatus: 'accepted', version: 3, balance: '5.00' },
  ]);
  assert.is(r.republished, 4);
  assert.is(r.eventCount + r.rejectionCount, 0, 'a replay writes nothing');
  assert.equal(r.counts, [], 'a replay was counted when it was first decided: banking_es_commands_total does not count it again');
});

test('a replayed re-send whose original was read before the replay range is a duplicate, not the original', () => {
  const { outs } = run([[0, 7, withdraw(C, '20.00')]], { [`${A}/${C}`]: rejectedC }, { 0: 100 });
  assert.equal(outs.map((o) => o.status), ['duplicate']);
});

test('outside a replay, a known command is a duplicate carrying the original detail', () => {
  const { r, outs } = run([[0, 150, withdraw(C, '20.00')]], { [`${A}/${C}`]: rejectedC }, { 0: 100 });
  assert.equal(outs, [{ commandId: C, accountId: A, type: 'Withdraw', status: 'duplicate', originalStatus: 'rejected', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 5.00 is less than 20.00' }]);
  assert.is(r.republished, 0);
  assert.equal(r.counts, [{ type: 'Withdraw', status: 'duplicate', count: 1 }], 'a re-send outside a replay is a command of its own');
});

test('a rejection decided now and re-sent in the same batch: the duplicate repeats its detail; rows record where each was read', () => {
  const { r, outs } = run([[2, 40, withdraw(E, '99.00')], [2, 41, withdraw(E, '99.00')]], {}, null);
  assert.is(outs[0].status, 'rejected');
  assert.equal({ ...outs[1] }, { ...outs[0], status: 'duplicate', originalStatus: 'rejected' });
  assert.ok(typeof outs[0].detail === 'string' && (outs[0].detail as string).length > 0);
  assert.is(r.rejectionCount, 1);
  // the decided line the next batch may read before this one commits carries the detail too
  assert.equal(decidedEntries(r.decided).map(([, o]) => o.status === 'rejected' && typeof o.detail === 'string' && o.detail.length > 0), [true]);
  // the COPY row ends with the source partition (int4 2) and offset (int8 40), then no destination (NULL: -1)
  const row = Buffer.from(r.rejections);
  assert.equal([...row.subarray(row.length - 24)], [0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 40, 255, 255, 255, 255]);
});

test('the original is the message at the recorded place, in whatever order the copies come and outside a replay too', () => {
  // a copy read before the original (another partition, or a dead-lettered copy at a lower offset): duplicate; the original: its status
  const { outs } = run([[0, 3, withdraw(C, '20.00')], [0, 5, withdraw(C, '20.00')]], { [`${A}/${C}`]: rejectedC }, { 0: 100 });
  assert.equal(outs.map((o) => o.status), ['duplicate', 'rejected']);
  // not a replay: the previous owner committed this very message first (a batch redone after a unique violation)
  const redone = run([[0, 5, withdraw(C, '20.00')]], { [`${A}/${C}`]: rejectedC }, null);
  assert.equal(redone.outs.map((o) => o.status), ['rejected']);
});

const B = '0b000000-0000-4000-8000-0000000000bb';
const T1 = '71000000-0000-4000-8000-000000000001', T2 = '72000000-0000-4000-8000-000000000002';
const transfer = (commandId: string, amount: string, to = B) => `{"commandId":"${commandId}","type":"Transfer","accountId":"${A}","toAccountId":"${to}","amount":"${amount}"}`;

test('a Transfer debits the source and sends its credit step; its outcome waits for the end of the process', () => {
  const { r, outs, steps } = run([[1, 10, transfer(T1, '2.00')], [1, 11, transfer(T1, '2.00')], [1, 12, transfer(T2, '9.00')], [1, 13, transfer(T2, '1.00', A)]], {}, null, true);
  // T1 debited (500 → 300 minor units); its re-send in the batch sends the same step again and answers nothing yet
  assert.equal(steps, [1, 2].map(() => ({
    key: B, commandId: transferStepId(A, T1, 'credit'), type: 'CreditTransfer', transferId: T1, accountId: B, fromAccountId: A,
    amount: '2.00', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00',
  })));
  assert.is(r.eventCount, 1);
  assert.is(r.transferCount, 1);
  assert.equal(r.states.map((s) => [s.version, s.balance, s.transfersPending]), [[4, 300, 1]]);
  // T2: 9.00 of 3.00 left, and a transfer to itself: rejected, final, with the transfer's fields
  assert.equal(outs, [
    { commandId: T2, accountId: A, type: 'Transfer', status: 'rejected', transferId: T2, toAccountId: B, reason: 'INSUFFICIENT_FUNDS', detail: 'balance 3.00 is less than 9.00' },
    // a re-send, even naming another destination, is answered with the one final outcome
    { commandId: T2, accountId: A, type: 'Transfer', status: 'rejected', transferId: T2, toAccountId: B, reason: 'INSUFFICIENT_FUNDS', detail: 'balance 3.00 is less than 9.00' },
  ]);
  assert.equal(decidedEntries(r.decided).map(([k]) => k), [`${A}/${T1}`, `${A}/${T2}`]);
});

test('a replayed or re-sent debited Transfer sends its credit step again from what Postgres holds', () => {
  const known: KnownOutcome = { status: 'accepted', type: 'Transfer', version: 9, balance: '1.50', transfer: { toAccountId: B, amount: '2.00', currency: 'USD' }, sourcePartition: 1, sourceOffset: 10 };
  const replay = run([[1, 10, transfer(T1, '2.00')]], { [`${A}/${T1}`]: known }, { 1: 50 }, true);
  assert.equal(replay.outs, []);
  assert.equal(replay.steps.map((s) => [s.key, s.commandId, s.sourceVersion, s.sourceBalance]), [[B, transferStepId(A, T1, 'credit'), 9, '1.50']]);
  assert.equal([replay.r.republished, replay.r.eventCount, replay.r.transferCount], [1, 0, 0]);
  const resent = run([[1, 60, transfer(T1, '2.00')]], { [`${A}/${T1}`]: known }, { 1: 50 }, true);
  assert.equal(resent.steps.length, 1);
  assert.equal(resent.r.counts, [{ type: 'Transfer', status: 'duplicate', count: 1 }]);
});

test('where transfers do not run, a Transfer is INVALID_COMMAND and nothing moves', () => {
  const { r, outs, steps } = run([[1, 10, transfer(T1, '2.00')]], {}, null);
  assert.equal(outs.map((o) => [o.status, o.reason]), [['rejected', 'INVALID_COMMAND']]);
  assert.equal([steps.length, r.eventCount, r.transferCount], [0, 0, 0]);
});

test('a command with a version-8 id (reserved for transfer steps) is INVALID_COMMAND every time, and never recorded', () => {
  const stepId = transferStepId(A, '5d3c2b1a-0f9e-4d8c-b7a6-958473625140', 'credit');
  const { r, outs } = run([[0, 1, deposit(stepId)], [0, 2, deposit(stepId)], [0, 3, deposit(E)]], {}, null, true);
  assert.is(r.rejectionCount, 0, 'no row: the id stays free for the step');
  assert.equal(r.rejectedCommands, []);
  assert.equal(outs.slice(0, 2).map((o) => [o.status, o.reason]), [['rejected', 'INVALID_COMMAND'], ['rejected', 'INVALID_COMMAND']]);
  assert.equal(outs[0], outs[1], 'identical when repeated');
  assert.equal([outs[2].status, r.eventCount], ['accepted', 1], 'the next command on the account goes on');
});

test('a Transfer refused before (Postgres keeps its destination) is answered as it was, whatever a re-send names', () => {
  const known: KnownOutcome = { status: 'rejected', type: 'Transfer', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 3.00 is less than 9.00', toAccountId: B, sourcePartition: 1, sourceOffset: 2 };
  const { r, outs } = run([[1, 20, transfer(T2, '9.00', A)]], { [`${A}/${T2}`]: known }, null, true);
  assert.equal(outs, [{ commandId: T2, accountId: A, type: 'Transfer', status: 'rejected', transferId: T2, toAccountId: B, reason: 'INSUFFICIENT_FUNDS', detail: 'balance 3.00 is less than 9.00' }]);
  assert.equal(r.counts, [{ type: 'Transfer', status: 'duplicate', count: 1 }], 'counted as the re-send it is');
  assert.is(r.rejectionCount + r.eventCount, 0);
});

test('a Transfer that re-uses a Deposit\'s id is a duplicate of the Deposit, not an accepted transfer', () => {
  const { r, outs, steps } = run([[1, 30, transfer(D, '1.00')]], { [`${A}/${D}`]: acceptedD }, null, true);
  assert.equal(outs, [{ commandId: D, accountId: A, type: 'Transfer', status: 'duplicate', originalStatus: 'accepted', version: 3, balance: '5.00' }]);
  assert.equal([steps.length, r.eventCount, r.transferCount], [0, 0, 0], 'no money moves');
});

test.run();
