/**
 * Commands, events, state and decisions of one bank account.
 * The wire shapes are docs/architecture.md §2.1 (commands) and §2.4 (event data).
 */

export type CommandType = 'OpenAccount' | 'Deposit' | 'Withdraw' | 'CloseAccount';
export type EventType =
  | 'AccountCreated' | 'MoneyDeposited' | 'MoneyWithdrawn' | 'AccountClosed'
  // since envelope schema version 2 (src/codec/envelope.ts), src/domain/transfer.ts
  | 'TransferDebited' | 'TransferCredited' | 'TransferRefunded';
export type RejectReason =
  | 'INVALID_COMMAND'
  | 'ACCOUNT_NOT_FOUND'
  | 'ACCOUNT_EXISTS'
  | 'ACCOUNT_CLOSED'
  | 'INSUFFICIENT_FUNDS'
  | 'BALANCE_NOT_ZERO'
  | 'VERSION_CONFLICT'
  | 'LIMIT_EXCEEDED'
  // transfers (src/domain/transfer.ts): at the source
  | 'SAME_ACCOUNT'
  | 'TRANSFERS_PENDING'
  // transfers: at the destination, reported after the source is refunded
  | 'DESTINATION_NOT_FOUND'
  | 'DESTINATION_CLOSED'
  | 'CURRENCY_MISMATCH';

export const COMMAND_TYPES: readonly CommandType[] = ['OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount'];
export const EVENT_TYPES: readonly EventType[] = [
  'AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn', 'AccountClosed',
  'TransferDebited', 'TransferCredited', 'TransferRefunded',
];
/** The event types of envelope schema version 1 (before transfers). */
export const EVENT_TYPES_V1: readonly EventType[] = EVENT_TYPES.slice(0, 4);
export const REJECT_REASONS: readonly RejectReason[] = [
  'INVALID_COMMAND',
  'ACCOUNT_NOT_FOUND',
  'ACCOUNT_EXISTS',
  'ACCOUNT_CLOSED',
  'INSUFFICIENT_FUNDS',
  'BALANCE_NOT_ZERO',
  'VERSION_CONFLICT',
  'LIMIT_EXCEEDED',
  'SAME_ACCOUNT',
  'TRANSFERS_PENDING',
  'DESTINATION_NOT_FOUND',
  'DESTINATION_CLOSED',
  'CURRENCY_MISMATCH',
];

export function isEventType(s: unknown): s is EventType {
  return typeof s === 'string' && (EVENT_TYPES as readonly string[]).includes(s);
}

export function isCommandType(s: unknown): s is CommandType {
  return s === 'OpenAccount' || s === 'Deposit' || s === 'Withdraw' || s === 'CloseAccount';
}

export interface CommandBase {
  commandId: string;
  accountId: string;
  /** Version the sender believes the account has; 0 means "does not exist yet". */
  expectedVersion?: number;
}
export interface OpenAccount extends CommandBase {
  type: 'OpenAccount';
  ownerName: string;
  currency: string;
  initialBalance: string;
}
export interface Deposit extends CommandBase {
  type: 'Deposit';
  amount: string;
}
export interface Withdraw extends CommandBase {
  type: 'Withdraw';
  amount: string;
}
export interface CloseAccount extends CommandBase {
  type: 'CloseAccount';
  reason?: string;
}
export type Command = OpenAccount | Deposit | Withdraw | CloseAccount;

/** State of one account as the decider needs it; null means the account does not exist. */
export interface AccountState {
  accountId: string;
  version: number;
  /** Minor units, a safe integer. */
  balance: number;
  currency: string;
  status: 'open' | 'closed';
  /** '' when restored from a non-creation event; the decider never reads it. */
  ownerName: string;
  /**
   * Outgoing transfers debited and not yet settled (credited or refunded).
   * Not in the account's own events (a credit settles at the destination), so
   * it is read where the transfers are recorded; absent means none known.
   * Only CloseAccount reads it (TRANSFERS_PENDING).
   */
  transfersPending?: number;
  /**
   * The money those transfers hold in flight, minor units: set whenever
   * `transfersPending` is, and read where it is read. Deposits and credits
   * keep balance + this amount within 2^53 − 1, so every refund fits
   * (LIMIT_EXCEEDED).
   */
  transfersPendingAmount?: number;
}

// Event data: amounts are canonical decimal strings in the account's currency,
// balanceAfter is minor units as a string (docs/architecture.md §2.4). Every variant carries
// currency and balanceAfter so the latest event alone restores the state.
export interface AccountCreatedData {
  ownerName: string;
  currency: string;
  initialBalance: string;
  balanceAfter: string;
}
/** MoneyDeposited and MoneyWithdrawn. */
export interface MoneyMovedData {
  amount: string;
  currency: string;
  balanceAfter: string;
}
export interface AccountClosedData {
  reason?: string;
  currency: string;
  balanceAfter: string;
}

export interface DomainEvent {
  type: EventType;
  accountId: string;
  /** 1 for AccountCreated, then +1 per event. */
  version: number;
  commandId: string;
  data: AccountCreatedData | MoneyMovedData | AccountClosedData;
}

export interface Rejection { accepted: false; rejected: RejectReason; detail?: string }

export type Decision = { accepted: true; event: DomainEvent; state: AccountState } | Rejection;
