/**
 * The load generator's model with transfers (dev/loadgen/generator.ts), held
 * to the real decider: its commands are decided in order, and every credit
 * and refund lands at a random later moment, as the transfer process makes
 * them land. Each command's outcome (a Transfer's final one) must be the one
 * the model expects, whatever the timing, and once everything has landed
 * every balance must be the model's `expected`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Workload } from '../../dev/loadgen/generator';
import { decodeCommand } from '../../src/codec/command';
import { decide } from '../../src/domain/decider';
import { decideCredit, decideRefund, decideTransfer, transferStepId, type CreditTransfer, type RefundTransfer } from '../../src/domain/transfer';
import type { AccountState } from '../../src/domain/types';
import { prng } from '../../dev/loadgen/generator';

/**
 * The order commands are decided in: as generated, or (`partitions`) the setup first, then each
 * account's commands in order on its partition but the partitions interleaved at random, as
 * consumers of separate partitions go: a transfer generated late on one partition can be credited
 * before an earlier command on another is decided.
 */
function decisionOrder<T extends { accountId: string }>(cmds: T[], setup: number, partitions: number, rand: () => number): T[] {
  if (partitions <= 1) return cmds;
  const queues: T[][] = Array.from({ length: partitions }, () => []);
  for (const c of cmds.slice(setup)) queues[parseInt(c.accountId.slice(0, 8), 16) % partitions].push(c);
  const out = cmds.slice(0, setup);
  for (let left = cmds.length - setup; left > 0; left--) {
    const open = queues.filter((q) => q.length > 0);
    out.push(open[Math.floor(rand() * open.length)].shift()!);
  }
  return out;
}

/** What the model owes a command: its status, and the reason when it names one. */
const owed = (c: { expect: string; reason?: string }): string => (c.reason ? `${c.expect} ${c.reason}` : c.expect);

function simulate(seed: number, transferRatio: number, landing: () => number, partitions = 1) {
  const w = new Workload({ accounts: 200, commands: 20_000, seed, transferRatio, invalidRatio: 0.01, duplicateRatio: 0.02 });
  const generated = [];
  for (let c = w.next(); c; c = w.next()) generated.push(c);
  const order = decisionOrder(generated, w.setupCommands, partitions, prng(seed * 13));
  const states = new Map<string, AccountState>();
  const final = new Map<string, string>(); // commandId -> status (and reason) of its first (final) answer
  type Step = { at: number; step: CreditTransfer | RefundTransfer; transferId: string };
  const pending: Step[] = [];
  const mismatches: string[] = [];
  let clock = 0;
  const land = (upTo: number) => {
    pending.sort((a, b) => a.at - b.at);
    while (pending.length && pending[0].at <= upTo) {
      const { step, transferId } = pending.shift()!;
      if (step.type === 'CreditTransfer') {
        const d = decideCredit(states.get(step.accountId) ?? null, step);
        if (d.accepted) { states.set(step.accountId, d.state); final.set(transferId, 'accepted'); continue; }
        const refund: RefundTransfer = { type: 'RefundTransfer', commandId: transferStepId(step.fromAccountId, transferId, 'refund'), transferId, accountId: step.fromAccountId, toAccountId: step.accountId, amount: step.amount, currency: step.currency, reason: d.rejected };
        pending.push({ at: clock + landing(), step: refund, transferId });
      } else {
        states.set(step.accountId, decideRefund(states.get(step.accountId) ?? null, step).state);
        final.set(transferId, `rejected ${step.reason}`);
      }
    }
  };
  const expects = new Map<string, string>();
  const values = new Map<string, string>();
  for (const c of order) {
    clock++;
    land(clock);
    const d = decodeCommand(Buffer.from(c.key), Buffer.from(c.value), 65536, true);
    if (d.kind === 'dlq') throw new Error(d.message);
    const commandId = d.kind === 'ok' ? d.command.commandId : d.commandId;
    if (expects.has(commandId)) {
      // a re-send: duplicate, or (a Transfer) its final outcome again
      if (owed(c) !== (c.transfer ? expects.get(commandId) : 'duplicate')) mismatches.push(`re-send of ${commandId} expects ${owed(c)}`);
      continue;
    }
    expects.set(commandId, owed(c));
    values.set(commandId, c.value);
    if (d.kind === 'invalid') { final.set(commandId, 'rejected INVALID_COMMAND'); continue; }
    const cmd = d.command;
    const state = states.get(cmd.accountId) ?? null;
    if (cmd.type === 'Transfer') {
      const t = decideTransfer(state, cmd);
      if (!t.accepted) { final.set(commandId, `rejected ${t.rejected}`); continue; }
      states.set(cmd.accountId, t.state);
      const credit: CreditTransfer = { type: 'CreditTransfer', commandId: transferStepId(cmd.accountId, commandId, 'credit'), transferId: commandId, accountId: cmd.toAccountId, fromAccountId: cmd.accountId, amount: t.event.data.amount, currency: t.event.data.currency };
      pending.push({ at: clock + landing(), step: credit, transferId: commandId });
      continue;
    }
    const r = decide(state, cmd);
    if (r.accepted) states.set(cmd.accountId, r.state);
    final.set(commandId, r.accepted ? 'accepted' : `rejected ${r.rejected}`);
  }
  land(Number.POSITIVE_INFINITY);
  for (const [id, want] of expects) if (final.get(id) !== want) mismatches.push(`${values.get(id)}: expected ${want}, decided ${final.get(id)}`);
  const wrong = w.accountIds.filter((id) => (states.get(id)?.balance ?? NaN) !== w.expected.get(id));
  return { w, mismatches, wrong, transfers: [...expects.keys()].length };
}

test('every outcome and balance the model expects is what the decider decides, with credits landing at random moments', () => {
  for (const [seed, spread] of [[1, 5], [2, 200], [3, 5000]] as const) {
    const r = prng(seed * 7);
    const { w, mismatches, wrong } = simulate(seed, 0.4, () => 1 + Math.floor(r() * spread));
    assert.equal(mismatches.slice(0, 5), [], `seed ${seed}, credits land within ${spread} commands`);
    assert.equal(wrong.slice(0, 5), [], 'every balance once everything landed');
    assert.ok(w.transfers.credited > 1000 && w.transfers.refunded > 100, `a real mix: ${JSON.stringify(w.transfers)}`);
    assert.is(w.closedIds.length, 4);
  }
});

test('the same when partitions are decided in any interleaving: a credit generated later may land first', () => {
  for (const [seed, ratio] of [[4, 0.4], [5, 1], [6, 0.1]] as const) {
    const r = prng(seed * 7);
    const { w, mismatches, wrong } = simulate(seed, ratio, () => 1 + Math.floor(r() * 50), 4);
    assert.equal(mismatches.slice(0, 5), [], `seed ${seed}, ${ratio * 100}% transfers, 4 partitions interleaved`);
    assert.equal(wrong.slice(0, 5), [], 'every balance once everything landed');
    assert.ok(w.transfers.credited > 1000, `a real mix: ${JSON.stringify(w.transfers)}`);
  }
});

test('transferRatio 0 draws exactly what a workload without the option draws', () => {
  const a = new Workload({ accounts: 50, commands: 2000, seed: 9 });
  const b = new Workload({ accounts: 50, commands: 2000, seed: 9, transferRatio: 0 });
  const strip = (v: string) => v.replace(/"commandId":"[^"]+"|"accountId":"[^"]+"/g, '');
  for (let x = a.next(), y = b.next(); x && y; x = a.next(), y = b.next()) {
    assert.is(strip(x.value), strip(y.value));
    assert.is(x.expect, y.expect);
  }
  assert.not.ok(a.next() ?? b.next());
});

test.run();
