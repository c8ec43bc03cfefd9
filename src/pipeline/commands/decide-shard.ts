/**
 * The pure heart of the command pipeline, run in a piscina worker (or inline
 * with pool size 0): parse, validate, decide and encode one shard's slice of
 * a batch, in offset order. Everything the task needs travels with it (the
 * accounts' current states and, on a careful retry, the outcomes Postgres
 * already holds), so any thread can run any shard.
 */
import { decodeCommand } from '../../codec/command';
import { CopyWriter } from '../../codec/pgcopy';
import { EVENT_COLUMNS, REJECTION_COLUMNS, TRANSFER_COLUMNS, fieldCount } from '../../codec/rows';
import { encodeEnvelope, jsonString, newEventId } from '../../codec/envelope';
import { creditStepJson } from '../../codec/transfer-step';
import { decide } from '../../domain/decider';
import { decideTransfer, isReservedId, transferStepId, type Transfer, type TransferEvent } from '../../domain/transfer';
import { fractionDigits } from '../../domain/currency';
import { formatMoney } from '../../domain/money';
import type { AccountState, DomainEvent, RejectReason } from '../../domain/types';
import { Packer, unpackMessages, type PackedMessage } from '../pack';
import { DecidedWriter, type DecidedOutcomes } from './decided-outcomes';

/**
 * Where a decided command was read: its partition and offset in the command
 * topic. Absent for rows written before they were recorded (migration 0005).
 */
export interface SourcePlace { sourcePartition?: number; sourceOffset?: number }

/** What a Transfer's debit sent on: enough to publish its credit step again. */
export interface TransferDebit { toAccountId: string; amount: string; currency: string }

/** What Postgres says an already-processed command produced. */
export type KnownOutcome =
  | ({ status: 'accepted'; type: string; version: number; balance: string; transfer?: TransferDebit } & SourcePlace)
  | ({ status: 'rejected'; type: string; reason: string; detail?: string; toAccountId?: string } & SourcePlace);

export interface ShardTask {
  /** This shard's slice of the batch, packed (src/pipeline/pack.ts): the one transferred buffer. */
  msgs: Uint8Array;
  /** The current states of this slice's accounts that exist. */
  states: AccountState[];
  /** On a careful redo: what Postgres already holds, by outcomeKey(account, command). */
  known: Map<string, KnownOutcome> | null;
  /** partition -> next offset already committed: messages below it are replays whose outcomes are re-published as they were. */
  replayBelow: Map<number, number> | null;
  maxMessageBytes: number;
  nowMs: number;
  /** Transfer is a command (docs/transfers.md; transfers.enabled): otherwise it is INVALID_COMMAND */
  transfers?: boolean;
  /**
   * The states' `transfersPending` and `transfersPendingAmount` were read from the `transfers`
   * table for this task. Otherwise they are ignored: a cached count is never brought down by a
   * credit (it settles at the destination), so the decisions count only this slice's debits and
   * refunds, and the commit checks the accounts closed (closedAccounts) and raised
   * (raisedAccounts) against the table.
   */
  pendingCounted?: boolean;
  /** PairHash's seed for ShardResult.decided's hashes: the main thread's (ResentCommands.seed), which finds them by it */
  hashSeed: number;
}

export interface DlqEntry { index: number; code: string; message: string }

/** How many commands of one type ended with one status in a slice, for metrics. */
export interface CommandCount { type: string; status: 'accepted' | 'rejected' | 'duplicate'; count: number }

export interface ShardResult {
  events: Uint8Array;        // COPY rows for events (no header/trailer)
  eventCount: number;
  rejections: Uint8Array;    // COPY rows for command_rejections
  rejectionCount: number;
  /** packed key/value records (src/pipeline/pack.ts) for bank.command-results, in offset order */
  outcomes: Uint8Array;
  /** packed key/value records for bank.transfers: the credit steps of the transfers debited (or re-sent) */
  steps: Uint8Array;
  /** COPY rows for `transfers`: one per transfer debited now */
  transferRows: Uint8Array;
  transferCount: number;
  /** The states of the accounts this slice changed. */
  states: AccountState[];
  /** The (account, command) pairs decided now (not known before), for the duplicate check at commit; validated UUIDs. */
  acceptedAccounts: string[];
  acceptedCommands: string[];
  rejectedAccounts: string[];
  rejectedCommands: string[];
  /**
   * What this slice decided now, packed (decided-outcomes.ts). The next batch
   * is decided before this one commits; a re-send in it finds its original here.
   */
  decided: DecidedOutcomes;
  dlq: DlqEntry[];
  counts: CommandCount[];
  /** outcomes published again for replayed offsets (committed before, publication not recorded); not in `counts` */
  republished: number;
  rejectReasons: Record<string, number>;
  /** Accounts closed now: the commit checks that none has a transfer in flight. */
  closedAccounts: string[];
  /**
   * Accounts a command was refused on because of their state (funds, version, existence, status):
   * the commit checks no other writer moved them past the state the refusal saw.
   */
  refusedOnState: string[];
  /**
   * Unless the task's states were counted (pendingCounted): the accounts a deposit or credit
   * raised, each with the highest its balance reached at one of them plus the money the slice's
   * own debits had put in flight by then, less its refunds (minor units, text). Whatever the
   * `transfers` table held in flight before the batch comes on top: the commit checks that sum
   * stays within 2^53 − 1 (checkCommit's overLimit), as the decider does when it is counted.
   */
  raisedAccounts: string[];
  raisedPeaks: string[];
}

/**
 * The buffers of a result that a worker transfers back rather than clones: the large ones, each in an
 * ArrayBuffer of its own (transfer rows and credit steps are few, and cloned). Both workers use it.
 */
export function transferredBuffers(r: ShardResult): ArrayBuffer[] {
  return [r.events, r.rejections, r.outcomes, r.decided.records, r.decided.hashes, r.decided.offsets].map((b) => b.buffer as ArrayBuffer);
}

/** The task's states by account; counts of transfers in flight only where they were read from Postgres for it. */
export function taskStates(task: ShardTask): Map<string, AccountState> {
  const states = new Map<string, AccountState>();
  for (const st of task.states) {
    states.set(st.accountId, task.pendingCounted || (st.transfersPending === undefined && st.transfersPendingAmount === undefined)
      ? st : { ...st, transfersPending: undefined, transfersPendingAmount: undefined });
  }
  return states;
}

/**
 * What the commit checks of a slice decided on uncounted states, where the decider knew only the
 * slice's own transfers in flight (ShardResult.raisedAccounts): the slice's change to each
 * account's money in flight, and the highest balance plus that change at any deposit or credit.
 */
export class RaisedPeaks {
  private readonly change = new Map<string, number>();
  private readonly peak = new Map<string, number>();
  constructor(private readonly counted: boolean) {}

  /** A debit put `amount` in flight (or, negative, a refund brought it back). */
  inFlight(accountId: string, amount: number): void {
    this.change.set(accountId, (this.change.get(accountId) ?? 0) + amount);
  }

  /** A deposit or credit was accepted, leaving `balance`. */
  raised(accountId: string, balance: number): void {
    const total = balance + (this.change.get(accountId) ?? 0);
    if (total > (this.peak.get(accountId) ?? -1)) this.peak.set(accountId, total);
  }

  result(): { raisedAccounts: string[]; raisedPeaks: string[] } {
    // counted: the decider held every deposit and credit to the rule itself
    if (this.counted) return { raisedAccounts: [], raisedPeaks: [] };
    return { raisedAccounts: [...this.peak.keys()], raisedPeaks: [...this.peak.values()].map(String) };
  }
}

/** Refusals that do not depend on the account's state: no other writer can make them wrong. */
export const STATELESS_REASONS: ReadonlySet<string> = new Set(['INVALID_COMMAND', 'SAME_ACCOUNT']);

/**
 * One `events` COPY row for a decided event, with its envelope, read at `m`'s
 * partition and offset. Every worker that appends events writes them here.
 */
export function appendEvent(events: CopyWriter, e: DomainEvent | TransferEvent, m: PackedMessage, recordedAt: string, nowMs: number): void {
  const eventId = newEventId();
  const payload = encodeEnvelope({ eventId, accountId: e.accountId, version: e.version, type: e.type, data: e.data as unknown as Record<string, unknown>, commandId: e.commandId, recordedAt });
  events.row(EVENT_FIELDS).uuid(e.accountId).int8(e.version).uuid(eventId).text(e.type).jsonb(payload).uuid(e.commandId).timestamptz(nowMs).int4(m.partition).int8(m.offset);
}

/** The key of one command's outcome in ShardTask.known and ShardResult.decided. */
export const outcomeKey = (accountId: string, commandId: string): string => `${accountId}/${commandId}`;

const EVENT_FIELDS = fieldCount(EVENT_COLUMNS);
const REJECTION_FIELDS = fieldCount(REJECTION_COLUMNS);
const EVENT_OF = { OpenAccount: 'AccountCreated', Deposit: 'MoneyDeposited', Withdraw: 'MoneyWithdrawn', CloseAccount: 'AccountClosed' } as const;
const TRANSFER_FIELDS = fieldCount(TRANSFER_COLUMNS);
const RESERVED_DETAIL = 'commandId: UUID version 8 is reserved for banking-es\'s own transfer steps';


/**
 * An outcome's JSON, field by field in a fixed order (same bytes as
 * JSON.stringify of the object, without building the object). Free text
 * (type echoed from input, detail) is escaped; ids and codes are checked.
 */
function outcomeJson(commandId: string, accountId: string, type: string, status: string, rest: string, processedAt: string): string {
  return '{"commandId":' + jsonString(commandId) + ',"accountId":' + jsonString(accountId) + ',"type":' + jsonString(type) +
    ',"status":"' + status + '"' + rest + ',"processedAt":"' + processedAt + '"}';
}

export function decideShard(task: ShardTask): ShardResult {
  const states = taskStates(task);
  const known = task.known;
  const events = new CopyWriter(task.msgs.byteLength * 3 + 1024);
  const rejections = new CopyWriter(1024);
  const outcomes = new Packer(task.msgs.byteLength * 2 + 1024);
  const steps = new Packer(1024);
  const transferRows = new CopyWriter(256);
  let transferCount = 0;
  const changed = new Map<string, AccountState>();
  const seen = new Map<string, KnownOutcome>();
  const accA: string[] = [], accC: string[] = [], rejA: string[] = [], rejC: string[] = [];
  const decided = new DecidedWriter(task.hashSeed);
  const dlq: DlqEntry[] = [];
  const closedAccounts: string[] = [];
  const refusedOnState: string[] = [];
  const raised = new RaisedPeaks(task.pendingCounted === true);
  const counts = new Map<string, CommandCount>();
  const reasons: Record<string, number> = {};
  const processedAt = new Date(task.nowMs).toISOString();
  let eventCount = 0, rejectionCount = 0, republished = 0, index = -1;

  const count = (type: string, status: CommandCount['status']) => {
    const k = `${status} ${type}`;
    const c = counts.get(k);
    if (c) c.count++;
    else counts.set(k, { type, status, count: 1 });
  };
  const balanceText = (s: AccountState) => formatMoney(s.balance, fractionDigits(s.currency) ?? 2);
  /**
   * `asOriginal`: a replayed original command is answered again as it was, with its own status; everything else is a duplicate.
   * `replay`: its offset committed before, so it was counted then; it counts as re-published, not as a command.
   */
  const emitKnown = (accountId: string, commandId: string, type: string, k: KnownOutcome, asOriginal: boolean, replay: boolean, toAccountId?: string) => {
    const status: CommandCount['status'] = asOriginal ? k.status : 'duplicate';
    if (k.status === 'accepted' && k.transfer) {
      // a debited transfer's answer is its final outcome, published at the end of the process: the
      // credit step goes again, and its duplicate at the destination publishes the final outcome again
      sendCredit(commandId, accountId, k.transfer, k.version, k.balance);
      // the original is counted by the transfer role, at its final outcome; a re-send is a command of its own
      if (replay) republished++;
      else if (!asOriginal) count(type, status);
      return;
    }
    // a Transfer has one final outcome, whoever asks: a re-send of one refused at the source is answered as it was
    // (only when the original was a Transfer too: a Transfer re-using a Deposit's id is a duplicate of the Deposit)
    const answer = type === 'Transfer' && k.type === 'Transfer' && toAccountId !== undefined ? k.status : status;
    let rest = answer === k.status ? '' : ',"originalStatus":"' + k.status + '"';
    // the destination the first answer named (Postgres keeps it with the rejection), else this copy's
    const to = k.status === 'rejected' && k.toAccountId !== undefined ? k.toAccountId : toAccountId;
    if (type === 'Transfer' && k.type === 'Transfer' && to !== undefined) rest += ',"transferId":"' + commandId + '","toAccountId":"' + to + '"';
    // the same fields as the first answer, in the same order: a repeat is identical to it but for processedAt
    rest += k.status === 'accepted'
      ? ',"version":' + k.version + ',"balance":' + jsonString(k.balance)
      : ',"reason":' + jsonString(k.reason) + (k.detail === undefined ? '' : ',"detail":' + jsonString(k.detail));
    outcomes.record(accountId, outcomeJson(commandId, accountId, type, answer, rest, processedAt));
    if (replay) republished++;
    else count(type, status);
  };
  const sendCredit = (transferId: string, source: string, t: TransferDebit, sourceVersion: number, sourceBalance: string) => {
    steps.record(t.toAccountId, creditStepJson({
      type: 'CreditTransfer', commandId: transferStepId(source, transferId, 'credit'), transferId, accountId: t.toAccountId, fromAccountId: source,
      amount: t.amount, currency: t.currency, sourceVersion, sourceBalance,
    }));
  };
  /** `toAccountId`: a Transfer's destination, kept with the rejection so a re-send is answered with the same fields */
  const reject = (m: PackedMessage, accountId: string, commandId: string, type: string, reason: RejectReason, detail: string | undefined, toAccountId?: string) => {
    rejections.row(REJECTION_FIELDS).uuid(accountId).uuid(commandId).text(type).text(reason);
    if (detail === undefined) rejections.null(); else rejections.text(detail);
    rejections.timestamptz(task.nowMs).int4(m.partition).int8(m.offset);
    if (toAccountId === undefined) rejections.null(); else rejections.uuid(toAccountId);
    const extra = toAccountId === undefined ? '' : ',"transferId":"' + commandId + '","toAccountId":"' + toAccountId + '"';
    rejectionCount++;
    rejA.push(accountId); rejC.push(commandId);
    if (!STATELESS_REASONS.has(reason)) refusedOnState.push(accountId);
    const rest = extra + ',"reason":"' + reason + '"' + (detail === undefined ? '' : ',"detail":' + jsonString(detail));
    outcomes.record(accountId, outcomeJson(commandId, accountId, type, 'rejected', rest, processedAt));
    const id = outcomeKey(accountId, commandId);
    const outcome: KnownOutcome = { status: 'rejected', type, reason };
    if (detail !== undefined) outcome.detail = detail;
    if (toAccountId !== undefined) outcome.toAccountId = toAccountId;
    seen.set(id, outcome);
    decided.add(accountId, commandId, id, outcome);
    count(type, 'rejected');
    reasons[reason] = (reasons[reason] ?? 0) + 1;
  };

  /** Step 1 of a transfer (docs/transfers.md): the debit, the `transfers` row, and the credit step for after the commit. */
  const transfer = (m: PackedMessage, cmd: Transfer, state: AccountState | null): void => {
    const { accountId, commandId } = cmd;
    const decision = decideTransfer(state, cmd);
    if (!decision.accepted) {
      reject(m, accountId, commandId, 'Transfer', decision.rejected, decision.detail, cmd.toAccountId);
      return;
    }
    const ev = decision.event;
    appendEvent(events, ev, m, processedAt, task.nowMs);
    eventCount++;
    const amount = state!.balance - decision.state.balance;
    transferRows.row(TRANSFER_FIELDS).uuid(accountId).uuid(commandId).uuid(cmd.toAccountId).int8(amount)
      .text(decision.state.currency).int8(ev.version).timestamptz(task.nowMs);
    transferCount++;
    raised.inFlight(accountId, amount);
    changed.set(accountId, decision.state);
    accA.push(accountId); accC.push(commandId);
    const debit: TransferDebit = { toAccountId: cmd.toAccountId, amount: ev.data.amount, currency: ev.data.currency };
    const balance = balanceText(decision.state);
    sendCredit(commandId, accountId, debit, ev.version, balance);
    const outcome: KnownOutcome = { status: 'accepted', type: 'Transfer', version: ev.version, balance, transfer: debit };
    const id = outcomeKey(accountId, commandId);
    seen.set(id, outcome);
    decided.add(accountId, commandId, id, outcome);
  };

  for (const m of unpackMessages(task.msgs)) {
    index++;
    const replay = task.replayBelow !== null && m.offset < (task.replayBelow.get(m.partition) ?? -1);
    const d = decodeCommand(m.key, m.value, task.maxMessageBytes, task.transfers === true);
    if (d.kind === 'dlq') {
      if (!replay) dlq.push({ index, code: d.code, message: d.message }); // a replayed one was dead-lettered before its offset committed
      continue;
    }
    const accountId = d.kind === 'ok' ? d.command.accountId : d.accountId;
    const commandId = d.kind === 'ok' ? d.command.commandId : d.commandId;
    const type = d.kind === 'ok' ? d.command.type : d.type;
    if (isReservedId(commandId)) {
      // a transfer step's id: refused every time, and never recorded, so no producer can take one on an account first
      outcomes.record(accountId, outcomeJson(commandId, accountId, type, 'rejected', ',"reason":"INVALID_COMMAND","detail":"' + RESERVED_DETAIL + '"', processedAt));
      if (replay) republished++;
      else { count(type, 'rejected'); reasons.INVALID_COMMAND = (reasons.INVALID_COMMAND ?? 0) + 1; }
      continue;
    }
    const id = outcomeKey(accountId, commandId);
    const prior = seen.get(id) ?? known?.get(id);
    if (prior) {
      // Answered as it was first answered: the original with its own status, a re-send with `duplicate`.
      // Postgres records where the original was read (0005): the message at that place is the original,
      // whether this is a replay or a batch redone after another writer committed it first, and in
      // whatever order the copies arrive. Rows from before 0005 fall back to "the first copy this
      // replay meets".
      const original = prior.sourceOffset !== undefined
        ? prior.sourcePartition === m.partition && prior.sourceOffset === m.offset
        : replay && !seen.has(id);
      emitKnown(accountId, commandId, type, prior, original, replay, d.kind === 'ok' && d.command.type === 'Transfer' ? d.command.toAccountId : undefined);
      seen.set(id, prior); // any later copy in this batch is a re-send
      continue;
    }
    if (d.kind === 'invalid') {
      reject(m, accountId, commandId, type, 'INVALID_COMMAND', d.message);
      continue;
    }
    const cmd = d.command;
    const state = changed.get(accountId) ?? states.get(accountId) ?? null;
    if (cmd.type === 'Transfer') {
      transfer(m, cmd, state);
      continue;
    }
    const decision = decide(state, cmd);
    if (!decision.accepted) {
      reject(m, accountId, commandId, type, decision.rejected, decision.detail);
      continue;
    }
    const ev = decision.event;
    // appendEvent's row, written inline in the loop every command takes, as it was measured (docs/benchmarks.md)
    const eventId = newEventId();
    const payload = encodeEnvelope({ eventId, accountId, version: ev.version, type: ev.type, data: ev.data as unknown as Record<string, unknown>, commandId, recordedAt: processedAt });
    events.row(EVENT_FIELDS).uuid(accountId).int8(ev.version).uuid(eventId).text(EVENT_OF[cmd.type]).jsonb(payload).uuid(commandId).timestamptz(task.nowMs).int4(m.partition).int8(m.offset);
    eventCount++;
    changed.set(accountId, decision.state);
    accA.push(accountId); accC.push(commandId);
    if (cmd.type === 'CloseAccount') closedAccounts.push(accountId);
    else if (cmd.type === 'Deposit') raised.raised(accountId, decision.state.balance);
    const balance = balanceText(decision.state);
    outcomes.record(accountId, outcomeJson(commandId, accountId, type, 'accepted', ',"version":' + ev.version + ',"balance":"' + balance + '"', processedAt));
    const outcome: KnownOutcome = { status: 'accepted', type, version: ev.version, balance };
    seen.set(id, outcome);
    decided.add(accountId, commandId, id, outcome);
    count(type, 'accepted');
  }

  return {
    events: events.finish(),
    eventCount,
    rejections: rejections.finish(),
    rejectionCount,
    outcomes: outcomes.finish(),
    steps: steps.finish(),
    transferRows: transferRows.finish(),
    transferCount,
    states: [...changed.values()],
    acceptedAccounts: accA,
    acceptedCommands: accC,
    rejectedAccounts: rejA,
    rejectedCommands: rejC,
    decided: decided.finish(),
    dlq,
    counts: [...counts.values()],
    republished,
    rejectReasons: reasons,
    closedAccounts,
    refusedOnState,
    ...raised.result(),
  };
}
