/**
 * Crash loop (docs/reliability.md §1): while a seeded stream of commands
 * flows, the daemon is SIGKILLed at random moments 20 times and started again
 * each time, with the same consumer group and stored offsets. Most kills land
 * 0.3–2.3 s after the new instance owns its partitions (mid-batch); every
 * other one lands 0.2–1.2 s after the spawn, during start-up. A new instance
 * waits out the dead member's 6 s session before it owns the partitions. At the end the outcomes and
 * the event store match the oracle exactly: nothing lost, duplicated or
 * reordered.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle, rng } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';

const KILLS = Number(process.env.CRASH_LOOP_KILLS ?? 20);

let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed) console.log(`daemon logs: ${rig?.dumpLogs('crash-loop').join(' ')}`);
  await rig?.release();
});

test(`${KILLS} SIGKILLs mid-stream: outcomes and event store match the oracle`, async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'crashloop' });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 400, seed: 20250101 });
  await r.tap(oracle);
  let d = await r.start();

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 250, maxAhead: 20000 });
  const pick = rng(7);
  let midBatch = 0;
  for (let k = 1; k <= KILLS; k++) {
    const duringStart = k % 2 === 0;
    if (duringStart) {
      await sleep(200 + pick() * 1000); // before it joins the group: booting, migrating, connecting
    } else {
      await d.assigned(4, 45000).catch(() => d.assigned(2, 1)); // 2 when a dying peer's partitions have not moved yet
      const before = oracle.received;
      await sleep(300 + pick() * 2000);
      if (oracle.received > before) midBatch++;
    }
    await d.kill();
    console.log(`kill ${k} at ${((Date.now() - t0) / 1000).toFixed(1)} s (${duringStart ? 'during start-up' : 'while running'}): ${oracle.received} outcomes, ${oracle.outstanding} outstanding`);
    d = await r.start({}, { partitions: null });
  }
  stop = true;
  const sent = await produced;
  await d.assigned(4, 45000).catch((e: Error) => console.log(`last instance: ${e.message.slice(0, 200)}`));
  const killPhase = Date.now() - t0;
  const drainMs = await r.complete(oracle, 90000);
  await sleep(500); // let trailing re-publications land
  console.log(`${KILLS} kills (${midBatch} while outcomes were flowing) in ${(killPhase / 1000).toFixed(0)} s; drained in ${drainMs} ms; ${sent} sent; ${oracle.summary()}`);

  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.ok(oracle.complete);
  const problems = await oracle.verifyStore(r.pg);
  assert.equal(problems, [], 'event store agrees with the oracle');
  assert.ok(midBatch >= KILLS / 2 - 2, `only ${midBatch} kills landed while the daemon was working`);
  const exit = await d.stop();
  assert.is(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}`);
  failed = false;
});

test.run();
