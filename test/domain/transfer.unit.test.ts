import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide } from '../../src/domain/decider';
import {
  decideCredit, decideRefund, decideTransfer, isReservedId, transferStepId,
  type CreditTransfer, type RefundTransfer, type Transfer, type TransferDecision, type TransferEvent,
} from '../../src/domain/transfer';
import type { AccountState, Command, RejectReason } from '../../src/domain/types';

const A = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11';
const B = '1c7e7d2f-9b6e-4d66-8b9f-6b8a5a1a8b22';
let seq = 0;
const cid = (): string => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;

const open = (id: string, balance: number, currency = 'USD'): AccountState => ({ accountId: id, version: 1, balance, currency, status: 'open', ownerName: 'Ada' });
const closed = (s: AccountState): AccountState => ({ ...s, version: s.version + 1, balance: 0, status: 'closed' });
const transfer = (amount: string, over: Partial<Transfer> = {}): Transfer => ({ type: 'Transfer', commandId: cid(), accountId: A, toAccountId: B, amount, ...over });

function credited(d: TransferDecision): { event: TransferEvent; state: AccountState } {
  if (!d.accepted) throw new Error(`expected acceptance, got ${d.rejected}: ${d.detail}`);
  return d;
}
function rejected(d: TransferDecision, reason: RejectReason, detail?: RegExp): void {
  assert.is(d.accepted, false, `expected ${reason}`);
  if (d.accepted) return;
  assert.is(d.rejected, reason);
  if (detail) assert.match(d.detail ?? '', detail);
}
/** The credit step as the process builds it from a debit event. */
function creditOf(e: TransferEvent): CreditTransfer {
  return { type: 'CreditTransfer', commandId: transferStepId(e.accountId, e.data.transferId, 'credit'), transferId: e.data.transferId, accountId: e.data.toAccountId!, fromAccountId: e.accountId, amount: e.data.amount, currency: e.data.currency };
}
function refundOf(e: TransferEvent, reason: RejectReason): RefundTransfer {
  return { type: 'RefundTransfer', commandId: transferStepId(e.accountId, e.data.transferId, 'refund'), transferId: e.data.transferId, accountId: e.accountId, toAccountId: e.data.toAccountId!, amount: e.data.amount, currency: e.data.currency, reason };
}

test('Transfer debits the source and puts the money in flight', () => {
  const t = transfer('2.5');
  const { event, state } = credited(decideTransfer(open(A, 1000), t));
  assert.equal(event, {
    type: 'TransferDebited', accountId: A, version: 2, commandId: t.commandId,
    data: { transferId: t.commandId, toAccountId: B, amount: '2.50', currency: 'USD', balanceAfter: '750' },
  });
  assert.equal(state, { ...open(A, 750), version: 2, transfersPending: 1, transfersPendingAmount: 250 });
  // a second one in flight counts too; the whole balance may leave
  const second = credited(decideTransfer(state, transfer('7.50')));
  assert.is(second.state.transfersPending, 2);
  assert.is(second.state.transfersPendingAmount, 1000);
  assert.is(second.state.balance, 0);
});

test('Transfer rejections at the source', () => {
  rejected(decideTransfer(open(A, 1000), transfer('1', { toAccountId: A })), 'SAME_ACCOUNT');
  rejected(decideTransfer(null, transfer('1')), 'ACCOUNT_NOT_FOUND');
  rejected(decideTransfer(closed(open(A, 0)), transfer('1')), 'ACCOUNT_CLOSED');
  rejected(decideTransfer(open(A, 1000), transfer('10.01')), 'INSUFFICIENT_FUNDS', /10\.00 is less than 10\.01/);
  rejected(decideTransfer(open(A, 1000), transfer('0')), 'INVALID_COMMAND', /greater than zero/);
  rejected(decideTransfer(open(A, 1000), transfer('-1')), 'INVALID_COMMAND', /negative/);
  rejected(decideTransfer(open(A, 1000), transfer('1.001')), 'INVALID_COMMAND', /fraction digits/);
  rejected(decideTransfer(open(A, 1000), transfer('1e2')), 'INVALID_COMMAND');
  rejected(decideTransfer(open(A, 1000), transfer('90071992547409.92')), 'LIMIT_EXCEEDED');
  // expectedVersion applies to the source and is checked first, 0 for a missing source
  rejected(decideTransfer(open(A, 1000), transfer('1', { expectedVersion: 2 })), 'VERSION_CONFLICT', /expected version 2, account is at 1/);
  rejected(decideTransfer(null, transfer('1', { expectedVersion: 1 })), 'VERSION_CONFLICT');
  rejected(decideTransfer(null, transfer('1', { expectedVersion: 0 })), 'ACCOUNT_NOT_FOUND');
  credited(decideTransfer(open(A, 1000), transfer('1', { expectedVersion: 1 })));
});

test('CreditTransfer credits the destination in the source currency', () => {
  const debit = credited(decideTransfer(open(A, 1000), transfer('4'))).event;
  const step = creditOf(debit);
  const { event, state } = credited(decideCredit({ ...open(B, 5), version: 3 }, step));
  assert.equal(event, {
    type: 'TransferCredited', accountId: B, version: 4, commandId: step.commandId,
    data: { transferId: debit.data.transferId, fromAccountId: A, amount: '4.00', currency: 'USD', balanceAfter: '405' },
  });
  assert.equal(state, { ...open(B, 405), version: 4 });
  assert.is(state.transfersPending, undefined, 'an incoming transfer is not outgoing');
  // JPY: no fraction digits on either side
  const jpy = credited(decideTransfer(open(A, 100, 'JPY'), transfer('30'))).event;
  assert.is(credited(decideCredit(open(B, 1, 'JPY'), creditOf(jpy))).state.balance, 31);
});

test('CreditTransfer refusals at the destination, each ending in a refund', () => {
  const debit = credited(decideTransfer(open(A, 1000), transfer('4'))).event;
  const step = creditOf(debit);
  rejected(decideCredit(null, step), 'DESTINATION_NOT_FOUND');
  rejected(decideCredit(closed(open(B, 0)), step), 'DESTINATION_CLOSED');
  rejected(decideCredit(open(B, 0, 'EUR'), step), 'CURRENCY_MISMATCH', /holds EUR, the transfer is in USD/);
  rejected(decideCredit(open(B, Number.MAX_SAFE_INTEGER - 1), step), 'LIMIT_EXCEEDED');
  rejected(decideCredit(open(B, 0), { ...step, amount: 'x' }), 'INVALID_COMMAND');
});

test('RefundTransfer returns the money to the source and settles it, never refused', () => {
  const debited = credited(decideTransfer(open(A, 1000), transfer('4')));
  const step = refundOf(debited.event, 'DESTINATION_CLOSED');
  // money arrived and left meanwhile: the refund still goes through
  const drained = credited(decideTransfer(debited.state, transfer('6')));
  const { event, state } = decideRefund(drained.state, step);
  assert.equal(event, {
    type: 'TransferRefunded', accountId: A, version: 4, commandId: step.commandId,
    data: { transferId: debited.event.data.transferId, toAccountId: B, amount: '4.00', currency: 'USD', balanceAfter: '400', reason: 'DESTINATION_CLOSED' },
  });
  assert.is(state.balance, 400);
  assert.is(state.transfersPending, 1, 'the other transfer is still in flight');
  // what cannot happen is corruption, not a rejection
  assert.throws(() => decideRefund(null, step), /has no events/);
  assert.throws(() => decideRefund(open(A, 0, 'EUR'), step), /not what account/);
});

test('an account with outgoing transfers in flight cannot be closed; once settled it can', () => {
  const close = (s: AccountState) => decide(s, { type: 'CloseAccount', commandId: cid(), accountId: A } as Command);
  const debited = credited(decideTransfer(open(A, 400), transfer('4')));
  assert.is(debited.state.balance, 0);
  const d = close(debited.state);
  assert.ok(!d.accepted && d.rejected === 'TRANSFERS_PENDING', 'in flight: refused');
  // a deposit keeps the count
  const dep = decide(debited.state, { type: 'Deposit', commandId: cid(), accountId: A, amount: '1' });
  assert.ok(dep.accepted && dep.state.transfersPending === 1);
  // settled at the destination: the count is read where transfers are recorded, 0 now
  const c = close({ ...debited.state, transfersPending: 0 });
  assert.ok(c.accepted, 'settled: closes');
  // refunded: balance back, so BALANCE_NOT_ZERO comes first, then it can be emptied and closed
  const refunded = decideRefund(debited.state, refundOf(debited.event, 'DESTINATION_NOT_FOUND')).state;
  assert.is(refunded.transfersPending, 0);
  const r = close(refunded);
  assert.ok(!r.accepted && r.rejected === 'BALANCE_NOT_ZERO');
});

test('a deposit or credit that would leave no room to refund the transfers in flight is LIMIT_EXCEEDED, so a refund always fits', () => {
  const MAX = Number.MAX_SAFE_INTEGER;
  const deposit = (s: AccountState, amount: string) => decide(s, { type: 'Deposit', commandId: cid(), accountId: A, amount } as Command);
  // A, 2.00 short of the limit, sends 1.00 to B: 3.00 of room, 1.00 of it held for a refund
  const debited = credited(decideTransfer(open(A, MAX - 200), transfer('1.00')));
  assert.equal([debited.state.balance, debited.state.transfersPendingAmount], [MAX - 300, 100]);
  const over = deposit(debited.state, '2.01');
  assert.ok(!over.accepted && over.rejected === 'LIMIT_EXCEEDED', 'the balance alone would fit; with the refund it would not');
  assert.match(over.accepted ? '' : over.detail ?? '', /balance plus the 1\.00 USD held for outgoing transfers in flight would exceed/);
  const fits = deposit(debited.state, '2.00');
  assert.ok(fits.accepted && fits.state.balance === MAX - 100 && fits.state.transfersPendingAmount === 100, 'up to the limit with the refund');
  // the refund lands on the raised balance: exactly the limit
  const refund = decideRefund(fits.accepted ? fits.state : debited.state, refundOf(debited.event, 'DESTINATION_CLOSED'));
  assert.equal([refund.state.balance, refund.state.transfersPending, refund.state.transfersPendingAmount], [MAX, 0, 0]);
  // a balance raised without the rule (an older release, or a slice that did not count): the refund throws, and says what an operator needs
  assert.throws(() => decideRefund({ ...debited.state, balance: MAX - 50 }, refundOf(debited.event, 'DESTINATION_CLOSED')),
    /1\.00 USD back onto account .* \(balance 90071992547409\.41\) would exceed/);
  // a credit to A from elsewhere is held to the same rule, and the refused credit is refunded to its sender
  const credit = (s: AccountState, amount: string): TransferDecision => decideCredit(s, { type: 'CreditTransfer', commandId: cid(), transferId: cid(), accountId: A, fromAccountId: B, amount, currency: 'USD' });
  rejected(credit(debited.state, '2.01'), 'LIMIT_EXCEEDED', /held for outgoing transfers in flight/);
  assert.is(credited(credit(debited.state, '2.00')).state.balance, MAX - 100);
  // nothing in flight (or not counted): only the balance itself is limited
  assert.ok(deposit({ ...debited.state, transfersPending: 0, transfersPendingAmount: 0 }, '3.00').accepted);
  assert.ok(deposit({ ...debited.state, transfersPending: undefined, transfersPendingAmount: undefined }, '3.00').accepted);
  // a second transfer holds its amount too; a refund gives it back
  const two = credited(decideTransfer(debited.state, transfer('0.50')));
  assert.is(two.state.transfersPendingAmount, 150);
  assert.is(decideRefund(two.state, refundOf(two.event, 'DESTINATION_NOT_FOUND')).state.transfersPendingAmount, 100);
});

test('step ids are deterministic per source, transfer and step, and valid UUIDs of the reserved version 8', () => {
  const t = '5d3c2b1a-0f9e-4d8c-b7a6-958473625140';
  assert.is(transferStepId(A, t, 'credit'), transferStepId(A, t, 'credit'));
  assert.is(transferStepId(A.toUpperCase(), t.toUpperCase(), 'credit'), transferStepId(A, t, 'credit'));
  assert.is.not(transferStepId(A, t, 'credit'), transferStepId(A, t, 'refund'));
  assert.is.not(transferStepId(A, t, 'credit'), transferStepId(A, '5d3c2b1a-0f9e-4d8c-b7a6-958473625141', 'credit'));
  // a transferId is the source's commandId, unique per account only: another source's same id is another transfer
  assert.is.not(transferStepId(A, t, 'credit'), transferStepId(B, t, 'credit'));
  for (const step of ['credit', 'refund'] as const) {
    assert.match(transferStepId(A, t, step), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(isReservedId(transferStepId(A, t, step)));
  }
  assert.not.ok(isReservedId(t));
  assert.not.ok(isReservedId('0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b')); // version 7
});

test('money is conserved: 5,000 random steps over 6 accounts in two currencies', () => {
  // a tiny process: every debit's credit or refund runs later, in random order
  let r = 42;
  const rnd = (n: number) => { r = (r * 1103515245 + 12345) & 0x7fffffff; return r % n; };
  const ids = Array.from({ length: 6 }, (_, i) => `00000000-0000-4000-8000-0000000000a${i}`);
  const states = new Map<string, AccountState | null>(ids.map((id, i) => [id, i === 5 ? null : open(id, 10_000, i % 2 ? 'EUR' : 'USD')]));
  const put = (s: AccountState) => states.set(s.accountId, s);
  const inFlight: Array<{ e: TransferEvent; step: 'credit' | 'refund'; reason?: RejectReason }> = [];
  const minted: Record<string, number> = { USD: 30_000, EUR: 20_000 };
  const ran: Record<string, number> = {};
  const saw = (what: string) => { ran[what] = (ran[what] ?? 0) + 1; };
  const flightTotal = (c: string) => inFlight.reduce((t, f) => t + (f.e.data.currency === c ? Number(f.e.data.amount.replace('.', '')) : 0), 0);
  for (let i = 0; i < 5000; i++) {
    const k = rnd(10);
    if (k < 5 || inFlight.length === 0) {
      const from = ids[rnd(6)], to = ids[rnd(6)];
      const d = decideTransfer(states.get(from) ?? null, { type: 'Transfer', commandId: cid(), accountId: from, toAccountId: to, amount: `${rnd(30) + 1}.00` });
      if (d.accepted) { put(d.state); inFlight.push({ e: d.event, step: 'credit' }); saw('debited'); } else saw(d.rejected);
    } else if (k < 6) {
      const id = ids[rnd(5)], s = states.get(id)!;
      const d = decide(s, { type: 'Deposit', commandId: cid(), accountId: id, amount: '5.00' });
      if (d.accepted) { put(d.state); minted[s.currency] += 500; }
    } else {
      const f = inFlight.splice(rnd(inFlight.length), 1)[0];
      if (f.step === 'credit') {
        const d = decideCredit(states.get(f.e.data.toAccountId!) ?? null, creditOf(f.e));
        if (d.accepted) {
          put(d.state);
          const src = states.get(f.e.accountId)!;
          // settled: the source's count and money in flight, as the process records them
          put({ ...src, transfersPending: src.transfersPending! - 1, transfersPendingAmount: src.transfersPendingAmount! - Number(f.e.data.amount.replace('.', '')) });
          saw('credited');
        } else { inFlight.push({ e: f.e, step: 'refund', reason: d.rejected }); saw(d.rejected); }
      } else {
        put(decideRefund(states.get(f.e.accountId)!, refundOf(f.e, f.reason!)).state);
        saw('refunded');
      }
    }
    for (const c of ['USD', 'EUR']) {
      const held = [...states.values()].reduce((t, s) => t + (s && s.currency === c ? s.balance : 0), 0);
      assert.is(held + flightTotal(c), minted[c], `step ${i}: ${c} balances plus money in flight`);
    }
    for (const s of states.values()) {
      if (!s) continue;
      assert.ok(s.balance >= 0 && (s.transfersPending ?? 0) >= 0);
      // the state's money in flight is its share of what is in flight
      const out = inFlight.reduce((t, f) => t + (f.e.accountId === s.accountId ? Number(f.e.data.amount.replace('.', '')) : 0), 0);
      assert.is(s.transfersPendingAmount ?? 0, out, `step ${i}: ${s.accountId} money in flight`);
    }
  }
  // the walk took every path: money moved, came back, and was refused at both ends
  for (const what of ['debited', 'credited', 'refunded', 'SAME_ACCOUNT', 'ACCOUNT_NOT_FOUND', 'INSUFFICIENT_FUNDS', 'DESTINATION_NOT_FOUND', 'CURRENCY_MISMATCH']) {
    assert.ok((ran[what] ?? 0) > 0, `${what} happened (${JSON.stringify(ran)})`);
  }
});

test.run();
