import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { creditStepJson, decodeStep, refundStepJson, type CreditStep } from '../../src/codec/transfer-step';
import { transferStepId, type RefundTransfer } from '../../src/domain/transfer';

const T = '5d3c2b1a-0f9e-4d8c-b7a6-958473625140';
const A = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11', B = '1c7e7d2f-9b6e-4d66-8b9f-6b8a5a1a8b22';
const credit: CreditStep = { commandId: transferStepId(A, T, 'credit'), type: 'CreditTransfer', transferId: T, accountId: B, fromAccountId: A, amount: '4.00', currency: 'USD', sourceVersion: 7, sourceBalance: '12.50' };
const refund: RefundTransfer = { commandId: transferStepId(A, T, 'refund'), type: 'RefundTransfer', transferId: T, accountId: A, toAccountId: B, amount: '4.00', currency: 'USD', reason: 'DESTINATION_CLOSED' };
const dec = (key: string | null, body: unknown) => decodeStep(key === null ? null : Buffer.from(key), Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)));

test('steps round-trip, written as JSON.stringify would write them', () => {
  for (const [step, json] of [[credit, creditStepJson(credit)], [refund, refundStepJson(refund)]] as const) {
    assert.is(json, JSON.stringify(step));
    assert.equal(decodeStep(Buffer.from(step.accountId), Buffer.from(json)), { kind: 'ok', step });
  }
  // upper-case ids are read lower-case
  const upper = { ...refund, transferId: T.toUpperCase(), accountId: A.toUpperCase() };
  assert.equal(dec(A.toUpperCase(), upper), { kind: 'ok', step: refund });
});

test('anything else is a dead letter, naming what is wrong', () => {
  const cases: Array<[string | null, unknown, string, RegExp]> = [
    [B, '', 'EMPTY_VALUE', /no value/],
    [B, 'nope', 'NOT_JSON', /not JSON/],
    [B, '[1]', 'NOT_OBJECT', /object/],
    [B, { ...credit, type: 'Deposit' }, 'INVALID_STEP', /type must be/],
    [B, { ...credit, transferId: 'x' }, 'INVALID_STEP', /transferId/],
    // a step id not derived from the transfer: forged, or another transfer's
    [B, { ...credit, commandId: transferStepId(A, T, 'refund') }, 'INVALID_STEP', /credit step id/],
    [B, { ...credit, commandId: 'f'.repeat(8) + '-0000-4000-8000-000000000000' }, 'INVALID_STEP', /credit step id/],
    [A, credit, 'KEY_MISMATCH', /key/],
    [null, credit, 'KEY_MISMATCH', /key/],
    [B, { ...credit, amount: '0.00' }, 'INVALID_STEP', /amount/],
    [B, { ...credit, amount: '-1' }, 'INVALID_STEP', /amount/],
    [B, { ...credit, amount: 4 }, 'INVALID_STEP', /amount/],
    [B, { ...credit, currency: 'usd' }, 'INVALID_STEP', /currency/],
    [B, { ...credit, currency: 'XYZ' }, 'INVALID_STEP', /currency/],
    // more digits than the currency has: the destination could only refuse it as malformed, a reason no refund carries
    [B, { ...credit, amount: '1.001' }, 'INVALID_STEP', /positive USD amount/],
    [B, { ...credit, amount: '1.5', currency: 'JPY' }, 'INVALID_STEP', /positive JPY amount/],
    [B, { ...credit, fromAccountId: B, commandId: transferStepId(B, T, 'credit') }, 'INVALID_STEP', /fromAccountId/],
    // the same transferId from another source is another transfer: its step id differs
    [B, { ...credit, fromAccountId: '2d000000-0000-4000-8000-000000000002' }, 'INVALID_STEP', /credit step id of transfer .* from its source/],
    [B, { ...credit, sourceVersion: 1 }, 'INVALID_STEP', /sourceVersion/],
    [B, { ...credit, sourceBalance: '1e3' }, 'INVALID_STEP', /sourceBalance/],
    [A, { ...refund, reason: 'INSUFFICIENT_FUNDS' }, 'INVALID_STEP', /reason must be one of/],
    [A, { ...refund, toAccountId: A }, 'INVALID_STEP', /toAccountId/],
  ];
  for (const [key, body, code, message] of cases) {
    const d = dec(key, body);
    assert.is(d.kind, 'dlq', JSON.stringify(body));
    if (d.kind === 'dlq') {
      assert.is(d.code, code, JSON.stringify(body));
      assert.match(d.message, message);
    }
  }
  assert.is(decodeStep(Buffer.from(B), Buffer.from([0xff, 0xfe])).kind, 'dlq');
});

test.run();
