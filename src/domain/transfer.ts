/**
 * The transfer decider: moving money from one account to another as three
 * steps, each decided on one account alone (docs/transfers.md):
 *
 * 1. `Transfer` on the source (a command on bank.commands): the money leaves
 *    the source (`TransferDebited`) and is in flight, or nothing happens.
 * 2. `CreditTransfer` on the destination (an internal step): the money
 *    arrives (`TransferCredited`), or the destination refuses it.
 * 3. `RefundTransfer` on the source (an internal step, only after a refusal):
 *    the money returns (`TransferRefunded`). A refund is never refused.
 *
 * The steps' command ids are derived from the transferId (transferStepId), so
 * a step sent twice is the same command twice: a duplicate, never a second
 * credit or refund. Like decide(), the functions are pure, and a rejection is
 * a returned decision; decideRefund alone throws, on a refund that does not
 * fit (a refund is never refused): decided on a state that did not count the
 * money in flight, which the role then decides again on one that does, or
 * on a store that broke the rules.
 *
 * `transfersPending` (outgoing transfers in flight) and the money they hold
 * are counted up by a debit and down by a refund here, but a credit settles
 * at the destination, so a state's count is only as good as where it was
 * read: the role decides on counts and amounts read from the `transfers`
 * table (a careful redo), or on none but the slice's own, and then checks
 * closes and deposits or credits against that table at commit
 * (docs/transfers.md).
 */
import { createHash } from 'node:crypto';
import { fractionDigits } from './currency';
import { moneyReject, refundRoomRejection, reject } from './decider';
import { addMinor, formatMoney, parseMoney } from './money';
import type { AccountState, EventType, RejectReason } from './types';

export interface Transfer {
  type: 'Transfer';
  /** also the transferId */
  commandId: string;
  /** the source */
  accountId: string;
  toAccountId: string;
  amount: string;
  /** applies to the source */
  expectedVersion?: number;
}

/** Step 2, to the destination: what the source's debit decided, carried to where the credit is decided. */
export interface CreditTransfer {
  type: 'CreditTransfer';
  /** transferStepId(fromAccountId, transferId, 'credit') */
  commandId: string;
  transferId: string;
  /** the destination */
  accountId: string;
  fromAccountId: string;
  /** canonical, in the source's currency */
  amount: string;
  currency: string;
}

/** Step 3, back to the source: the destination refused the money. */
export interface RefundTransfer {
  type: 'RefundTransfer';
  /** transferStepId(accountId, transferId, 'refund') */
  commandId: string;
  transferId: string;
  /** the source */
  accountId: string;
  toAccountId: string;
  amount: string;
  currency: string;
  /** why the destination refused: DESTINATION_NOT_FOUND, DESTINATION_CLOSED, CURRENCY_MISMATCH, LIMIT_EXCEEDED */
  reason: RejectReason;
}

export type TransferEventType = Extract<EventType, `Transfer${string}`>;
export const TRANSFER_EVENT_TYPES: readonly TransferEventType[] = ['TransferDebited', 'TransferCredited', 'TransferRefunded'];

/** Data of TransferDebited and TransferRefunded (on the source) and TransferCredited (on the destination). */
export interface TransferData {
  transferId: string;
  /** the other account: the destination on the source's events, the source on the destination's */
  toAccountId?: string;
  fromAccountId?: string;
  amount: string;
  currency: string;
  balanceAfter: string;
  /** TransferRefunded only: why the destination refused */
  reason?: RejectReason;
}

export interface TransferEvent {
  type: TransferEventType;
  accountId: string;
  version: number;
  commandId: string;
  data: TransferData;
}

export type TransferDecision =
  | { accepted: true; event: TransferEvent; state: AccountState }
  | { accepted: false; rejected: RejectReason; detail?: string };

/** Reasons a destination refuses a credit; each ends the transfer with a refund. */
export const DESTINATION_REASONS: readonly RejectReason[] = ['DESTINATION_NOT_FOUND', 'DESTINATION_CLOSED', 'CURRENCY_MISMATCH', 'LIMIT_EXCEEDED'];

/**
 * The command id of a transfer's credit or refund step: a name-based UUID
 * (SHA-1 of a fixed namespace, the step, the source and the transferId), so
 * every re-send of a step is the same command. The source is part of it
 * because a transferId is the source's commandId, and command ids are unique
 * per account only: two sources may use the same one.
 *
 * It is a UUID of version 8, which banking-es reserves: anyone can derive a
 * step's id, so a command on bank.commands with a version-8 id is refused
 * without being recorded (isReservedId), and no producer can take a step's
 * id on an account before the step gets there.
 */
export function transferStepId(sourceId: string, transferId: string, step: 'credit' | 'refund'): string {
  const h = createHash('sha1').update(STEP_NAMESPACE).update(step).update(sourceId.toLowerCase()).update('/').update(transferId.toLowerCase()).digest();
  h[6] = (h[6] & 0x0f) | 0x80;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** A lower-case, validated UUID of version 8: reserved for transfer steps (transferStepId). */
export const isReservedId = (uuid: string): boolean => uuid.charCodeAt(14) === 0x38; // '8'

const STEP_NAMESPACE = Buffer.from('banking-es transfer step\0', 'utf8');

/** Step 1, on the source. The amount rules are Withdraw's; the money is in flight once accepted. */
export function decideTransfer(state: AccountState | null, cmd: Transfer): TransferDecision {
  const version = state === null ? 0 : state.version;
  if (cmd.expectedVersion !== undefined && cmd.expectedVersion !== version) {
    return reject('VERSION_CONFLICT', `expected version ${cmd.expectedVersion}, account is at ${version}`);
  }
  if (cmd.toAccountId === cmd.accountId) return reject('SAME_ACCOUNT', 'a transfer needs two different accounts');
  if (state === null) return reject('ACCOUNT_NOT_FOUND', `account ${cmd.accountId} does not exist`);
  if (state.status === 'closed') return reject('ACCOUNT_CLOSED', `account ${cmd.accountId} is closed`);
  const digits = fractionDigits(state.currency);
  if (digits === undefined) return reject('INVALID_COMMAND', `account currency ${state.currency} is unknown`);
  const amount = parseMoney(cmd.amount, digits, { allowZero: false });
  if (typeof amount !== 'number') return moneyReject('amount', amount, state.currency, digits);
  if (amount > state.balance) {
    return reject('INSUFFICIENT_FUNDS', `balance ${formatMoney(state.balance, digits)} is less than ${formatMoney(amount, digits)}`);
  }
  const balance = state.balance - amount;
  return moved(state, balance, 1, amount, 'TransferDebited', cmd.commandId,
    { transferId: cmd.commandId, toAccountId: cmd.toAccountId, amount: formatMoney(amount, digits), currency: state.currency, balanceAfter: String(balance) });
}

/** Step 2, on the destination. A refusal here is not final: the caller refunds the source with its reason. */
export function decideCredit(state: AccountState | null, step: CreditTransfer): TransferDecision {
  if (state === null) return reject('DESTINATION_NOT_FOUND', `account ${step.accountId} does not exist`);
  if (state.status === 'closed') return reject('DESTINATION_CLOSED', `account ${step.accountId} is closed`);
  if (state.currency !== step.currency) {
    return reject('CURRENCY_MISMATCH', `account ${step.accountId} holds ${state.currency}, the transfer is in ${step.currency}`);
  }
  const amount = stepAmount(step.amount, state.currency);
  if (amount === undefined) return reject('INVALID_COMMAND', `amount ${step.amount} is not a positive ${state.currency} amount`);
  const balance = addMinor(state.balance, amount);
  if (balance === 'TOO_LARGE') return reject('LIMIT_EXCEEDED', 'balance would exceed the largest supported amount');
  const noRoom = refundRoomRejection(state, balance);
  if (noRoom) return noRoom;
  return moved(state, balance, 0, 0, 'TransferCredited', step.commandId,
    { transferId: step.transferId, fromAccountId: step.fromAccountId, amount: step.amount, currency: state.currency, balanceAfter: String(balance) });
}

/**
 * Step 3, on the source: never refused. The source cannot have been closed
 * meanwhile (TRANSFERS_PENDING), and no deposit or credit since the debit
 * took the balance past 2^53 − 1 minor units less the money in flight
 * (refundRoomRejection). A refund that does not fit follows a deposit or
 * credit accepted without that rule: earlier in a slice decided on uncounted
 * states (the role decides it again, counted), by an older release, or in a
 * damaged store. It throws.
 */
export function decideRefund(state: AccountState | null, step: RefundTransfer): TransferDecision & { accepted: true } {
  if (state === null) throw new TypeError(`refund of transfer ${step.transferId}: source ${step.accountId} has no events`);
  const amount = stepAmount(step.amount, state.currency);
  if (amount === undefined || step.currency !== state.currency) {
    throw new TypeError(`refund of transfer ${step.transferId}: ${step.amount} ${step.currency} is not what account ${step.accountId} (${state.currency}) sent`);
  }
  const balance = addMinor(state.balance, amount);
  if (balance === 'TOO_LARGE') {
    throw new TypeError(`refund of transfer ${step.transferId}: ${step.amount} ${step.currency} back onto account ${step.accountId} (balance ${formatMoney(state.balance, fractionDigits(state.currency) ?? 2)}) would exceed 2^53 - 1 minor units`);
  }
  return moved(state, balance, -1, amount, 'TransferRefunded', step.commandId,
    { transferId: step.transferId, toAccountId: step.toAccountId, amount: step.amount, currency: state.currency, balanceAfter: String(balance), reason: step.reason });
}

/** A step's amount (or, with allowZero, a balance it names) in minor units of `currency`; undefined when it is none. */
export function stepAmount(text: string, currency: string, allowZero = false): number | undefined {
  const digits = fractionDigits(currency);
  if (digits === undefined) return undefined;
  const minor = parseMoney(text, digits, { allowZero });
  return typeof minor === 'number' ? minor : undefined;
}

/**
 * A transfer event on `s` and the state after it; `pending` is the change in
 * outgoing transfers in flight, `amount` the money one of them holds.
 */
function moved(s: AccountState, balance: number, pending: -1 | 0 | 1, amount: number, type: TransferEventType, commandId: string, data: TransferData): { accepted: true; event: TransferEvent; state: AccountState } {
  const state: AccountState = { accountId: s.accountId, version: s.version + 1, balance, currency: s.currency, status: s.status, ownerName: s.ownerName };
  const inFlight = Math.max(0, (s.transfersPending ?? 0) + pending);
  if (inFlight > 0 || s.transfersPending !== undefined) {
    state.transfersPending = inFlight;
    state.transfersPendingAmount = inFlight === 0 ? 0 : Math.max(0, (s.transfersPendingAmount ?? 0) + pending * amount);
  }
  return { accepted: true, state, event: { type, accountId: s.accountId, version: state.version, commandId, data } };
}
