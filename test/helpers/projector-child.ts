/**
 * Child-process entry running only the projection pipeline (until the
 * `projections` role is wired into `banking-es start`), so a test can
 * SIGKILL it mid-stream. Configured by the environment like the daemon;
 * SIGTERM drains and exits 0. Tells its parent, over the IPC channel, how
 * many partitions it owns whenever that changes (a typed event to wait on,
 * read from its metrics).
 */
import { createLogger } from '../../src/logger';
import { loadConfig } from '../../src/config';
import { startProjector } from './projector';

async function main(): Promise<number> {
  const { config } = loadConfig({ env: { ...process.env, ROLES: 'projections' } });
  const log = createLogger({ level: config.log.level });
  const p = await startProjector(process.env, log);
  p.lifecycle.installSignalHandlers();
  log.info('projector child started');
  let told = -1;
  const owned = setInterval(() => {
    void p.metrics.consumerPartitions.get().then((g) => {
      const count = g.values.find((v) => v.labels.consumer === 'projections')?.value ?? 0;
      if (count !== told && process.send) process.send({ type: 'partitions-owned', count });
      told = count;
    });
  }, 100);
  owned.unref();
  await p.lifecycle.stopSignal;
  const code = await p.stop();
  log.flush();
  return code;
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`projector child failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
