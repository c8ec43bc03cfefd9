/**
 * Hand-overs between instances (issue #18): while a seeded stream of commands
 * with re-sends flows, the command partitions move between instances of one
 * consumer group again and again, by three kinds of hand-over in turn:
 *
 *  (a) join+SIGKILL: a new instance joins while the current one runs (its
 *      partitions are revoked and shared), then the old one is SIGKILLed at a
 *      varied delay after the newcomer's assignment (0 ms, 300 ms, 1500 ms, …);
 *  (b) SIGTERM: the current instance is stopped gracefully, either alone (a
 *      replacement is spawned at once) or after a newcomer took half of its
 *      partitions;
 *  (c) early SIGKILL: an instance is SIGKILLed right after it started, before
 *      its first commit (at spawn, or as soon as it owns partitions), either
 *      next to a running instance or as the replacement of a SIGKILLed one.
 *
 * Every outcome is recorded per command by a strict model (StrictOracle, on
 * top of the CommandOracle's own checks): every command gets its original
 * outcome, every re-send a `duplicate` carrying the original, and every
 * re-published copy is identical (all fields but processedAt) to the first
 * of its kind. The run prints, per hand-over, the outcomes received beyond
 * those owed (re-published) in that hand-over's window.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Daemon } from '../helpers/daemon';
import { randomUUID } from 'node:crypto';
import { Rig, sleep } from '../helpers/reliability';
import type { Delivered } from '../helpers/kafka';
import { StrictOracle } from '../helpers/strict-outcomes';

const HANDOVERS = Number(process.env.HANDOVER_COUNT ?? 21);
const BUDGET_MS = Number(process.env.HANDOVER_BUDGET_MS ?? 200000); // the hand-over loop stops starting new ones past this
const SETTLE_MS = Number(process.env.HANDOVER_SETTLE_MS ?? 3000); // how long a hand-over waits for the survivor to own every partition

let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('handover').join(' ')}`);
  await rig?.release();
});

/** Polls `pred` every 10 ms; false after `ms`. */
async function until(pred: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}

const owns = (d: Daemon, n?: number): boolean => {
  if (!d.alive || !d.output().includes('partitions assigned')) return false;
  const k = d.owned().length;
  return n === undefined ? k > 0 : k === n;
};

interface HandOver { k: number; kind: string; delayMs: number; note: string; atS: number; ms: number; inFlight: number }

test(`${HANDOVERS} hand-overs between instances: every command keeps its outcome, every repeat is identical, every re-send gets its duplicate`, async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'handover', partitions: 4 });
  const r = rig;
  const oracle = new StrictOracle({ accounts: 400, seed: 18018, resendRate: 0.05 });
  await r.tap(oracle);
  let current = await r.start();

  let stop = false;
  const produced = r.stream(oracle, { stop: () => stop, chunk: 40, pauseMs: 30, maxAhead: 3000 });
  // poison on the same keys, all along: a message Postgres refuses (isolated, POISON) and one that is not JSON
  const dlq = await r.dlq();
  const poisonPlaces: Delivered[] = [];
  const poisoner = (async () => {
    for (let i = 0; !stop; i++) {
      await sleep(2000);
      const opened = oracle.expectedAccounts();
      if (opened.length === 0) continue;
      const acct = opened[i % opened.length].accountId;
      const nul = `{"commandId":"${randomUUID()}","type":"Dep\\u0000osit","accountId":"${acct}","amount":"1.00"}`;
      poisonPlaces.push(await r.producer.send(r.topics.commands, acct, nul), await r.producer.send(r.topics.commands, acct, '{"commandId": '));
    }
  })();
  // outcomes read in the last 500 ms, sampled every 100 ms: are outcomes in flight when an instance dies?
  const samples: number[] = [];
  const sampler = setInterval(() => { samples.push(oracle.received); if (samples.length > 6) samples.shift(); }, 100).unref();
  const flowing = () => oracle.received - (samples[0] ?? 0);
  await sleep(2000);

  const log: HandOver[] = [];
  const aDelays = [0, 300, 1500, 0, 700, 2500, 100];
  const bDelays = [300, 1000, 0, 2000, 500, 0, 1500];
  /**
   * The survivor owns every partition, bounded: a dead member's partitions move
   * only after its 6 s session and a rebalance, and the next hand-over may well
   * land while they are still moving.
   */
  const settle = async (d: Daemon, ms = SETTLE_MS) => until(() => owns(d, 4) || !d.alive, ms);
  /** the current instance, or a new one when it died */
  const ensureLive = async () => {
    if (!current.alive) current = await r.start({}, { partitions: null });
  };

  for (let k = 1; k <= HANDOVERS; k++) {
    if (Date.now() - t0 > BUDGET_MS) { console.log(`time budget spent after ${k - 1} hand-overs`); break; }
    oracle.window = k;
    const started = Date.now();
    const kind = ['a', 'b', 'c'][(k - 1) % 3];
    const round = Math.floor((k - 1) / 3);
    let delayMs = 0;
    let note = '';
    let inFlight = 0;
    await ensureLive();
    if (kind === 'a') {
      delayMs = aDelays[round % aDelays.length];
      const old = current;
      const b = await r.start({}, { partitions: null });
      const got = await until(() => owns(b), 30000);
      await sleep(delayMs);
      inFlight = flowing();
      note = `join+SIGKILL: B ${got ? `owned ${b.owned()}` : 'never assigned'}, A owned ${old.owned()} when killed ${delayMs} ms after B's assignment`;
      await old.kill();
      current = b;
      await settle(current);
    } else if (kind === 'b') {
      delayMs = bDelays[round % bDelays.length];
      const old = current;
      if (round % 2 === 0) {
        await sleep(delayMs);
        inFlight = flowing();
        const stopping = old.stop(20000);
        current = await r.start({}, { partitions: null });
        const exit = await stopping.catch((e: Error) => ({ code: null, signal: e.message }));
        note = `SIGTERM alone after ${delayMs} ms, replacement spawned at once (exit ${JSON.stringify(exit)})`;
      } else {
        const b = await r.start({}, { partitions: null });
        const got = await until(() => owns(b), 30000);
        await sleep(delayMs);
        inFlight = flowing();
        const exit = await old.stop(20000).catch((e: Error) => ({ code: null, signal: e.message }));
        note = `join+SIGTERM: B ${got ? `owned ${b.owned()}` : 'never assigned'}, A stopped ${delayMs} ms after (exit ${JSON.stringify(exit)})`;
        current = b;
      }
      await settle(current);
    } else {
      const variant = round % 3;
      if (variant === 0) {
        // next to a running instance, killed at spawn (booting; never joins)
        delayMs = [0, 150, 400][Math.floor(round / 3) % 3];
        const x = await r.start({}, { partitions: null });
        await sleep(delayMs);
        inFlight = flowing();
        const joined = owns(x);
        await x.kill();
        note = `early SIGKILL next to a running instance, ${delayMs} ms after spawn (${joined ? 'had joined' : 'not yet assigned'})`;
      } else if (variant === 1) {
        // next to a running instance, killed as soon as it owns partitions (before its first commit)
        const x = await r.start({}, { partitions: null });
        const got = await until(() => owns(x), 30000);
        inFlight = flowing();
        note = `early SIGKILL next to a running instance, at its assignment (${got ? `owned ${x.owned()}` : 'never assigned'})`;
        await x.kill();
      } else {
        // the running instance is SIGKILLed, its replacement too as soon as it owns partitions, then a third takes over
        delayMs = 0;
        inFlight = flowing();
        await current.kill();
        const x = await r.start({}, { partitions: null });
        const got = await until(() => owns(x), 30000);
        const owned = x.owned();
        await x.kill();
        current = await r.start({}, { partitions: null });
        note = `SIGKILL, then its replacement SIGKILLed at its assignment (${got ? `owned ${owned}` : 'never assigned'}), a third takes over`;
      }
      await ensureLive();
      await settle(current);
    }
    const settled = owns(current, 4);
    const h = { k, kind, delayMs, note, atS: (started - t0) / 1000, ms: Date.now() - started, inFlight };
    log.push(h);
    console.log(`hand-over ${k} (${kind}) at ${h.atS.toFixed(1)} s, ${h.ms} ms: ${note}; ${inFlight} outcomes read in the 0.5 s before the kill; ${oracle.received} read so far; survivor ${settled ? 'owns all 4' : `owns ${current.owned()} so far`}`);
    await sleep(300); // outcomes flow on the survivor before the next hand-over
  }
  const windows = log.length + 1;
  await ensureLive();
  const lastOwns = await settle(current, 30000);
  clearInterval(sampler);
  stop = true;
  const sent = await produced;
  await poisoner;
  const drainMs = await r.complete(oracle, 60000).catch((e: Error) => { console.log(e.message); return -1; });
  await sleep(1500); // trailing re-publications land in the last window
  const rep = oracle.strictReport(windows);

  console.log('hand-over  kind  delay(ms)  re-published in window (copies of the original + of a duplicate)  violations found in window');
  console.log(`    0 (before the first hand-over)          ${String(rep.republishedByWindow[0].orig + rep.republishedByWindow[0].dup).padStart(6)} (${rep.republishedByWindow[0].orig} + ${rep.republishedByWindow[0].dup})  ${rep.violationsByWindow[0]}`);
  for (const h of log) {
    const w = rep.republishedByWindow[h.k];
    console.log(`  ${String(h.k).padStart(3)}  ${h.kind}  ${String(h.delayMs).padStart(6)}  ${String(w.orig + w.dup).padStart(6)} (${w.orig} + ${w.dup})  ${rep.violationsByWindow[h.k]}   ${h.note}`);
  }
  const violations = Object.values(rep.violationCounts).reduce((s, n) => s + n, 0);
  console.log(`${log.length} hand-overs in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${sent} sent; drained in ${drainMs} ms; ${oracle.summary()}; ` +
    `strict model: ${rep.commands} commands, ${rep.received} outcomes, ${rep.republishedOrig + rep.republishedDup} re-published (${rep.republishedOrig} originals, ${rep.republishedDup} duplicates), ${violations} violations ${JSON.stringify(rep.violationCounts)}`);
  for (const v of rep.examples) console.log(`  violation [${v.kind}] ${v.commandId} in window ${v.window}: ${v.detail}`);
  if (oracle.mismatches.length) console.log(`oracle mismatches:\n  ${oracle.mismatches.join('\n  ')}`);
  const errors = r.errorLines();
  if (errors.length) console.log(`${errors.length} error-level log lines, e.g. ${errors.slice(0, 3).join('\n  ')}`);

  const placeOf = (m: { headers: Record<string, string> }) => `${m.headers['source.partition']}:${m.headers['source.offset']}`;
  const lettered = () => new Set(dlq.messages.map(placeOf));
  await until(() => poisonPlaces.every((p) => lettered().has(`${p.partition}:${p.offset}`)), 30000);
  const unlettered = poisonPlaces.filter((p) => !lettered().has(`${p.partition}:${p.offset}`)).length;
  const codes = dlq.messages.reduce<Record<string, number>>((c, m) => { c[m.headers['error.code']] = (c[m.headers['error.code']] ?? 0) + 1; return c; }, {});
  console.log(`${poisonPlaces.length} poison messages sent among the commands; ${dlq.messages.length} dead letters ${JSON.stringify(codes)} (repeats only after a SIGKILL); ${unlettered} without one`);

  const storeProblems = await oracle.verifyStore(r.pg);
  console.log(`event store against the oracle: ${storeProblems.length ? storeProblems.join('; ') : 'agrees'}`);

  assert.ok(lastOwns, 'the last instance owns every partition');
  assert.ok(log.length >= 20, `only ${log.length} hand-overs`);
  assert.ok(drainMs >= 0, 'every command got its outcomes');
  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.equal(storeProblems, [], 'event store agrees with the oracle');
  assert.equal(rep.violationCounts, {}, `${violations} strict violations`);
  assert.is(unlettered, 0, 'every poison message was dead-lettered');
  assert.ok(poisonPlaces.length >= 40, `poison was sent all along (${poisonPlaces.length})`);
  const exit = await current.stop();
  assert.is(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}`);
  failed = false;
});

test.run();
