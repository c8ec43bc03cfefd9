/**
 * piscina worker entry for the projection pipeline. Pure: it imports only
 * the shard function (which uses the codec and the domain). Both COPY
 * buffers go back in a transfer list (each has an ArrayBuffer of its own,
 * allocated with allocUnsafeSlow), so they are moved, not copied.
 */
import Piscina from 'piscina';
import { projectShard, type ProjectTask } from '../src/pipeline/projections/project-shard';

export default function run(task: ProjectTask) {
  const r = projectShard(task);
  return Piscina.move({
    [Piscina.transferableSymbol]: [r.transactions.buffer, r.accounts.buffer],
    [Piscina.valueSymbol]: r,
  } as never);
}
