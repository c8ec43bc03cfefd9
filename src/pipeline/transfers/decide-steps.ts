/**
 * The transfer role's worker (docs/transfers.md): decide one shard's slice of
 * `bank.transfers` steps, in offset order, on the states of the accounts they
 * are for. The same task and result shapes as the command worker
 * (../commands/decide-shard.ts), so the role around it is the command role's.
 *
 * - CreditTransfer on the destination: TransferCredited, then the final
 *   `accepted` outcome (keyed by the source, with the source's version and
 *   balance after its debit, which the step carries); or a refusal, recorded
 *   as the step's rejection on the destination, then a RefundTransfer step.
 * - RefundTransfer on the source: TransferRefunded (never refused), then the
 *   final `rejected` outcome with the destination's reason.
 *
 * A step seen before (in this slice, or in Postgres: `task.known`) sends its
 * next message again, identical but for processedAt, and writes nothing.
 * `settlements` say which transfers ended here, for the `transfers` table.
 */
import { CopyWriter } from '../../codec/pgcopy';
import { REJECTION_COLUMNS, fieldCount } from '../../codec/rows';
import { jsonString } from '../../codec/envelope';
import { decodeStep, refundStepJson, type CreditStep } from '../../codec/transfer-step';
import { fractionDigits } from '../../domain/currency';
import { formatMoney } from '../../domain/money';
import { DESTINATION_REASONS, decideCredit, decideRefund, stepAmount, transferStepId, type RefundTransfer, type TransferEvent } from '../../domain/transfer';
import type { AccountState, RejectReason } from '../../domain/types';
import { Packer, unpackMessages, type PackedMessage } from '../pack';
import { DecidedWriter } from '../commands/decided-outcomes';
import { appendEvent, outcomeKey, RaisedPeaks, taskStates, type CommandCount, type KnownOutcome, type ShardResult, type ShardTask } from '../commands/decide-shard';

/**
 * A transfer that ended in this slice: credited, or refunded with the destination's reason. The
 * destination, amount (minor units) and currency are what the step moved: they must be the debit's.
 */
export interface Settlement {
  sourceId: string; transferId: string; settled: 'credited' | 'refunded'; reason: RejectReason | null;
  destinationId: string; amount: number; currency: string;
  /** a credit's: the source's version and balance (minor units) after the debit, as the step names them */
  sourceVersion: number | null; sourceBalance: number | null;
  /** a refund's: the credit step whose refusal the destination recorded */
  creditStepId: string | null;
}

export interface StepsResult extends ShardResult {
  settlements: Settlement[];
  /**
   * Steps already applied whose final outcome goes out again from the copy's fields: each must agree with
   * its settled transfer as a settlement would (unbackedTransfers), or the copy is poison.
   */
  repeats: Settlement[];
}

const REJECTION_FIELDS = fieldCount(REJECTION_COLUMNS);

export function decideSteps(task: ShardTask): StepsResult {
  const states = taskStates(task);
  const events = new CopyWriter(task.msgs.byteLength * 2 + 1024);
  const rejections = new CopyWriter(1024);
  const outcomes = new Packer(task.msgs.byteLength + 1024);
  const steps = new Packer(1024);
  const changed = new Map<string, AccountState>();
  /** what this slice decided: a later copy in it is a duplicate */
  const seen = new Map<string, KnownOutcome>();
  /** the same, for the next batch (ShardResult.decided) */
  const decided = new DecidedWriter(task.hashSeed);
  const accA: string[] = [], accC: string[] = [], rejA: string[] = [], rejC: string[] = [];
  const dlq: ShardResult['dlq'] = [];
  const settlements: Settlement[] = [];
  const repeats: Settlement[] = [];
  /** credited here, and the money refunded here (ShardResult.raisedAccounts) */
  const raised = new RaisedPeaks(task.pendingCounted === true);
  const counts = new Map<string, CommandCount>();
  const reasons: Record<string, number> = {};
  const processedAt = new Date(task.nowMs).toISOString();
  let eventCount = 0, rejectionCount = 0, republished = 0, index = -1;

  const count = (status: CommandCount['status']) => {
    const c = counts.get(status);
    if (c) c.count++;
    else counts.set(status, { type: 'Transfer', status, count: 1 });
  };
  /** The transfer's one final outcome on bank.command-results, keyed by the source. */
  const final = (transferId: string, source: string, destination: string, status: 'accepted' | 'rejected', reason: RejectReason | null, version: number, balance: string) => {
    outcomes.record(source, '{"commandId":' + jsonString(transferId) + ',"accountId":' + jsonString(source) + ',"type":"Transfer","status":"' + status + '"' +
      ',"transferId":' + jsonString(transferId) + ',"toAccountId":' + jsonString(destination) + (reason === null ? '' : ',"reason":"' + reason + '"') +
      ',"version":' + version + ',"balance":' + jsonString(balance) + ',"processedAt":"' + processedAt + '"}');
  };
  const refundOf = (s: CreditStep, reason: RejectReason): RefundTransfer => ({
    type: 'RefundTransfer', commandId: transferStepId(s.fromAccountId, s.transferId, 'refund'), transferId: s.transferId, accountId: s.fromAccountId,
    toAccountId: s.accountId, amount: s.amount, currency: s.currency, reason,
  });
  const append = (m: PackedMessage, e: TransferEvent, state: AccountState): string => {
    appendEvent(events, e, m, processedAt, task.nowMs);
    eventCount++;
    changed.set(e.accountId, state);
    accA.push(e.accountId); accC.push(e.commandId);
    return formatMoney(state.balance, fractionDigits(state.currency) ?? 2);
  };
  const remember = (accountId: string, commandId: string, k: KnownOutcome) => {
    const key = outcomeKey(accountId, commandId);
    seen.set(key, k);
    decided.add(accountId, commandId, key, k);
  };

  for (const m of unpackMessages(task.msgs)) {
    index++;
    const replay = task.replayBelow !== null && m.offset < (task.replayBelow.get(m.partition) ?? -1);
    const d = decodeStep(m.key, m.value);
    if (d.kind === 'dlq') {
      if (!replay) dlq.push({ index, code: d.code, message: d.message });
      continue;
    }
    const step = d.step;
    const prior = seen.get(outcomeKey(step.accountId, step.commandId)) ?? task.known?.get(outcomeKey(step.accountId, step.commandId));
    if (prior && prior.type !== step.type) {
      // the step's id holds another command (ids of version 8 are refused on bank.commands, so this is corruption): stop loudly
      if (!replay) dlq.push({ index, code: 'STEP_ID_TAKEN', message: `${step.type} ${step.commandId} on ${step.accountId} is recorded as a ${prior.type}` });
      continue;
    }
    if (prior) {
      // done before: its next message goes again, and nothing is written; an outcome taken from the copy is checked (repeats)
      if (step.type === 'CreditTransfer') {
        if (prior.status === 'accepted') {
          final(step.transferId, step.fromAccountId, step.accountId, 'accepted', null, step.sourceVersion, step.sourceBalance);
          repeats.push(creditSettlement(step, amountMinor(step)));
        } else steps.record(step.fromAccountId, refundStepJson(refundOf(step, prior.reason as RejectReason)));
      } else if (prior.status === 'accepted') {
        final(step.transferId, step.accountId, step.toAccountId, 'rejected', step.reason, prior.version, prior.balance);
        repeats.push(refundSettlement(step, amountMinor(step)));
      }
      if (replay) republished++;
      continue;
    }
    const state = changed.get(step.accountId) ?? states.get(step.accountId) ?? null;
    if (step.type === 'CreditTransfer') {
      const decision = decideCredit(state, step);
      if (decision.accepted) {
        const balance = append(m, decision.event, decision.state);
        remember(step.accountId, step.commandId, { status: 'accepted', type: 'CreditTransfer', version: decision.state.version, balance });
        settlements.push(creditSettlement(step, decision.state.balance - state!.balance));
        raised.raised(step.accountId, decision.state.balance);
        final(step.transferId, step.fromAccountId, step.accountId, 'accepted', null, step.sourceVersion, step.sourceBalance);
        count('accepted');
        continue;
      }
      if (!DESTINATION_REASONS.includes(decision.rejected)) {
        // only a malformed step is refused otherwise, and decodeStep lets none through: no refund could carry the reason
        if (!replay) dlq.push({ index, code: 'INVALID_STEP', message: `credit refused ${decision.rejected}: ${decision.detail ?? ''}` });
        continue;
      }
      // refused at the destination: recorded there under the step's id, so a re-sent step is a duplicate
      rejections.row(REJECTION_FIELDS).uuid(step.accountId).uuid(step.commandId).text('CreditTransfer').text(decision.rejected);
      if (decision.detail === undefined) rejections.null(); else rejections.text(decision.detail);
      rejections.timestamptz(task.nowMs).int4(m.partition).int8(m.offset).null();
      rejectionCount++;
      rejA.push(step.accountId); rejC.push(step.commandId);
      remember(step.accountId, step.commandId, { status: 'rejected', type: 'CreditTransfer', reason: decision.rejected, ...(decision.detail === undefined ? {} : { detail: decision.detail }) });
      steps.record(step.fromAccountId, refundStepJson(refundOf(step, decision.rejected)));
      continue;
    }
    let refund;
    try {
      refund = decideRefund(state, step);
    } catch (e) {
      // a refund the source cannot take. Decided on a state that did not count its money in flight (a credit
      // earlier in this slice took the room), the batch is decided again on one that does (the role's mustRedo),
      // where the credit is refused instead; decided on one that does, the store broke the rules: dead-lettered, loudly
      if (!replay) dlq.push({ index, code: 'REFUND_IMPOSSIBLE', message: (e as Error).message });
      continue;
    }
    const balance = append(m, refund.event, refund.state);
    remember(step.accountId, step.commandId, { status: 'accepted', type: 'RefundTransfer', version: refund.state.version, balance });
    const amount = refund.state.balance - state!.balance;
    settlements.push(refundSettlement(step, amount));
    raised.inFlight(step.accountId, -amount);
    final(step.transferId, step.accountId, step.toAccountId, 'rejected', step.reason, refund.state.version, balance);
    count('rejected');
    reasons[step.reason] = (reasons[step.reason] ?? 0) + 1;
  }

  return {
    events: events.finish(), eventCount, rejections: rejections.finish(), rejectionCount,
    outcomes: outcomes.finish(), steps: steps.finish(), transferRows: new Uint8Array(0), transferCount: 0,
    states: [...changed.values()], acceptedAccounts: accA, acceptedCommands: accC, rejectedAccounts: rejA, rejectedCommands: rejC,
    decided: decided.finish(), dlq, counts: [...counts.values()], republished, rejectReasons: reasons, settlements, repeats, closedAccounts: [], refusedOnState: rejA,
    ...raised.result(),
  };
}

/** What a credit settles: its debit's transfer, and the source after the debit as the step names it. */
function creditSettlement(step: CreditStep, amount: number): Settlement {
  return {
    sourceId: step.fromAccountId, transferId: step.transferId, settled: 'credited', reason: null, destinationId: step.accountId, amount, currency: step.currency,
    sourceVersion: step.sourceVersion, sourceBalance: minorUnits(step.sourceBalance, step.currency, true), creditStepId: null,
  };
}

/** What a refund settles: its debit's transfer, after the destination's refusal of the credit step. */
function refundSettlement(step: RefundTransfer, amount: number): Settlement {
  return {
    sourceId: step.accountId, transferId: step.transferId, settled: 'refunded', reason: step.reason, destinationId: step.toAccountId, amount, currency: step.currency,
    sourceVersion: null, sourceBalance: null, creditStepId: transferStepId(step.accountId, step.transferId, 'credit'),
  };
}

/** A step's amount in minor units (decodeStep checked it is a positive amount of its currency). */
const amountMinor = (step: CreditStep | RefundTransfer): number => minorUnits(step.amount, step.currency, false);

function minorUnits(text: string, currency: string, allowZero: boolean): number {
  const minor = stepAmount(text, currency, allowZero);
  if (minor === undefined) throw new Error(`${text} is not a ${currency} amount`);
  return minor;
}
