/**
 * Commands, events, state and decisions of one bank account.
 * The wire shapes are docs/architecture.md §2.1 (commands) and §2.4 (event data).
 */

export type CommandType = 'OpenAccount' | 'Deposit' | 'Withdraw' | 'CloseAccount';
export type EventType = 'AccountCreated' | 'MoneyDeposited' | 'MoneyWithdrawn' | 'AccountClosed';
export type RejectReason =
  | 'INVALID_COMMAND'
  | 'ACCOUNT_NOT_FOUND'
  | 'ACCOUNT_EXISTS'
  | 'ACCOUNT_CLOSED'
  | 'INSUFFICIENT_FUNDS'
  | 'BALANCE_NOT_ZERO'
  | 'VERSION_CONFLICT'
  | 'LIMIT_EXCEEDED';

export const COMMAND_TYPES: readonly CommandType[] = ['OpenAccount', 'Deposit', 'Withdraw', 'CloseAccount'];
export const EVENT_TYPES: readonly EventType[] = ['AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn', 'AccountClosed'];
export const REJECT_REASONS: readonly RejectReason[] = [
  'INVALID_COMMAND',
  'ACCOUNT_NOT_FOUND',
  'ACCOUNT_EXISTS',
  'ACCOUNT_CLOSED',
  'INSUFFICIENT_FUNDS',
  'BALANCE_NOT_ZERO',
  'VERSION_CONFLICT',
  'LIMIT_EXCEEDED',
];

export function isEventType(s: unknown): s is EventType {
  return s === 'AccountCreated' || s === 'MoneyDeposited' || s === 'MoneyWithdrawn' || s === 'AccountClosed';
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

export type Decision =
  | { accepted: true; event: DomainEvent; state: AccountState }
  | { accepted: false; rejected: RejectReason; detail?: string };
