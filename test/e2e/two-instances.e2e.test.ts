/**
 * Two instances in one consumer group (docs/reliability.md §5), each running
 * every role (commands, projections, the logical relay): the second daemon
 * joins mid-stream and takes over some partitions of both groups while its
 * relay waits as a standby (the slot is exclusive); then the first is
 * SIGKILLed, its partitions move to the second and the second's relay takes
 * the slot over. Outcomes and the event store match the oracle exactly, and
 * once the projections catch up, account_projections matches the oracle and
 * transaction_projections matches the fold of the events table.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';

let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('two-instances').join(' ')}`);
  await rig?.release();
});

test('a second instance joins mid-stream, the first is SIGKILLed: partitions and the relay slot move, exactly once', async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'twoinst', projections: true });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 300, seed: 31337 });
  await r.tap(oracle);
  const first = await r.start();
  // the slot must exist before the first event commits: a slot created later never decodes what came before it
  await first.streaming(45000);
  const slotPid = async (): Promise<number | null | undefined> => {
    // the relay's slot, whatever its name: the only slot of this database
    const { rows } = await r.pg.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE database = current_database()');
    assert.ok(rows.length <= 1, `one replication slot per database, got ${rows.length}`);
    return rows[0]?.active_pid;
  };

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 60, maxAhead: 30000 });
  await sleep(3000);
  const second = await r.start({}, { partitions: null });
  const deadline = Date.now() + 30000;
  const sharedBy = async (consumer: string) => {
    const [a, b] = await Promise.all([first.partitionsOwned(consumer), second.partitionsOwned(consumer)]);
    return a > 0 && b > 0 && a + b === 4;
  };
  while (!(await sharedBy('commands').catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`partitions were not shared: first ${first.owned()}, second ${second.owned()}`);
    await sleep(100);
  }
  const shared = { first: first.owned(), second: second.owned() };
  const sharedAt = Date.now() - t0;
  const bothBefore = oracle.received;
  await sleep(4000);
  assert.ok(oracle.received > bothBefore, 'outcomes flow while both share the partitions');
  const projShared = { first: first.owned('projections'), second: second.owned('projections') };
  // the slot is exclusive: the second relay retries as a standby
  assert.ok(!second.logs().some((l) => l.msg === 'relay streaming'), 'the second relay does not stream while the first holds the slot');
  const standbyRetries = second.logs().filter((l) => l.msg === 'replication stream failed; reconnecting with backoff').length;
  const heldBy = await slotPid();
  assert.ok(typeof heldBy === 'number', `the first relay holds the slot (active_pid ${heldBy})`);

  await first.kill();
  const killedAt = Date.now();
  let slotFreedMs = -1;
  let slotTakenMs = -1;
  const watchSlot = (async () => {
    while (Date.now() - killedAt < 90000) {
      const pid = await slotPid();
      if (slotFreedMs < 0 && pid !== heldBy) slotFreedMs = Date.now() - killedAt;
      if (typeof pid === 'number' && pid !== heldBy) { slotTakenMs = Date.now() - killedAt; return; }
      await sleep(50);
    }
  })();
  const since = (p: Promise<unknown>) => p.then(() => Date.now() - killedAt);
  const [movedMs, projMovedMs, relayMs] = await Promise.all([
    since(second.assigned(4, 30000)),
    since(second.assigned(4, 60000, 'projections')),
    since(second.streaming(90000)),
    watchSlot,
  ]);
  await sleep(3000);
  stop = true;
  const sent = await produced;
  const drainMs = await r.complete(oracle, 60000);
  await sleep(300);
  const backlog = await r.projectionProgress();
  const proj = await r.projectionsCaughtUp(oracle, 90000);
  console.log(`shared after ${sharedAt} ms (commands: first ${shared.first}, second ${shared.second}; projections: first ${projShared.first}, second ${projShared.second}); second relay standby (${standbyRetries} attach retries); ` +
    `after the SIGKILL: command partitions moved in ${movedMs} ms, projection partitions in ${projMovedMs} ms, slot freed in ${slotFreedMs} ms and taken over by the second relay in ${slotTakenMs} ms (streaming logged at ${relayMs} ms); ` +
    `${sent} sent; drained in ${drainMs} ms; ${oracle.summary()}`);
  console.log(`projections: ${backlog.events - backlog.projectedVersions} of ${backlog.events} events not yet projected when the outcomes were complete; caught up ${proj.ms} ms later (${proj.progress.transactionRows} transaction rows, ${oracle.expectedAccounts().length} accounts)`);

  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.equal(await oracle.verifyStore(r.pg), [], 'event store agrees with the oracle');
  assert.equal(proj.problems, [], 'account_projections agrees with the oracle, transaction_projections with the events table');
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  const cached = await r.redisStates();
  assert.ok(cached.read > 0, 'the instance that took over read states from Redis');
  assert.equal(cached.unknown, [], 'every state in Redis is one this ledger wrote');
  const exit = await second.stop();
  assert.is(exit.code, 0);
  assert.is((await r.dropReplicationSlots()).length, 1, 'the relay slot of this database is dropped');
  failed = false;
});

test.run();
