/**
 * Decodes one `bank.commands` message (docs/architecture.md §2.1, §2.3) into a Command.
 *
 * Three outcomes: `ok`; `invalid` when the message identifies a command and
 * an account but has bad fields (the sender gets a rejected/INVALID_COMMAND
 * outcome and learns why); `dlq` when there is nobody to answer.
 *
 * The Command is built field by field from own properties of the parsed
 * object, so `__proto__`, `constructor` or a polluted Object.prototype never
 * reach it. Money syntax is not checked here: its digits depend on the
 * account's currency, which only the decider knows.
 */
import { isUtf8 } from 'node:buffer';
import type { Command, CommandType } from '../domain/types';
import type { Transfer } from '../domain/transfer';
import { hexValue } from './hex';

export type DlqCode =
  | 'EMPTY_VALUE'
  | 'TOO_LARGE'
  | 'NOT_UTF8'
  | 'NOT_JSON'
  | 'NOT_OBJECT'
  | 'NO_COMMAND_ID'
  | 'NO_ACCOUNT_ID'
  | 'KEY_MISMATCH';

export type Decoded<C = Command> =
  | { kind: 'ok'; command: C }
  | { kind: 'invalid'; commandId: string; accountId: string; type: string; message: string }
  | { kind: 'dlq'; code: DlqCode; message: string };

const MAX_OWNER_NAME = 200;
const MAX_REASON = 500;
// An echoed type must not turn a bounded message into an unbounded outcome.
const MAX_ECHOED_TYPE = 64;


/** True for a hyphenated 8-4-4-4-12 hex UUID, any case. No version check: producers use v4 and v7. */
export function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false;
    } else if (hexValue(c) < 0) {
      return false;
    }
  }
  return true;
}

const hasOwn = Object.prototype.hasOwnProperty;

function own(o: object, k: string): unknown {
  return hasOwn.call(o, k) ? (o as Record<string, unknown>)[k] : undefined;
}

function uuidOf(v: unknown): string | undefined {
  return typeof v === 'string' && isUuid(v) ? v.toLowerCase() : undefined;
}

// Counts code points only when UTF-16 length alone cannot decide.
function charLength(s: string, max: number): number {
  if (s.length <= max) return s.length;
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function isCurrencyCode(s: string): boolean {
  if (s.length !== 3) return false;
  for (let i = 0; i < 3; i++) {
    const c = s.charCodeAt(i);
    if (c < 65 || c > 90) return false;
  }
  return true;
}

function dlq(code: DlqCode, message: string): Decoded<never> {
  return { kind: 'dlq', code, message };
}

/**
 * `transfers`: whether `Transfer` is a command here. Off until the transfer
 * process runs (docs/transfers.md, #17): a debit nobody credits would leave
 * money in flight for good.
 */
export function decodeCommand(key: Buffer | null | undefined, value: Buffer | null | undefined, maxBytes: number): Decoded;
export function decodeCommand(key: Buffer | null | undefined, value: Buffer | null | undefined, maxBytes: number, transfers: boolean): Decoded<Command | Transfer>;
export function decodeCommand(
  key: Buffer | null | undefined,
  value: Buffer | null | undefined,
  maxBytes: number,
  transfers = false,
): Decoded<Command | Transfer> {
  if (value === null || value === undefined || value.length === 0) return dlq('EMPTY_VALUE', 'message has no value');
  if (value.length > maxBytes) return dlq('TOO_LARGE', `value is ${value.length} bytes, limit is ${maxBytes}`);
  // toString() would silently replace bad sequences with U+FFFD.
  if (!isUtf8(value)) return dlq('NOT_UTF8', 'value is not valid UTF-8');

  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (e) {
    return dlq('NOT_JSON', `value is not JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return dlq('NOT_OBJECT', 'value must be a JSON object');
  }
  const o = parsed;

  const commandId = uuidOf(own(o, 'commandId'));
  if (commandId === undefined) return dlq('NO_COMMAND_ID', 'commandId must be a UUID string');

  const keyText = key === null || key === undefined || key.length === 0 ? undefined : key.toString('utf8');
  const rawAccount = own(o, 'accountId');
  let accountId = uuidOf(rawAccount);
  let problem: string | undefined;
  if (accountId === undefined) {
    accountId = keyText === undefined ? undefined : uuidOf(keyText);
    if (accountId === undefined) return dlq('NO_ACCOUNT_ID', 'accountId must be a UUID string');
    problem = 'accountId must be a UUID string';
  } else if (keyText !== undefined && keyText.toLowerCase() !== accountId) {
    return dlq('KEY_MISMATCH', 'message key does not equal accountId');
  }

  const rawType = own(o, 'type');
  const type = typeof rawType === 'string' ? rawType.slice(0, MAX_ECHOED_TYPE) : '';
  if (problem === undefined) problem = rawType === 'Transfer' && transfers ? checkTransfer(o) : check(o, rawType, transfers);
  if (problem !== undefined) return { kind: 'invalid', commandId, accountId, type, message: problem };
  if (rawType === 'Transfer') return { kind: 'ok', command: buildTransfer(o, commandId, accountId) };
  return { kind: 'ok', command: build(o, rawType as CommandType, commandId, accountId) };
}

// Returns the first problem, naming the field, or undefined when the command is
// well formed. JSON null counts as absent for optional fields: producers in
// typed languages often send null for an unset field.
function check(o: object, type: unknown, transfers: boolean): string | undefined {
  const bad = expectedVersionProblem(o);
  if (bad !== undefined) return bad;
  switch (type) {
    case 'OpenAccount': {
      const owner = own(o, 'ownerName');
      if (typeof owner !== 'string' || owner.length === 0 || charLength(owner, MAX_OWNER_NAME) > MAX_OWNER_NAME) {
        return `ownerName must be a string of 1 to ${MAX_OWNER_NAME} characters`;
      }
      const currency = own(o, 'currency');
      if (currency !== undefined && currency !== null && !(typeof currency === 'string' && isCurrencyCode(currency))) {
        return 'currency must be a three-letter upper-case ISO 4217 code';
      }
      const initial = own(o, 'initialBalance');
      if (initial !== undefined && initial !== null && typeof initial !== 'string') {
        return 'initialBalance must be a decimal string';
      }
      return undefined;
    }
    case 'Deposit':
    case 'Withdraw':
      return typeof own(o, 'amount') === 'string' ? undefined : 'amount must be a decimal string';
    case 'CloseAccount': {
      const reason = own(o, 'reason');
      if (reason === undefined || reason === null) return undefined;
      if (typeof reason !== 'string' || charLength(reason, MAX_REASON) > MAX_REASON) {
        return `reason must be a string of at most ${MAX_REASON} characters`;
      }
      return undefined;
    }
    default:
      return transfers ? 'type must be one of OpenAccount, Deposit, Withdraw, CloseAccount, Transfer' : 'type must be one of OpenAccount, Deposit, Withdraw, CloseAccount';
  }
}

function expectedVersionProblem(o: object): string | undefined {
  const ev = own(o, 'expectedVersion');
  if (ev !== undefined && ev !== null && !(typeof ev === 'number' && Number.isSafeInteger(ev) && ev >= 0)) {
    return 'expectedVersion must be a non-negative integer';
  }
  return undefined;
}

function checkTransfer(o: object): string | undefined {
  const bad = expectedVersionProblem(o);
  if (bad !== undefined) return bad;
  if (uuidOf(own(o, 'toAccountId')) === undefined) return 'toAccountId must be a UUID string';
  return typeof own(o, 'amount') === 'string' ? undefined : 'amount must be a decimal string';
}

function buildTransfer(o: object, commandId: string, accountId: string): Transfer {
  const cmd: Transfer = { type: 'Transfer', commandId, accountId, toAccountId: uuidOf(own(o, 'toAccountId'))!, amount: own(o, 'amount') as string };
  const ev = own(o, 'expectedVersion');
  if (typeof ev === 'number') cmd.expectedVersion = ev;
  return cmd;
}

// Only called after check() passed, so the casts restate what was verified.
function build(o: object, type: CommandType, commandId: string, accountId: string): Command {
  let cmd: Command;
  switch (type) {
    case 'OpenAccount': {
      const currency = own(o, 'currency');
      const initial = own(o, 'initialBalance');
      cmd = {
        type,
        commandId,
        accountId,
        ownerName: own(o, 'ownerName') as string,
        currency: typeof currency === 'string' ? currency : 'USD',
        initialBalance: typeof initial === 'string' ? initial : '0',
      };
      break;
    }
    case 'Deposit':
    case 'Withdraw':
      cmd = { type, commandId, accountId, amount: own(o, 'amount') as string };
      break;
    case 'CloseAccount': {
      cmd = { type, commandId, accountId };
      const reason = own(o, 'reason');
      if (typeof reason === 'string') cmd.reason = reason;
      break;
    }
  }
  const ev = own(o, 'expectedVersion');
  if (typeof ev === 'number') cmd.expectedVersion = ev;
  return cmd;
}
