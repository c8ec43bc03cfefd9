/**
 * The pure heart of the projection pipeline, run in a piscina worker (or
 * inline with pool size 0), and by the rebuild: parse one shard's slice of
 * events in offset order, drop what the read models already hold, fold each
 * account's events into ONE account row, and encode binary COPY rows.
 *
 * Per account the fold keeps a cursor, starting at the projected version the
 * main thread loaded: an event at or below the cursor is stale (a re-send) and
 * dropped; an event above cursor + 1 is a gap, applied and reported (the
 * relay is ordered per account, so a gap means history started mid-stream).
 *
 * Both row sets come out in key order, by account (then version): Postgres
 * inserts sorted keys into the primary-key B-trees faster than keys in
 * arrival order (COPY of 15,000 transaction rows: 62 → 47 ms), and the sort
 * costs the worker ~0.2 µs per event. See docs/benchmarks.md.
 *
 * Rows (no COPY header/trailer; copyIn frames them):
 *   transactions: one per money movement. AccountCreated is the first
 *     movement (its initial balance), MoneyDeposited positive, MoneyWithdrawn
 *     negative; AccountClosed moves no money and has no row. Transfers:
 *     TransferDebited negative, TransferCredited and TransferRefunded
 *     positive, each with its transferId and the other account.
 *   accounts: the folded state, for the staging table of the upsert. An
 *     account whose AccountCreated is not in this slice gets owner_name ''
 *     and opened_at of its first event here; the upsert keeps the stored
 *     owner_name and opened_at whenever the row already exists.
 */
import { parseEnvelope, type EventEnvelope } from '../../codec/envelope';
import { scanEnvelope, type ScannedEnvelope } from '../../codec/envelope-scan';
import { CopyWriter } from '../../codec/pgcopy';
import { ACCOUNT_STAGING_COLUMNS, TRANSACTION_COLUMNS, fieldCount } from '../../codec/rows';
import { isUuid } from '../../codec/command';
import { fractionDigits } from '../../domain/currency';
import { parseMinor, parseMoney } from '../../domain/money';
import { DESTINATION_REASONS } from '../../domain/transfer';
import type { RejectReason } from '../../domain/types';
import { PackReader } from '../pack';

const TRANSACTION_FIELDS = fieldCount(TRANSACTION_COLUMNS);
const ACCOUNT_FIELDS = fieldCount(ACCOUNT_STAGING_COLUMNS);
/** Gaps reported per task, at most: enough to log, bounded for a history that starts mid-stream everywhere. */
const MAX_GAPS_REPORTED = 100;
/**
 * recordedAt must fall in [1970, 2200): a binary COPY timestamp is microseconds
 * from 2000 in an int8 the encoder keeps within 2^53 (about ±285 years), and
 * an event from outside those years is not one banking-es wrote. Past them it
 * is dead-lettered; the encoder would otherwise throw and stall the partition.
 */
const RECORDED_AT_MIN_MS = 0;
const RECORDED_AT_MAX_MS = Date.UTC(2200, 0, 1);

export type EventDlqCode = 'NOT_UTF8' | 'NOT_JSON' | 'INVALID_ENVELOPE' | 'INVALID_DATA' | 'KEY_MISMATCH';

export interface ProjectTask {
  /**
   * Packed messages (src/pipeline/pack.ts). The key is the account the main
   * thread sharded the message by ('' when it could not tell); the event's
   * own accountId must equal it, so one account never lands in two shards.
   */
  msgs: Uint8Array;
  /**
   * The projected version of this slice's accounts: projectedVersions[i] is
   * that of projectedIds[i]; an account not listed is not projected. Two
   * arrays rather than a JSON object: with ~1,000 accounts per shard, JSON
   * objects both ways cost ~8 ms per flush, arrays ~2.
   */
  projectedIds: string[];
  projectedVersions: number[];
}

export interface ProjectDlq { index: number; code: EventDlqCode; message: string }
export interface ProjectGap { accountId: string; projected: number; version: number }

export interface ProjectResult {
  transactions: Uint8Array;
  transactionCount: number;
  accounts: Uint8Array;
  accountCount: number;
  /** The accounts this slice advanced (in key order), and the version each now has. */
  advancedIds: string[];
  advancedVersions: number[];
  applied: number;
  /** Events at or below the projected version: re-sends, dropped. */
  stale: number;
  /** Deletes and tombstones from Debezium: skipped silently. */
  tombstones: number;
  dlq: ProjectDlq[];
  gaps: ProjectGap[];
  gapCount: number;
  /** recordedAt (ms) of the newest applied event, 0 when none. */
  newestRecordedAtMs: number;
}

interface Folded {
  accountId: string;
  ownerName: string | null;
  openedAtMs: number;
  currency: string;
  balance: number;
  closed: boolean;
  version: number;
  updatedAtMs: number;
  closedAtMs: number;
  /** order of first appearance in this slice */
  index: number;
}

function dlqCode(error: string): EventDlqCode {
  if (error === 'not valid UTF-8') return 'NOT_UTF8';
  if (error.startsWith('not JSON')) return 'NOT_JSON';
  return 'INVALID_ENVELOPE';
}

/** The signed movement of an event in minor units, null for AccountClosed, or an error text. */
function movement(e: EventEnvelope, balanceAfter: number, digits: number): number | null | string {
  const d = e.data;
  switch (e.type) {
    case 'TransferDebited':
    case 'TransferCredited':
    case 'TransferRefunded': {
      if (typeof d.transferId !== 'string' || !isUuid(d.transferId)) return 'data.transferId must be a UUID string';
      const other = e.type === 'TransferCredited' ? d.fromAccountId : d.toAccountId;
      const otherName = e.type === 'TransferCredited' ? 'fromAccountId' : 'toAccountId';
      if (typeof other !== 'string' || !isUuid(other)) return `data.${otherName} must be a UUID string`;
      if (other.toLowerCase() === e.accountId) return `data.${otherName} must be another account`;
      if (e.type === 'TransferRefunded' && !DESTINATION_REASONS.includes(d.reason as RejectReason)) return `data.reason must be one of ${DESTINATION_REASONS.join(', ')}`;
      const v = parseMoney(d.amount, digits, { allowZero: false });
      if (typeof v !== 'number') return `data.amount: ${v}`;
      return e.type === 'TransferDebited' ? -v : v;
    }
    case 'AccountCreated': {
      const v = parseMoney(d.initialBalance, digits, { allowZero: true });
      if (typeof v !== 'number') return `data.initialBalance: ${v}`;
      if (v !== balanceAfter) return 'data.initialBalance differs from data.balanceAfter';
      if (typeof d.ownerName !== 'string') return 'data.ownerName must be a string';
      return v;
    }
    case 'MoneyDeposited':
    case 'MoneyWithdrawn': {
      const v = parseMoney(d.amount, digits, { allowZero: false });
      if (typeof v !== 'number') return `data.amount: ${v}`;
      return e.type === 'MoneyDeposited' ? v : -v;
    }
    case 'AccountClosed':
      return null;
  }
}

export function projectShard(task: ProjectTask): ProjectResult {
  const projected = new Map<string, number>();
  for (let i = 0; i < task.projectedIds.length; i++) projected.set(task.projectedIds[i], task.projectedVersions[i]);
  const tx = new CopyWriter(task.msgs.byteLength + 1024);
  const folded = new Map<string, Folded>();
  const dlq: ProjectDlq[] = [];
  const gaps: ProjectGap[] = [];
  // transaction row i is bytes [rowStart[i], rowStart[i + 1]) of tx, of the account with index rowAccount[i]
  const rowStart: number[] = [];
  const rowAccount: number[] = [];
  let transactionCount = 0, applied = 0, stale = 0, tombstones = 0, gapCount = 0, newest = 0, index = -1;

  // read in place: no object or Buffer view per message unless the general path needs one
  const m = new PackReader(task.msgs);
  while (m.next()) {
    index++;
    if (m.valueLen <= 0) { tombstones++; continue; } // Kafka tombstone after a Debezium delete
    const e = scanEnvelope(m.buf, m.valueAt, m.valueAt + m.valueLen) ?? parseEnvelope(m.value()!);
    if ('error' in e) {
      if (e.error === 'DELETE') tombstones++;
      else dlq.push({ index, code: dlqCode(e.error), message: e.error });
      continue;
    }
    if (!m.keyIs(e.accountId)) {
      const key = m.key()?.toString('latin1') ?? '';
      dlq.push({ index, code: 'KEY_MISMATCH', message: `message key ${key || '(none)'} is not the event's accountId ${e.accountId}` });
      continue;
    }
    const balance = parseMinor(e.data.balanceAfter);
    const currency = e.data.currency;
    const digits = typeof currency === 'string' ? fractionDigits(currency) : undefined;
    if (balance === undefined || digits === undefined) {
      dlq.push({ index, code: 'INVALID_DATA', message: balance === undefined ? 'data.balanceAfter must be minor units as a string' : 'data.currency must be an ISO 4217 code' });
      continue;
    }
    const amount = movement(e, balance, digits);
    if (typeof amount === 'string') {
      dlq.push({ index, code: 'INVALID_DATA', message: amount });
      continue;
    }
    const at = (e as Partial<ScannedEnvelope>).recordedAtMs ?? Date.parse(e.recordedAt);
    if (!(at >= RECORDED_AT_MIN_MS && at < RECORDED_AT_MAX_MS)) {
      dlq.push({ index, code: 'INVALID_ENVELOPE', message: `envelope.recordedAt ${e.recordedAt} is outside 1970 to 2200` });
      continue;
    }

    const f = folded.get(e.accountId);
    const cursor = f ? f.version : projected.get(e.accountId) ?? 0;
    if (e.version <= cursor) { stale++; continue; }
    if (e.version !== cursor + 1) {
      gapCount++;
      if (gaps.length < MAX_GAPS_REPORTED) gaps.push({ accountId: e.accountId, projected: cursor, version: e.version });
    }
    const created = e.type === 'AccountCreated';
    let a: Folded;
    if (f) {
      a = f;
      if (created) { a.ownerName = e.data.ownerName as string; a.openedAtMs = at; }
      a.currency = currency as string;
      a.balance = balance;
      a.closed = e.type === 'AccountClosed';
      a.version = e.version;
      a.updatedAtMs = at;
      a.closedAtMs = a.closed ? at : 0;
    } else {
      a = {
        accountId: e.accountId, ownerName: created ? (e.data.ownerName as string) : null, openedAtMs: at,
        currency: currency as string, balance, closed: e.type === 'AccountClosed', version: e.version, updatedAtMs: at,
        closedAtMs: e.type === 'AccountClosed' ? at : 0, index: folded.size,
      };
      folded.set(e.accountId, a);
    }
    if (amount !== null) {
      rowStart.push(tx.length);
      rowAccount.push(a.index);
      tx.row(TRANSACTION_FIELDS).uuid(e.accountId).int8(e.version).uuid(e.eventId).text(e.type)
        .int8(amount).int8(balance).text(currency as string).uuid(e.commandId).timestamptz(at);
      if (e.type === 'TransferDebited' || e.type === 'TransferRefunded') tx.uuid(e.data.transferId as string).uuid(e.data.toAccountId as string);
      else if (e.type === 'TransferCredited') tx.uuid(e.data.transferId as string).uuid(e.data.fromAccountId as string);
      else tx.null().null();
      transactionCount++;
    }
    applied++;
    if (at > newest) newest = at;
  }

  // key order: lowercase canonical UUIDs compare as strings exactly as Postgres compares uuid bytes
  const accounts = [...folded.values()].sort((x, y) => (x.accountId < y.accountId ? -1 : 1));
  const acc = new CopyWriter(folded.size * 128 + 64);
  const advancedIds: string[] = [];
  const advancedVersions: number[] = [];
  for (const f of accounts) {
    acc.row(ACCOUNT_FIELDS).uuid(f.accountId).text(f.ownerName ?? '').text(f.currency).int8(f.balance)
      .text(f.closed ? 'closed' : 'open').int8(f.version).timestamptz(f.openedAtMs).timestamptz(f.updatedAtMs);
    if (f.closed) acc.timestamptz(f.closedAtMs); else acc.null();
    advancedIds.push(f.accountId);
    advancedVersions.push(f.version);
  }

  return {
    transactions: inKeyOrder(tx.finish(), rowStart, rowAccount, accounts), transactionCount,
    accounts: acc.finish(), accountCount: folded.size,
    advancedIds, advancedVersions,
    applied, stale, tombstones, dlq, gaps, gapCount, newestRecordedAtMs: newest,
  };
}

/**
 * The transaction rows regrouped account by account (a stable counting sort
 * by the account's rank, so each account keeps version order), in a
 * transferable buffer of their own.
 */
function inKeyOrder(rows: Buffer, rowStart: number[], rowAccount: number[], accounts: Folded[]): Buffer {
  const n = rowStart.length;
  if (accounts.length <= 1 || n <= 1) return rows;
  const rank = new Int32Array(accounts.length);
  accounts.forEach((a, r) => { rank[a.index] = r; });
  const at = new Int32Array(accounts.length + 1);
  for (let i = 0; i < n; i++) at[rank[rowAccount[i]] + 1]++;
  for (let r = 1; r <= accounts.length; r++) at[r] += at[r - 1];
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[at[rank[rowAccount[i]]]++] = i;
  const out = Buffer.allocUnsafeSlow(rows.length);
  let pos = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    pos += rows.copy(out, pos, rowStart[i], i + 1 < n ? rowStart[i + 1] : rows.length);
  }
  return out;
}

/**
 * The account a consumed event belongs to, for sharding, without a full
 * parse when the key says it: the key itself (outbox router, built-in
 * relays), or a Debezium key struct `{account_id}` / `{schema, payload:{account_id}}`
 * (message.key.columns), else the parsed value. '' when none can be found;
 * the worker dead-letters such a message.
 */
export function accountOfEvent(key: Buffer | string | null | undefined, value: Buffer | null | undefined): string {
  if (key !== null && key !== undefined && key.length > 0) {
    const k = key.toString();
    if (k.length === 36 && isUuid(k)) return k.toLowerCase();
    if (k.charCodeAt(0) === 123 /* { */) {
      try {
        const o = JSON.parse(k) as { account_id?: unknown; payload?: { account_id?: unknown } };
        const id = o.payload?.account_id ?? o.account_id;
        if (typeof id === 'string' && isUuid(id)) return id.toLowerCase();
      } catch { /* not a key struct */ }
    }
  }
  if (value === null || value === undefined || value.length === 0) return '';
  const e = parseEnvelope(value);
  return 'error' in e ? '' : e.accountId;
}
