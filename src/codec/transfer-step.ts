/**
 * The internal steps of a transfer on `bank.transfers` (docs/transfers.md):
 * `CreditTransfer` keyed by the destination, `RefundTransfer` keyed by the
 * source. Only banking-es writes them, but a reader trusts no topic: every
 * field is checked, and what fails is dead-lettered like any poison message.
 * Fields are written in a fixed order (same bytes as JSON.stringify of the
 * step), so a re-published step is byte-identical.
 */
import { isUtf8 } from 'node:buffer';
import { DESTINATION_REASONS, transferStepId, type CreditTransfer, type RefundTransfer } from '../domain/transfer';
import type { RejectReason } from '../domain/types';
import { fractionDigits } from '../domain/currency';
import { parseMoney } from '../domain/money';
import { jsonString } from './envelope';
import { isUuid, type DlqCode } from './command';

/** A credit step, plus what the final accepted outcome reports of the source after its debit. */
export interface CreditStep extends CreditTransfer { sourceVersion: number; sourceBalance: string }
export type TransferStep = CreditStep | RefundTransfer;

export function creditStepJson(s: CreditStep): string {
  return '{"commandId":' + jsonString(s.commandId) + ',"type":"CreditTransfer","transferId":' + jsonString(s.transferId) +
    ',"accountId":' + jsonString(s.accountId) + ',"fromAccountId":' + jsonString(s.fromAccountId) + ',"amount":' + jsonString(s.amount) +
    ',"currency":' + jsonString(s.currency) + ',"sourceVersion":' + s.sourceVersion + ',"sourceBalance":' + jsonString(s.sourceBalance) + '}';
}

export function refundStepJson(s: RefundTransfer): string {
  return '{"commandId":' + jsonString(s.commandId) + ',"type":"RefundTransfer","transferId":' + jsonString(s.transferId) +
    ',"accountId":' + jsonString(s.accountId) + ',"toAccountId":' + jsonString(s.toAccountId) + ',"amount":' + jsonString(s.amount) +
    ',"currency":' + jsonString(s.currency) + ',"reason":' + jsonString(s.reason) + '}';
}

export type DecodedStep = { kind: 'ok'; step: TransferStep } | { kind: 'dlq'; code: DlqCode | 'INVALID_STEP'; message: string };

/** sourceBalance: what the outcome reports, formatted as the debit formatted it */
const DECIMAL = /^(0|[1-9][0-9]{0,17})(\.[0-9]{1,4})?$/;
const CURRENCY = /^[A-Z]{3}$/;

/** Reads one step; anything but a well-formed step written by banking-es is a dead letter. */
export function decodeStep(key: Buffer | null | undefined, value: Buffer | null | undefined): DecodedStep {
  if (value === null || value === undefined || value.length === 0) return { kind: 'dlq', code: 'EMPTY_VALUE', message: 'message has no value' };
  if (!isUtf8(value)) return { kind: 'dlq', code: 'NOT_UTF8', message: 'value is not valid UTF-8' };
  let o: unknown;
  try {
    o = JSON.parse(value.toString('utf8'));
  } catch (e) {
    return { kind: 'dlq', code: 'NOT_JSON', message: `value is not JSON: ${(e as Error).message}` };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { kind: 'dlq', code: 'NOT_OBJECT', message: 'value must be a JSON object' };
  const r = o as Record<string, unknown>;
  const get = (k: string): unknown => (Object.prototype.hasOwnProperty.call(r, k) ? r[k] : undefined);
  const uuid = (k: string): string | undefined => { const v = get(k); return typeof v === 'string' && isUuid(v) ? v.toLowerCase() : undefined; };
  const bad = (message: string): DecodedStep => ({ kind: 'dlq', code: 'INVALID_STEP', message });

  const type = get('type');
  if (type !== 'CreditTransfer' && type !== 'RefundTransfer') return bad('type must be CreditTransfer or RefundTransfer');
  const transferId = uuid('transferId');
  if (transferId === undefined) return bad('transferId must be a UUID string');
  const accountId = uuid('accountId');
  if (accountId === undefined) return bad('accountId must be a UUID string');
  // the source: the credit's fromAccountId, the refund's own account
  const source = type === 'CreditTransfer' ? uuid('fromAccountId') : accountId;
  const commandId = uuid('commandId');
  const step = type === 'CreditTransfer' ? 'credit' : 'refund';
  if (source === undefined || commandId !== transferStepId(source, transferId, step)) return bad(`commandId must be the ${step} step id of transfer ${transferId} from its source`);
  const keyText = key === null || key === undefined ? '' : key.toString('latin1').toLowerCase();
  if (keyText !== accountId) return { kind: 'dlq', code: 'KEY_MISMATCH', message: 'message key does not equal accountId' };
  const amount = get('amount'), currency = get('currency');
  if (typeof currency !== 'string' || !CURRENCY.test(currency)) return bad('currency must be an ISO 4217 code');
  const digits = fractionDigits(currency);
  if (digits === undefined) return bad('currency must be an ISO 4217 code');
  // the amount as the source's debit wrote it: a step the destination could refuse only as malformed could never be refunded
  if (typeof amount !== 'string' || typeof parseMoney(amount, digits, { allowZero: false }) !== 'number') return bad(`amount must be a positive ${currency} amount`);

  if (type === 'CreditTransfer') {
    const fromAccountId = uuid('fromAccountId');
    if (fromAccountId === undefined || fromAccountId === accountId) return bad('fromAccountId must be a UUID string other than accountId');
    const sourceVersion = get('sourceVersion'), sourceBalance = get('sourceBalance');
    if (typeof sourceVersion !== 'number' || !Number.isSafeInteger(sourceVersion) || sourceVersion < 2) return bad('sourceVersion must be an integer of at least 2');
    if (typeof sourceBalance !== 'string' || !DECIMAL.test(sourceBalance)) return bad('sourceBalance must be a decimal string');
    // the settlement compares it with the debit's balance, in minor units of the currency
    if (typeof parseMoney(sourceBalance, digits, { allowZero: true }) !== 'number') return bad(`sourceBalance must be a ${currency} amount`);
    return { kind: 'ok', step: { type, commandId, transferId, accountId, fromAccountId, amount, currency, sourceVersion, sourceBalance } };
  }
  const toAccountId = uuid('toAccountId');
  if (toAccountId === undefined || toAccountId === accountId) return bad('toAccountId must be a UUID string other than accountId');
  const reason = get('reason');
  if (typeof reason !== 'string' || !DESTINATION_REASONS.includes(reason as RejectReason)) return bad(`reason must be one of ${DESTINATION_REASONS.join(', ')}`);
  return { kind: 'ok', step: { type, commandId, transferId, accountId, toAccountId, amount, currency, reason: reason as RejectReason } };
}
