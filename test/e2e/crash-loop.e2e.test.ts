/**
 * Crash loop (docs/reliability.md §1): while a seeded stream of commands
 * flows, the daemon, running every role (commands, projections, the logical
 * relay), is SIGKILLed at random moments 20 times and started again each
 * time, with the same consumer groups, stored offsets and replication slot.
 * Most kills land 0.3–2.3 s after the new instance's outcomes resumed (it
 * owns its partitions and re-published what the dead one had not recorded
 * as published: mid-batch); every other one lands 0.2–1.2 s after the spawn,
 * during start-up. A new instance waits out the dead member's 6 s session
 * before it owns the partitions. At the end the outcomes and the event store
 * match the oracle exactly (nothing lost, duplicated or reordered), and once
 * the projections catch up, account_projections matches the oracle and
 * transaction_projections matches the fold of the events table.
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

test(`${KILLS} SIGKILLs mid-stream: outcomes, event store and projections match the oracle`, async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'crashloop', projections: true });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 400, seed: 20250101 });
  await r.tap(oracle);
  let d = await r.start();
  // the slot must exist before the first event commits: a slot created later never decodes what came before it
  await d.streaming(45000);

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 250, maxAhead: 20000 });
  const pick = rng(7);
  let midBatch = 0;
  let relayUp = 0; // killed instances whose relay had reached streaming
  let projectorsUp = 0; // killed instances whose projection consumer owned partitions
  for (let k = 1; k <= KILLS; k++) {
    const duringStart = k % 2 === 0;
    if (duringStart) {
      await sleep(200 + pick() * 1000); // before it joins the group: booting, migrating, connecting
    } else {
      await d.assigned(4, 45000).catch(() => d.assigned(2, 1)); // 2 when a dying peer's partitions have not moved yet
      // a new owner first re-publishes what the dead one had not recorded as published (up to two batches
      // per partition): outcomes resume after that replay, and the kill is meant to land in the flow
      const resumed = oracle.received;
      const flowBy = Date.now() + 30000;
      while (oracle.received === resumed && Date.now() < flowBy) await sleep(20);
      const before = oracle.received;
      await sleep(300 + pick() * 2000);
      // mid-work: outcomes flowed in the window, or consumed messages were not committed yet at the kill
      const inFlight = await d.get('/metrics').then((m) => Number(m.body.split('\n').find((l) => l.startsWith('banking_es_in_flight_messages{pipeline="commands"}'))?.split(' ').pop() ?? 0), () => 0);
      if (oracle.received > before || inFlight > 0) midBatch++;
    }
    if (d.logs().some((l) => l.msg === 'relay streaming')) relayUp++;
    if (d.owned('projections').length > 0) projectorsUp++;
    await d.kill();
    console.log(`kill ${k} at ${((Date.now() - t0) / 1000).toFixed(1)} s (${duringStart ? 'during start-up' : 'while running'}): ${oracle.received} outcomes, ${oracle.outstanding} outstanding`);
    d = await r.start({}, { partitions: null });
  }
  stop = true;
  const sent = await produced;
  await d.assigned(4, 45000).catch((e: Error) => console.log(`last instance: ${e.message.slice(0, 200)}`));
  const killPhase = Date.now() - t0;
  const atRestart = await r.projectionProgress(); // the read models' backlog when the last instance took over
  const lastProjector = d.assigned(4, 45000, 'projections').then(() => Date.now() - t0 - killPhase, () => -1);
  const drainMs = await r.complete(oracle, 90000);
  await sleep(500); // let trailing re-publications land
  const backlog = await r.projectionProgress();
  const proj = await r.projectionsCaughtUp(oracle, 60000);
  const sinceRestart = Date.now() - t0 - killPhase;
  console.log(`${KILLS} kills (${midBatch} while the daemon was working: outcomes flowing or messages in flight; relay streaming in ${relayUp}, projector assigned in ${projectorsUp} of the killed instances) in ${(killPhase / 1000).toFixed(0)} s; drained in ${drainMs} ms; ${sent} sent; ${oracle.summary()}`);
  console.log(`projections: ${atRestart.events - atRestart.projectedVersions} of ${atRestart.events} events unprojected when the last instance owned its command partitions (its projector owned all 4 ${await lastProjector} ms later); ` +
    `${backlog.events - backlog.projectedVersions} of ${backlog.events} when the outcomes were complete; caught up ${proj.ms} ms after that, ${sinceRestart} ms after the last instance took over (${proj.progress.transactionRows} transaction rows, ${oracle.expectedAccounts().length} accounts)`);

  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.ok(oracle.complete);
  const problems = await oracle.verifyStore(r.pg);
  assert.equal(problems, [], 'event store agrees with the oracle');
  assert.ok(midBatch >= KILLS / 2 - 2, `only ${midBatch} kills landed while the daemon was working`);
  assert.equal(proj.problems, [], 'account_projections agrees with the oracle, transaction_projections with the events table');
  const cached = await r.redisStates();
  assert.ok(cached.read > 0, 'the last instance started on states from Redis');
  assert.equal(cached.unknown, [], 'every state in Redis is one this ledger wrote: the commit check never redoes for a genuine one');
  const exit = await d.stop();
  assert.is(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}`);
  assert.is((await r.dropReplicationSlots()).length, 1, 'the relay slot of this database is dropped');
  failed = false;
});

test.run();
