/**
 * The load driver's (and so the demo's) check of outcomes against the model
 * (dev/loadgen/outcome-checker.ts): a re-published copy after a hand-over is
 * at-least-once, not a difference; a wrong answer still is one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OutcomeChecker } from '../../dev/loadgen/outcome-checker';

const C = '3f0c1d52-6f1e-4d7e-9a57-0b6f4c1e2a10';
const accepted = (at: string) => ({ commandId: C, status: 'accepted', version: 1, balance: '5.00', processedAt: at });
const duplicate = (at: string) => ({ commandId: C, status: 'duplicate', originalStatus: 'accepted', version: 1, balance: '5.00', processedAt: at });

test('a command sent twice, its first answer re-published before the duplicate arrives: no difference', () => {
  const k = new OutcomeChecker();
  k.sent(C, 'accepted', 0);
  k.sent(C, 'duplicate', 1);
  assert.equal(k.received(accepted('t1'), 10), { kind: 'answer', latencyMs: 10, matches: true });
  assert.equal(k.received(accepted('t2'), 11), { kind: 'republished' }, 'the same answer again, later processedAt');
  assert.equal(k.received(duplicate('t3'), 12), { kind: 'answer', latencyMs: 11, matches: true });
  assert.equal(k.received(duplicate('t4'), 13), { kind: 'republished' }, 'a command owed nothing more');
  assert.equal([k.answered, k.mismatches, k.republished], [2, 0, 2]);
  k.received({ commandId: '9d7c7c3e-0000-4000-8000-000000000000', status: 'accepted' }, 14);
  assert.equal([k.republished, k.foreign], [2, 1], 'an outcome of a command this run never sent is not a re-publication');
});

test('an answer that differs from every earlier one and from the model is a mismatch', () => {
  const k = new OutcomeChecker();
  k.sent(C, 'accepted', 0);
  k.sent(C, 'duplicate', 1);
  k.received(accepted('t1'), 5);
  const other = { ...accepted('t2'), balance: '6.00' }; // not a copy: another balance
  assert.equal(k.received(other, 6), { kind: 'answer', latencyMs: 5, matches: false });
  assert.equal([k.answered, k.mismatches, k.republished], [2, 1, 0]);
});

test('a service that stamps no processedAt (the bench\'s echo) answers a re-send with the same bytes: that is the answer owed', () => {
  const k = new OutcomeChecker();
  k.sent(C, 'accepted', 0);
  k.sent(C, 'duplicate', 1);
  const echo = { commandId: C, status: 'accepted' };
  assert.is(k.received(echo, 2).kind, 'answer');
  assert.is(k.received(echo, 3).kind, 'answer', 'not taken for a re-publication: the driver would wait for it forever');
  assert.equal([k.answered, k.mismatches, k.republished], [2, 1, 0]);
});

test('a wrong first answer is a mismatch, not mistaken for a copy', () => {
  const k = new OutcomeChecker();
  k.sent(C, 'rejected', 0);
  assert.equal(k.received(accepted('t1'), 3), { kind: 'answer', latencyMs: 3, matches: false });
  assert.is(k.mismatches, 1);
});

test('a rejection is owed its reason, when the model knows it', () => {
  const k = new OutcomeChecker();
  const D = '7b0e5a39-2f2c-4a38-9a51-2d8f3c1e6b10';
  k.sent(C, 'rejected', 0, 'DESTINATION_CLOSED');
  k.sent(D, 'rejected', 0);
  assert.equal(k.received({ commandId: C, status: 'rejected', reason: 'CURRENCY_MISMATCH' }, 1), { kind: 'answer', latencyMs: 1, matches: false });
  assert.equal(k.received({ commandId: D, status: 'rejected', reason: 'CURRENCY_MISMATCH' }, 1), { kind: 'answer', latencyMs: 1, matches: true }, 'no reason owed: any');
  assert.match(k.mismatchSamples[0], /expected rejected DESTINATION_CLOSED, got .*CURRENCY_MISMATCH/);
  k.sent(C, 'rejected', 2, 'DESTINATION_CLOSED');
  assert.equal(k.received({ commandId: C, status: 'rejected', reason: 'DESTINATION_CLOSED' }, 3), { kind: 'answer', latencyMs: 1, matches: true });
});

test.run();
