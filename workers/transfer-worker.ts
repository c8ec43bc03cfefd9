/**
 * piscina worker entry for the transfer role: decides one shard's slice of
 * bank.transfers steps (src/pipeline/transfers/decide-steps.ts). Like the
 * command worker, its result's larger buffers are transferred back, not copied.
 */
import Piscina from 'piscina';
import type { ShardTask } from '../src/pipeline/commands/decide-shard';
import { decideSteps } from '../src/pipeline/transfers/decide-steps';

export default function run(task: ShardTask) {
  const r = decideSteps(task);
  return Piscina.move({
    [Piscina.transferableSymbol]: [r.events.buffer, r.rejections.buffer, r.outcomes.buffer, r.decided.records.buffer, r.decided.hashes.buffer, r.decided.offsets.buffer],
    [Piscina.valueSymbol]: r,
  } as never);
}
