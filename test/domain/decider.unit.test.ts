import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide, evolve, stateFromLatestEvent } from '../../src/domain/decider';
import type { AccountState, Command, Decision, DomainEvent, RejectReason } from '../../src/domain/types';

const ACC = '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11';
let seq = 0;
const cid = (): string => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;

type Body =
  | { type: 'OpenAccount'; ownerName?: string; currency?: string; initialBalance?: string }
  | { type: 'Deposit' | 'Withdraw'; amount: string }
  | { type: 'CloseAccount'; reason?: string };

function cmd(body: Body, expectedVersion?: number): Command {
  const base = { commandId: cid(), accountId: ACC, ...(expectedVersion === undefined ? {} : { expectedVersion }) };
  if (body.type === 'OpenAccount') {
    return { ...base, type: 'OpenAccount', ownerName: body.ownerName ?? 'Ada', currency: body.currency ?? 'USD', initialBalance: body.initialBalance ?? '0' };
  }
  return { ...base, ...body } as Command;
}

/** Folds commands that must all be accepted into (state, events). */
function fold(commands: Body[]): { state: AccountState | null; events: DomainEvent[] } {
  let state: AccountState | null = null;
  const events: DomainEvent[] = [];
  for (const body of commands) {
    const d = decide(state, cmd(body));
    if (!d.accepted) throw new Error(`given: ${body.type} rejected ${d.rejected} ${d.detail}`);
    events.push(d.event);
    state = d.state;
  }
  return { state, events };
}

// given(history).when(command) → the decision, with the invariant that
// decide's state equals evolve over its event.
function given(history: Body[]) {
  const { state, events } = fold(history);
  const replayed = events.reduce<AccountState | null>(evolve, null);
  assert.equal(replayed, state, 'replaying events rebuilds the state');
  return {
    when(body: Body, expectedVersion?: number) {
      const d = decide(state, cmd(body, expectedVersion));
      if (d.accepted) assert.equal(evolve(state, d.event), d.state, 'decide agrees with evolve');
      return {
        rejected(reason: RejectReason, detail?: RegExp) {
          assert.is(d.accepted, false, `expected ${reason}`);
          assert.is((d as Extract<Decision, { accepted: false }>).rejected, reason);
          if (detail) assert.match((d as Extract<Decision, { accepted: false }>).detail ?? '', detail);
        },
        accepted(type: DomainEvent['type'], data: Record<string, unknown>, version: number) {
          if (!d.accepted) throw new Error(`expected ${type}, got ${d.rejected}: ${d.detail}`);
          assert.is(d.event.type, type);
          assert.is(d.event.version, version);
          assert.is(d.event.accountId, ACC);
          assert.equal(d.event.data, data);
          assert.is(d.state.version, version);
          return d.state;
        },
      };
    },
  };
}

const open = (initialBalance = '0', currency = 'USD'): Body => ({ type: 'OpenAccount', initialBalance, currency });
const dep = (amount: string): Body => ({ type: 'Deposit', amount });
const wd = (amount: string): Body => ({ type: 'Withdraw', amount });
const close = (reason?: string): Body => ({ type: 'CloseAccount', ...(reason === undefined ? {} : { reason }) });

test('OpenAccount creates version 1 with a canonical initial balance', () => {
  const s = given([]).when(open('10.5')).accepted(
    'AccountCreated',
    { ownerName: 'Ada', currency: 'USD', initialBalance: '10.50', balanceAfter: '1050' },
    1,
  );
  assert.equal(s, { accountId: ACC, version: 1, balance: 1050, currency: 'USD', status: 'open', ownerName: 'Ada' });
});

test('OpenAccount with zero, JPY and BHD balances', () => {
  given([]).when(open('0')).accepted('AccountCreated', { ownerName: 'Ada', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }, 1);
  given([]).when(open('5', 'JPY')).accepted('AccountCreated', { ownerName: 'Ada', currency: 'JPY', initialBalance: '5', balanceAfter: '5' }, 1);
  given([]).when(open('1.234', 'BHD')).accepted('AccountCreated', { ownerName: 'Ada', currency: 'BHD', initialBalance: '1.234', balanceAfter: '1234' }, 1);
});

test('OpenAccount rejections', () => {
  given([open()]).when(open()).rejected('ACCOUNT_EXISTS');
  given([open(), close()]).when(open()).rejected('ACCOUNT_EXISTS');
  given([]).when(open('1', 'XYZ')).rejected('INVALID_COMMAND', /currency XYZ/);
  given([]).when(open('1.5', 'JPY')).rejected('INVALID_COMMAND', /fraction digits/);
  given([]).when(open('-1')).rejected('INVALID_COMMAND', /negative/);
  given([]).when(open('1e3')).rejected('INVALID_COMMAND', /decimal string/);
  given([]).when(open('90071992547409.92')).rejected('LIMIT_EXCEEDED');
});

test('expectedVersion is checked first, with 0 for a missing account', () => {
  given([]).when(open(), 0).accepted('AccountCreated', { ownerName: 'Ada', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }, 1);
  given([]).when(open(), 1).rejected('VERSION_CONFLICT', /expected version 1, account is at 0/);
  given([]).when(dep('1'), 3).rejected('VERSION_CONFLICT');
  given([open('1')]).when(close(), 0).rejected('VERSION_CONFLICT');
  given([open(), dep('1')]).when(wd('1'), 2).accepted('MoneyWithdrawn', { amount: '1.00', currency: 'USD', balanceAfter: '0' }, 3);
  given([open(), dep('1')]).when(wd('1'), 1).rejected('VERSION_CONFLICT');
});

test('commands on a missing or closed account', () => {
  for (const b of [dep('1'), wd('1'), close()]) {
    given([]).when(b).rejected('ACCOUNT_NOT_FOUND');
    given([open(), close()]).when(b).rejected('ACCOUNT_CLOSED');
  }
});

test('Deposit', () => {
  given([open('1')]).when(dep('10.5')).accepted('MoneyDeposited', { amount: '10.50', currency: 'USD', balanceAfter: '1150' }, 2);
  given([open('0', 'KWD')]).when(dep('0.001')).accepted('MoneyDeposited', { amount: '0.001', currency: 'KWD', balanceAfter: '1' }, 2);
  given([open()]).when(dep('0')).rejected('INVALID_COMMAND', /greater than zero/);
  given([open()]).when(dep('0.00')).rejected('INVALID_COMMAND');
  given([open()]).when(dep('1.001')).rejected('INVALID_COMMAND', /2 fraction digits for USD/);
  given([open('0', 'JPY')]).when(dep('1.5')).rejected('INVALID_COMMAND');
  given([open()]).when(dep('abc')).rejected('INVALID_COMMAND');
  given([open()]).when(dep('-5')).rejected('INVALID_COMMAND');
  given([open()]).when(dep('90071992547409.92')).rejected('LIMIT_EXCEEDED');
  given([open('90071992547409.91')]).when(dep('0.01')).rejected('LIMIT_EXCEEDED', /balance/);
  given([open('90071992547409.90')]).when(dep('0.01')).accepted(
    'MoneyDeposited', { amount: '0.01', currency: 'USD', balanceAfter: String(Number.MAX_SAFE_INTEGER) }, 2,
  );
});

test('Withdraw', () => {
  given([open('10')]).when(wd('10')).accepted('MoneyWithdrawn', { amount: '10.00', currency: 'USD', balanceAfter: '0' }, 2);
  given([open('10')]).when(wd('10.01')).rejected('INSUFFICIENT_FUNDS', /10\.00 is less than 10\.01/);
  given([open()]).when(wd('0')).rejected('INVALID_COMMAND');
  given([open('10')]).when(wd('1.5e1')).rejected('INVALID_COMMAND');
  given([open('10')]).when(wd('90071992547409.92')).rejected('LIMIT_EXCEEDED');
});

test('CloseAccount', () => {
  given([open()]).when(close('moving')).accepted('AccountClosed', { reason: 'moving', currency: 'USD', balanceAfter: '0' }, 2);
  const s = given([open('5'), wd('5')]).when(close()).accepted('AccountClosed', { currency: 'USD', balanceAfter: '0' }, 3);
  assert.is(s.status, 'closed');
  given([open('0.01')]).when(close()).rejected('BALANCE_NOT_ZERO');
});

test('50 withdrawals racing for one balance, folded in order', () => {
  // 100.00 / 7.00 → exactly 14 succeed, leaving 2.00.
  let state = fold([open('100')]).state;
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < 50; i++) {
    const d = decide(state, cmd(wd('7')));
    if (d.accepted) {
      accepted++;
      assert.is(d.event.version, state!.version + 1);
      state = d.state;
    } else {
      assert.is(d.rejected, 'INSUFFICIENT_FUNDS');
      rejected++;
    }
  }
  assert.is(accepted, Math.floor(10000 / 700));
  assert.is(rejected, 50 - accepted);
  assert.is(state!.balance, 200);
  assert.is(state!.version, 1 + accepted);
});

test('stateFromLatestEvent restores a cold account from one event', () => {
  const { events, state } = fold([open('3', 'EUR'), dep('2'), wd('1')]);
  const last = events[events.length - 1];
  const restored = stateFromLatestEvent(ACC, last.version, last.type, JSON.parse(JSON.stringify(last.data)));
  assert.equal(restored, { ...state!, ownerName: '' });
  const created = stateFromLatestEvent(ACC, 1, 'AccountCreated', events[0].data);
  assert.is(created.ownerName, 'Ada');
  const closed = stateFromLatestEvent(ACC, 7, 'AccountClosed', { currency: 'JPY', balanceAfter: '0' }, 'Bo');
  assert.equal(closed, { accountId: ACC, version: 7, balance: 0, currency: 'JPY', status: 'closed', ownerName: 'Bo' });
  // A restored state decides exactly like the warm one.
  const next = decide(restored, cmd(wd('4')));
  assert.ok(next.accepted);
  assert.is(next.accepted && next.state.balance, 0);
});

test('stateFromLatestEvent refuses corrupt stored data', () => {
  assert.throws(() => stateFromLatestEvent(ACC, 2, 'MoneyDeposited', null));
  assert.throws(() => stateFromLatestEvent(ACC, 2, 'MoneyDeposited', { currency: 'USD', balanceAfter: '1.5' }));
  assert.throws(() => stateFromLatestEvent(ACC, 2, 'MoneyDeposited', { currency: 'USD', balanceAfter: 15 }));
  assert.throws(() => stateFromLatestEvent(ACC, 2, 'MoneyDeposited', { balanceAfter: '15' }));
  assert.throws(() => stateFromLatestEvent(ACC, 2, 'Bogus' as never, { currency: 'USD', balanceAfter: '15' }));
});

test.run();
