/**
 * The transfer role's worker (src/pipeline/transfers/decide-steps.ts), and
 * the whole chain through both workers as Kafka would carry it: Transfer on
 * bank.commands → CreditTransfer on bank.transfers → (refused) RefundTransfer
 * → one final outcome per transfer, with every step re-delivered to show a
 * re-send changes nothing and answers the same.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decideShard, type KnownOutcome, type ShardResult } from '../../../src/pipeline/commands/decide-shard';
import { decideSteps } from '../../../src/pipeline/transfers/decide-steps';
import { forEachRecord, Packer } from '../../../src/pipeline/pack';
import { creditStepJson, refundStepJson } from '../../../src/codec/transfer-step';
import { transferStepId } from '../../../src/domain/transfer';
import type { AccountState } from '../../../src/domain/types';

const A = '0a000000-0000-4000-8000-0000000000aa', B = '0b000000-0000-4000-8000-0000000000bb', C = '0c000000-0000-4000-8000-0000000000cc';
const T1 = '71000000-0000-4000-8000-000000000001', T2 = '72000000-0000-4000-8000-000000000002';
const open = (accountId: string, balance: number, currency = 'USD', version = 1): AccountState => ({ accountId, version, balance, currency, status: 'open', ownerName: '' });
type Rec = { key: string; value: Record<string, unknown> };

function records(bytes: Uint8Array): Rec[] {
  const out: Rec[] = [];
  forEachRecord(bytes, (k, v) => {
    const value = JSON.parse(v!.toString()) as Record<string, unknown>;
    delete value.processedAt;
    out.push({ key: k!.toString(), value });
  });
  return out;
}

let offset = 0;
function pack(recs: Array<{ key: string; value: string }>): Uint8Array {
  const p = new Packer(4096);
  for (const r of recs) p.message(0, offset++, r.key, Buffer.from(r.value));
  return p.finish();
}
function raw(bytes: Uint8Array): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = [];
  forEachRecord(bytes, (k, v) => out.push({ key: k!.toString(), value: v!.toString() }));
  return out;
}
const task = (msgs: Uint8Array, states: AccountState[], known: Map<string, KnownOutcome> | null = null) =>
  ({ msgs, states, known, replayBelow: null, maxMessageBytes: 65536, nowMs: Date.parse('2026-12-02T00:00:00Z'), hashSeed: 0, transfers: true });

test('credited: the destination gains, the transfer settles, and the final outcome reports the source after its debit', () => {
  const step = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T1, 'credit'), transferId: T1, accountId: B, fromAccountId: A, amount: '2.00', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00' };
  const r = decideSteps(task(pack([{ key: B, value: creditStepJson(step) }, { key: B, value: creditStepJson(step) }]), [open(B, 100, 'USD', 2)]));
  assert.equal([r.eventCount, r.rejectionCount], [1, 0], 'the copy in the same slice writes nothing');
  assert.equal(r.states.map((s) => [s.accountId, s.version, s.balance]), [[B, 3, 300]]);
  // settled only if the source's debit is at that version with that balance (settleTransfers)
  assert.equal(r.settlements, [{ sourceId: A, transferId: T1, settled: 'credited', reason: null, destinationId: B, amount: 200, currency: 'USD', sourceVersion: 4, sourceBalance: 300, creditStepId: null }]);
  const final = { commandId: T1, accountId: A, type: 'Transfer', status: 'accepted', transferId: T1, toAccountId: B, version: 4, balance: '3.00' };
  assert.equal(records(r.outcomes), [{ key: A, value: final }, { key: A, value: final }], 'identical when repeated');
  assert.equal(r.counts, [{ type: 'Transfer', status: 'accepted', count: 1 }]);
  assert.equal(raw(r.steps), []);
});

test('a credit onto an account whose transfers in flight need the room: checked at commit uncounted, refused and refunded counted', () => {
  const MAX = Number.MAX_SAFE_INTEGER, T3 = '73000000-0000-4000-8000-000000000003';
  // B is 3.00 short of the limit with 1.00 in flight in two transfers (0.40 and 0.60); A sends it 2.50, and B's 0.40 (T3) comes back in the same slice
  const credit = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T1, 'credit'), transferId: T1, accountId: B, fromAccountId: A, amount: '2.50', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00' };
  const refund = (amount: string) => ({ type: 'RefundTransfer' as const, commandId: transferStepId(B, T3, 'refund'), transferId: T3, accountId: B, toAccountId: C, amount, currency: 'USD', reason: 'DESTINATION_CLOSED' as const });
  const msgs = pack([{ key: B, value: creditStepJson(credit) }, { key: B, value: refundStepJson(refund('0.40')) }]);
  const b = { ...open(B, MAX - 300, 'USD', 5), transfersPending: 2, transfersPendingAmount: 100 };
  // uncounted (a cached state, whatever count it carries): the balance fits, so it is credited; the commit gets the
  // balance at the credit, to which it adds the 1.00 the table has in flight
  const uncounted = decideSteps(task(msgs, [b]));
  assert.equal([uncounted.eventCount, uncounted.raisedAccounts, uncounted.raisedPeaks], [2, [B], [String(MAX - 50)]]);
  // counted from the transfers table: refused LIMIT_EXCEEDED, recorded, and the money goes back to A
  const counted = decideSteps({ ...task(msgs, [b]), pendingCounted: true });
  assert.equal([counted.eventCount, counted.rejectionCount, counted.raisedAccounts], [1, 1, []]);
  assert.equal(raw(counted.steps).map((x) => [x.key, (JSON.parse(x.value) as { reason: string }).reason]), [[A, 'LIMIT_EXCEEDED']]);
  assert.equal(counted.states.map((s) => [s.balance, s.transfersPending, s.transfersPendingAmount]), [[MAX - 260, 1, 60]], 'T3 refunded, the 0.60 still in flight');
  // had B's one transfer in flight been 1.00: uncounted, the credit takes the room and its refund cannot land. The
  // dead letter is one the role never sends from a state it did not count (mustRedo): counted, the credit is refused
  const bigger = pack([{ key: B, value: creditStepJson(credit) }, { key: B, value: refundStepJson(refund('1.00')) }]);
  const one = { ...b, transfersPending: 1 };
  assert.equal(decideSteps(task(bigger, [one])).dlq.map((d) => d.code), ['REFUND_IMPOSSIBLE']);
  const redone = decideSteps({ ...task(bigger, [one]), pendingCounted: true });
  assert.equal([redone.dlq, redone.rejectionCount, redone.states.map((s) => [s.balance, s.transfersPending])], [[], 1, [[MAX - 200, 0]]]);
});

test('refused at the destination: recorded there, then refunded, and the final outcome is the refusal', () => {
  const step = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T2, 'credit'), transferId: T2, accountId: C, fromAccountId: A, amount: '5.00', currency: 'USD', sourceVersion: 7, sourceBalance: '1.00' };
  const credit = decideSteps(task(pack([{ key: C, value: creditStepJson(step) }]), [open(C, 0, 'EUR')]));
  assert.equal([credit.eventCount, credit.rejectionCount, credit.settlements.length, records(credit.outcomes).length], [0, 1, 0, 0]);
  const refundMsgs = raw(credit.steps);
  assert.equal(refundMsgs.map((m) => [m.key, JSON.parse(m.value).type, JSON.parse(m.value).reason]), [[A, 'RefundTransfer', 'CURRENCY_MISMATCH']]);
  const refund = decideSteps(task(pack([...refundMsgs, ...refundMsgs]), [open(A, 100, 'USD', 7)]));
  assert.equal([refund.eventCount, refund.states[0].balance, refund.states[0].version], [1, 600, 8]);
  // settled only if the destination recorded its refusal of this credit step, for this reason (settleTransfers)
  assert.equal(refund.settlements, [{ sourceId: A, transferId: T2, settled: 'refunded', reason: 'CURRENCY_MISMATCH', destinationId: C, amount: 500, currency: 'USD', sourceVersion: null, sourceBalance: null, creditStepId: step.commandId }]);
  const final = { commandId: T2, accountId: A, type: 'Transfer', status: 'rejected', transferId: T2, toAccountId: C, reason: 'CURRENCY_MISMATCH', version: 8, balance: '6.00' };
  assert.equal(records(refund.outcomes), [{ key: A, value: final }, { key: A, value: final }]);
});

test('steps done before (Postgres knows them) are answered again without writing', () => {
  const credit = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T1, 'credit'), transferId: T1, accountId: B, fromAccountId: A, amount: '2.00', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00' };
  const refund = { type: 'RefundTransfer' as const, commandId: transferStepId(A, T2, 'refund'), transferId: T2, accountId: A, toAccountId: C, amount: '5.00', currency: 'USD', reason: 'DESTINATION_CLOSED' as const };
  const refusedCredit = { ...credit, commandId: transferStepId(A, T2, 'credit'), transferId: T2, accountId: C };
  const known = new Map<string, KnownOutcome>([
    [`${B}/${credit.commandId}`, { status: 'accepted', type: 'CreditTransfer', version: 3, balance: '3.00' }],
    [`${C}/${refusedCredit.commandId}`, { status: 'rejected', type: 'CreditTransfer', reason: 'DESTINATION_CLOSED' }],
    [`${A}/${refund.commandId}`, { status: 'accepted', type: 'RefundTransfer', version: 9, balance: '8.00' }],
  ]);
  const r = decideSteps(task(pack([
    { key: B, value: creditStepJson(credit) }, { key: C, value: creditStepJson(refusedCredit) }, { key: A, value: refundStepJson(refund) },
  ]), [], known));
  assert.equal([r.eventCount, r.rejectionCount, r.settlements.length], [0, 0, 0]);
  assert.equal(records(r.outcomes).map((o) => [o.value.transferId, o.value.status, o.value.version]), [[T1, 'accepted', 4], [T2, 'rejected', 9]]);
  assert.equal(raw(r.steps).map((m) => JSON.parse(m.value).commandId), [transferStepId(A, T2, 'refund')]);
  // the outcomes came from the copies' fields: each copy must agree with its settled transfer (the role checks these)
  assert.equal(r.repeats, [
    { sourceId: A, transferId: T1, settled: 'credited', reason: null, destinationId: B, amount: 200, currency: 'USD', sourceVersion: 4, sourceBalance: 300, creditStepId: null },
    { sourceId: A, transferId: T2, settled: 'refunded', reason: 'DESTINATION_CLOSED', destinationId: C, amount: 500, currency: 'USD', sourceVersion: null, sourceBalance: null, creditStepId: refusedCredit.commandId },
  ]);
});

test('a forged or damaged step is a dead letter, and the slice goes on', () => {
  const good = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T1, 'credit'), transferId: T1, accountId: B, fromAccountId: A, amount: '2.00', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00' };
  const forged = { ...good, commandId: '0f000000-0000-4000-8000-000000000001' };
  const r = decideSteps(task(pack([{ key: B, value: JSON.stringify(forged) }, { key: B, value: '{' }, { key: B, value: creditStepJson(good) }]), [open(B, 0)]));
  assert.equal(r.dlq.map((d) => [d.index, d.code]), [[0, 'INVALID_STEP'], [1, 'NOT_JSON']]);
  assert.is(r.eventCount, 1);
});

test('the chain through both workers moves money exactly once, with every message delivered twice', () => {
  // A holds 10.00 USD; B is a USD account; C is closed. T1: A → B 4.00; T2: A → C 3.00
  const states = new Map<string, AccountState>([[A, open(A, 1000)], [B, open(B, 0)], [C, { ...open(C, 0, 'USD', 2), status: 'closed' }]]);
  const apply = (r: ShardResult) => { for (const s of r.states) states.set(s.accountId, s); };
  const all = () => [...states.values()];
  const cmds = [T1, T2].map((t, i) => ({ key: A, value: JSON.stringify({ commandId: t, type: 'Transfer', accountId: A, toAccountId: i === 0 ? B : C, amount: i === 0 ? '4.00' : '3.00' }) }));
  const debits = decideShard(task(pack([...cmds, ...cmds]), all()));
  apply(debits);
  assert.equal([debits.eventCount, debits.transferCount, records(debits.outcomes).length], [2, 2, 0]);
  const credits = raw(debits.steps);
  assert.is(credits.length, 4, 'each re-sent Transfer sends its credit step again');
  const c = decideSteps(task(pack(credits), all()));
  apply(c);
  const refunds = raw(c.steps);
  assert.is(refunds.length, 2, 'the refused credit and its copy each ask for the refund');
  const f = decideSteps(task(pack(refunds), all()));
  apply(f);
  const finals = [...records(c.outcomes), ...records(f.outcomes)];
  assert.equal(finals.map((o) => [o.value.transferId, o.value.status, o.value.reason ?? null, o.value.version, o.value.balance]), [
    [T1, 'accepted', null, 2, '6.00'], [T1, 'accepted', null, 2, '6.00'],
    [T2, 'rejected', 'DESTINATION_CLOSED', 4, '6.00'], [T2, 'rejected', 'DESTINATION_CLOSED', 4, '6.00'],
  ]);
  // exactly once: A debited twice and refunded once, B credited once, C untouched; nothing in flight, nothing lost
  assert.equal([states.get(A)!.balance, states.get(A)!.version, states.get(B)!.balance, states.get(B)!.version, states.get(C)!.version], [600, 4, 400, 2, 2]);
  assert.is(states.get(A)!.balance + states.get(B)!.balance + states.get(C)!.balance, 1000);
});

test('a step whose id holds another command is dead-lettered, not taken for done', () => {
  const step = { type: 'CreditTransfer' as const, commandId: transferStepId(A, T1, 'credit'), transferId: T1, accountId: B, fromAccountId: A, amount: '2.00', currency: 'USD', sourceVersion: 4, sourceBalance: '3.00' };
  const taken = new Map<string, KnownOutcome>([[`${B}/${step.commandId}`, { status: 'rejected', type: 'Deposit', reason: 'INVALID_COMMAND' }]]);
  const r = decideSteps(task(pack([{ key: B, value: creditStepJson(step) }]), [open(B, 100)], taken));
  assert.equal(r.dlq.map((d) => d.code), ['STEP_ID_TAKEN']);
  assert.equal([r.eventCount, r.rejectionCount, raw(r.outcomes).length, raw(r.steps).length], [0, 0, 0, 0]);
});

test.run();
