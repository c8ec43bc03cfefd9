/**
 * piscina worker entry for the transfer role: decides one shard's slice of
 * bank.transfers steps (src/pipeline/transfers/decide-steps.ts). Like the
 * command worker, its result's larger buffers are transferred back, not copied.
 */
import Piscina from 'piscina';
import { transferredBuffers, type ShardTask } from '../src/pipeline/commands/decide-shard';
import { decideSteps } from '../src/pipeline/transfers/decide-steps';

export default function run(task: ShardTask) {
  const r = decideSteps(task);
  return Piscina.move({
    [Piscina.transferableSymbol]: transferredBuffers(r),
    [Piscina.valueSymbol]: r,
  } as never);
}
