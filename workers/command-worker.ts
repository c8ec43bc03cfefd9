/**
 * piscina worker entry for the command pipeline. Pure: it imports only the
 * domain, the codec and the shard function. The result's larger buffers
 * (event and rejection rows, outcomes, decided outcomes) are transferred back
 * to the main thread (piscina's Transferable protocol), not copied; each sits
 * in its own ArrayBuffer. The rest (transfer rows and credit steps, few) is
 * cloned.
 */
import Piscina from 'piscina';
import { decideShard, transferredBuffers, type ShardTask } from '../src/pipeline/commands/decide-shard';

export default function run(task: ShardTask) {
  const r = decideShard(task);
  // Piscina.move marks our Transferable as movable; without the mark the wrapper itself would be cloned
  return Piscina.move({
    [Piscina.transferableSymbol]: transferredBuffers(r),
    [Piscina.valueSymbol]: r,
  } as never);
}
