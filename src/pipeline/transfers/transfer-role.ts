/**
 * The transfer role (docs/transfers.md): the command role's pipeline on the
 * internal topic bank.transfers, deciding credit and refund steps
 * (decide-steps.ts) instead of commands. In the same transaction as the
 * steps' events and rejections, the transfers they end are settled in the
 * `transfers` table; after the commit the final outcomes go to
 * bank.command-results and refund steps back to bank.transfers, tracked by
 * the published offset like any outcome.
 */
import { randomUUID } from 'node:crypto';
import type { DaemonContext } from '../../daemon';
import type { Message } from '../../kafka/consumer';
import { creditStepJson } from '../../codec/transfer-step';
import { transferStepId } from '../../domain/transfer';
import { settleTransfers, unbackedTransfers } from '../../db/sql/transfers';
import { BankingError } from '../../errors';
import { CANARY_PARTITION } from '../role';
import { CommandBatch, CommandRole, type DecidingKind } from '../commands/command-role';
import { decideSteps, type StepsResult } from './decide-steps';

export function transferKind(ctx: DaemonContext): DecidingKind {
  const { config } = ctx;
  const p = config.pipeline;
  return {
    settings: {
      name: 'transfers', noun: 'transfer step', topic: config.kafka.topics.transfers, group: config.kafka.transferGroupId, dlqTopic: config.kafka.topics.transfersDlq,
      batchTimeMs: p.batchTimeMs, batchSize: p.batchSize, maxInFlight: p.maxInFlight,
      maxRedos: 4,
    },
    workerFile: 'transfer-worker.js',
    decide: decideSteps,
    transfers: true,
    canary: transferCanary,
    committed(d) {
      for (const r of d.results) for (const s of (r as StepsResult).settlements) ctx.metrics.transfersCompleted.inc({ result: s.settled });
    },
    async write(client, d) {
      // a copy of a step already applied sends its final outcome again from its own fields: they must be its transfer's
      const repeats = d.results.flatMap((r) => (r as StepsResult).repeats);
      if (repeats.length && (await unbackedTransfers(client, repeats)) > 0) {
        throw new BankingError('STEP_UNBACKED', 'a copy of a transfer step already applied disagrees with its transfer (destination, amount, currency, the source after the debit, or the refusal)');
      }
      const settlements = d.results.flatMap((r) => (r as StepsResult).settlements);
      if (settlements.length === 0) return 'written';
      const settled = await settleTransfers(client, settlements);
      if (settled === settlements.length) return 'written';
      // A step settles its transfer once, and only its own: the same step decided twice meets the events
      // key first (and is then known, settling nothing). So a step that settles nothing has no debit
      // behind it, or one that moved something else, or one a different step (forged) settled first:
      // none ever will. Poison, isolated and dead-lettered by the core; never a redo, which would loop.
      const unbacked = await unbackedTransfers(client, settlements);
      throw new BankingError('STEP_UNBACKED', unbacked > 0
        ? 'a transfer step does not match a debit in the transfers table (source, transfer, destination, amount, currency)'
        : 'a transfer step finds its transfer already settled by another step');
    },
  };
}

/** A credit to an account that does not exist: a rejection row on it and a refund step (rolled back, never published). */
function transferCanary(topic: string): CommandBatch {
  const source = randomUUID(), destination = randomUUID(), transferId = randomUUID();
  const value = creditStepJson({
    type: 'CreditTransfer', commandId: transferStepId(source, transferId, 'credit'), transferId, accountId: destination, fromAccountId: source,
    amount: '1.00', currency: 'USD', sourceVersion: 2, sourceBalance: '0.00',
  });
  return new CommandBatch([{ topic, partition: CANARY_PARTITION, offset: 0, key: Buffer.from(destination), value: Buffer.from(value), size: 0, timestamp: 0 } satisfies Message]);
}

export const createTransferRole = (ctx: DaemonContext): CommandRole => new CommandRole(ctx, transferKind(ctx));
