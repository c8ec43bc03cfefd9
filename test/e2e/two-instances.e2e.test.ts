/**
 * Two instances in one consumer group (docs/reliability.md §5): the second
 * daemon joins mid-stream and takes over some partitions, then the first is
 * SIGKILLed and its partitions move to the second. Outcomes and the event
 * store match the oracle exactly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';
import type { Daemon } from '../helpers/daemon';

let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('two-instances').join(' ')}`);
  await rig?.release();
});

/** Partitions of the latest assignment a daemon logged. */
function owned(d: Daemon): number[] {
  const a = d.logs().filter((l) => l.msg === 'partitions assigned' || l.msg === 'partitions revoked').pop();
  if (!a || a.msg === 'partitions revoked' || !Array.isArray(a.partitions)) return [];
  return (a.partitions as string[]).map((p) => Number(String(p).split('@')[0]));
}

test('a second instance joins mid-stream, the first is SIGKILLed: partitions move, exactly once', async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'twoinst' });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 300, seed: 31337 });
  await r.tap(oracle);
  const first = await r.start();

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 60, maxAhead: 30000 });
  await sleep(3000);
  const second = await r.start({}, { partitions: null });
  const deadline = Date.now() + 30000;
  while (!(owned(second).length > 0 && owned(first).length > 0 && owned(first).length + owned(second).length === 4)) {
    if (Date.now() > deadline) throw new Error(`partitions were not shared: first ${owned(first)}, second ${owned(second)}`);
    await sleep(100);
  }
  const shared = { first: owned(first), second: owned(second) };
  const sharedAt = Date.now() - t0;
  const bothBefore = oracle.received;
  await sleep(4000);
  assert.ok(oracle.received > bothBefore, 'outcomes flow while both share the partitions');

  await first.kill();
  const killedAt = Date.now();
  await second.assigned(4, 30000);
  const movedMs = Date.now() - killedAt;
  await sleep(3000);
  stop = true;
  const sent = await produced;
  const drainMs = await r.complete(oracle, 60000);
  await sleep(300);
  console.log(`shared after ${sharedAt} ms (first ${shared.first}, second ${shared.second}); all 4 moved to the second ${movedMs} ms after the SIGKILL; ${sent} sent; drained in ${drainMs} ms; ${oracle.summary()}`);

  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.equal(await oracle.verifyStore(r.pg), [], 'event store agrees with the oracle');
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  const exit = await second.stop();
  assert.is(exit.code, 0);
  failed = false;
});

test.run();
