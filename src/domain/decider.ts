/**
 * The account decider: `decide(state, command)` and `evolve(state, event)`.
 *
 * States: null (no account) → open → closed. Invariants: version is the
 * number of events applied; balance is a non-negative safe integer of minor
 * units; a closed account has balance 0 and accepts no further command.
 *
 * Both functions are pure and total over valid input: a rejection is a
 * returned Decision, never an exception.
 */
import { fractionDigits } from './currency';
import { addMinor, formatMoney, parseMinor, parseMoney, type MoneyError } from './money';
import {
  isEventType,
  type AccountClosedData,
  type AccountState,
  type Command,
  type Decision,
  type DomainEvent,
  type EventType,
  type RejectReason,
  type Rejection,
} from './types';

export function reject(rejected: RejectReason, detail: string): Rejection {
  return { accepted: false, rejected, detail };
}

// TOO_LARGE is the only money error the sender cannot fix by correcting a
// typo, so it gets its own reason; everything else is a malformed command.
export function moneyReject(field: string, err: MoneyError, currency: string, digits: number): Rejection {
  switch (err) {
    case 'TOO_LARGE':
      return reject('LIMIT_EXCEEDED', `${field} exceeds the largest supported amount`);
    case 'TOO_MANY_DECIMALS':
      return reject('INVALID_COMMAND', `${field} has more than ${digits} fraction digits for ${currency}`);
    case 'NEGATIVE':
      return reject('INVALID_COMMAND', `${field} must not be negative`);
    case 'ZERO':
      return reject('INVALID_COMMAND', `${field} must be greater than zero`);
    default:
      return reject('INVALID_COMMAND', `${field} must be a decimal string like "10.50"`);
  }
}

function accept(state: AccountState, type: EventType, cmd: Command, data: DomainEvent['data']): Decision {
  return {
    accepted: true,
    event: { type, accountId: state.accountId, version: state.version, commandId: cmd.commandId, data },
    state,
  };
}

export function decide(state: AccountState | null, cmd: Command): Decision {
  const version = state === null ? 0 : state.version;
  if (cmd.expectedVersion !== undefined && cmd.expectedVersion !== version) {
    return reject('VERSION_CONFLICT', `expected version ${cmd.expectedVersion}, account is at ${version}`);
  }

  if (cmd.type === 'OpenAccount') {
    if (state !== null) return reject('ACCOUNT_EXISTS', `account ${cmd.accountId} already exists`);
    const digits = fractionDigits(cmd.currency);
    if (digits === undefined) return reject('INVALID_COMMAND', `currency ${cmd.currency} is not an ISO 4217 code`);
    const minor = parseMoney(cmd.initialBalance, digits, { allowZero: true });
    if (typeof minor !== 'number') return moneyReject('initialBalance', minor, cmd.currency, digits);
    const next: AccountState = {
      accountId: cmd.accountId,
      version: 1,
      balance: minor,
      currency: cmd.currency,
      status: 'open',
      ownerName: cmd.ownerName,
    };
    return accept(next, 'AccountCreated', cmd, {
      ownerName: cmd.ownerName,
      currency: cmd.currency,
      initialBalance: formatMoney(minor, digits),
      balanceAfter: String(minor),
    });
  }

  if (state === null) return reject('ACCOUNT_NOT_FOUND', `account ${cmd.accountId} does not exist`);
  if (state.status === 'closed') return reject('ACCOUNT_CLOSED', `account ${cmd.accountId} is closed`);

  if (cmd.type === 'CloseAccount') {
    if (state.balance !== 0) return reject('BALANCE_NOT_ZERO', 'an account must have a zero balance to close');
    const inFlight = state.transfersPending ?? 0;
    if (inFlight > 0) return reject('TRANSFERS_PENDING', `${inFlight} outgoing transfer(s) of account ${cmd.accountId} are not settled yet`);
    const data: AccountClosedData = { currency: state.currency, balanceAfter: '0' };
    if (cmd.reason !== undefined) data.reason = cmd.reason;
    return accept(withState(state, 0, 'closed'), 'AccountClosed', cmd, data);
  }

  const digits = fractionDigits(state.currency);
  // Only reachable with a hand-made state; an opened account always has a known currency.
  if (digits === undefined) return reject('INVALID_COMMAND', `account currency ${state.currency} is unknown`);
  const amount = parseMoney(cmd.amount, digits, { allowZero: false });
  if (typeof amount !== 'number') return moneyReject('amount', amount, state.currency, digits);

  if (cmd.type === 'Deposit') {
    const balance = addMinor(state.balance, amount);
    if (balance === 'TOO_LARGE') return reject('LIMIT_EXCEEDED', 'balance would exceed the largest supported amount');
    const noRoom = refundRoomRejection(state, balance);
    if (noRoom) return noRoom;
    return accept(withState(state, balance, 'open'), 'MoneyDeposited', cmd, {
      amount: formatMoney(amount, digits),
      currency: state.currency,
      balanceAfter: String(balance),
    });
  }

  if (amount > state.balance) {
    return reject(
      'INSUFFICIENT_FUNDS',
      `balance ${formatMoney(state.balance, digits)} is less than ${formatMoney(amount, digits)}`,
    );
  }
  const balance = state.balance - amount;
  return accept(withState(state, balance, 'open'), 'MoneyWithdrawn', cmd, {
    amount: formatMoney(amount, digits),
    currency: state.currency,
    balanceAfter: String(balance),
  });
}

/**
 * The refusal of a deposit or credit that would leave `balance` with no room
 * for the refunds of the account's outgoing transfers in flight: with them
 * back it would pass 2^53 − 1 minor units. Null when there is room. Refused
 * now, so that a refund is never refused (docs/transfers.md).
 */
export function refundRoomRejection(state: AccountState, balance: number): Rejection | null {
  const inFlight = state.transfersPendingAmount ?? 0;
  if (inFlight === 0 || addMinor(balance, inFlight) !== 'TOO_LARGE') return null;
  const digits = fractionDigits(state.currency) ?? 2;
  return reject('LIMIT_EXCEEDED', `the balance plus the ${formatMoney(inFlight, digits)} ${state.currency} held for outgoing transfers in flight would exceed the largest supported amount`);
}

// decide builds the next state directly instead of re-parsing the event's
// balanceAfter through evolve; the unit tests check both agree.
function withState(s: AccountState, balance: number, status: AccountState['status']): AccountState {
  const next: AccountState = {
    accountId: s.accountId,
    version: s.version + 1,
    balance,
    currency: s.currency,
    status,
    ownerName: s.ownerName,
  };
  if (s.transfersPending !== undefined) next.transfersPending = s.transfersPending;
  if (s.transfersPendingAmount !== undefined) next.transfersPendingAmount = s.transfersPendingAmount;
  return next;
}

/** Applies one stored event. Events carry their full resulting state, so evolve only keeps ownerName. */
export function evolve(state: AccountState | null, e: DomainEvent): AccountState {
  return stateFromLatestEvent(e.accountId, e.version, e.type, e.data, state?.ownerName);
}

/**
 * Restores an account from its latest event alone (docs/architecture.md §3: no snapshot table).
 *
 * `data` comes from storage, so it is checked; a malformed stored event is
 * corruption, not a domain outcome, and throws.
 */
export function stateFromLatestEvent(
  accountId: string,
  version: number,
  type: EventType,
  data: unknown,
  ownerName?: string,
): AccountState {
  if (!isEventType(type)) throw new TypeError(`account ${accountId} v${version}: unknown event type ${String(type)}`);
  if (typeof data !== 'object' || data === null) {
    throw new TypeError(`account ${accountId} v${version}: event data is not an object`);
  }
  const d = data as Record<string, unknown>;
  const balance = parseMinor(d.balanceAfter);
  if (balance === undefined) throw new TypeError(`account ${accountId} v${version}: bad balanceAfter`);
  if (typeof d.currency !== 'string') throw new TypeError(`account ${accountId} v${version}: bad currency`);
  let owner = ownerName ?? '';
  if (type === 'AccountCreated' && typeof d.ownerName === 'string') owner = d.ownerName;
  return {
    accountId,
    version,
    balance,
    currency: d.currency,
    status: type === 'AccountClosed' ? 'closed' : 'open',
    ownerName: owner,
  };
}
