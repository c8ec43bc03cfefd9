/**
 * Overload (docs/reliability.md §7): for 60 s the test offers commands as fast
 * as it can produce them, bounded only so the producer is never more than
 * MAX_AHEAD commands ahead of the outcomes (the mock cluster keeps ~5 MB per
 * partition; an unread command or outcome beyond that would be dropped). The
 * daemon's RSS is sampled throughout and must stay bounded, the backlog grows
 * to the bound and drains once the offer stops, no error-level line is logged,
 * and every command is answered as the oracle says, with the event store
 * agreeing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';

const OFFER_MS = 60000;
const MAX_AHEAD = 60000;
const RSS_LIMIT = 768 * 1024 * 1024;

let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('overload').join(' ')}`);
  await rig?.release();
});

const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;

test(`${OFFER_MS / 1000} s of load above capacity: bounded memory, backlog drains, all correct`, async () => {
  rig = await Rig.create({ name: 'overload' });
  const r = rig;
  const oracle = new CommandOracle({ accounts: 2000, seed: 4711, resendRate: 0.01 });
  await r.tap(oracle);
  const d = await r.start();
  await r.stream(oracle, { total: 4000, chunk: 500 });
  await r.complete(oracle, 30000);
  const baseline = d.rssBytes();

  let stop = false;
  let peak = baseline;
  let peakOutstanding = 0;
  let blockedSamples = 0;
  let samples = 0;
  const timeline: string[] = [];
  const start = Date.now();
  const sampler = setInterval(() => {
    try { peak = Math.max(peak, d.rssBytes()); } catch { /* exited: asserted below */ }
    peakOutstanding = Math.max(peakOutstanding, oracle.outstanding);
    samples++;
    if (oracle.outstanding > MAX_AHEAD - 5000) blockedSamples++;
    if (samples % 20 === 0) timeline.push(`${((Date.now() - start) / 1000).toFixed(0)}s: sent ${oracle.sent}, answered ${oracle.satisfied}, backlog ${oracle.outstanding}, rss ${mb(d.rssBytes())}`);
  }, 250);
  const sentBefore = oracle.sent;
  const answeredBefore = oracle.satisfied;
  const produced = r.stream(oracle, { stop: () => stop || Date.now() - start > OFFER_MS, chunk: 2000, maxAhead: MAX_AHEAD });
  await produced;
  stop = true;
  const offerEnd = Date.now();
  const offered = oracle.sent - sentBefore;
  const answeredDuring = oracle.satisfied - answeredBefore;
  const backlogAtEnd = oracle.outstanding;
  const drainMs = await r.complete(oracle, 120000);
  clearInterval(sampler);
  await sleep(300);
  const throughput = answeredDuring / ((offerEnd - start) / 1000);
  console.log(timeline.join('\n'));
  console.log(`offered ${offered} commands in ${((offerEnd - start) / 1000).toFixed(0)} s; answered ${throughput.toFixed(0)}/s meanwhile; backlog peak ${peakOutstanding}, ${backlogAtEnd} at the end of the offer, drained in ${drainMs} ms; producer held back by the bound in ${((100 * blockedSamples) / Math.max(1, samples)).toFixed(0)}% of samples`);
  console.log(`daemon RSS baseline ${mb(baseline)}, peak ${mb(peak)}; ${oracle.summary()}`);

  assert.ok(d.alive, 'the daemon survived');
  assert.ok(peak < RSS_LIMIT, `peak RSS ${mb(peak)} over ${mb(RSS_LIMIT)}`);
  assert.ok(peakOutstanding > MAX_AHEAD / 2, `the backlog never built up (peak ${peakOutstanding}): the offer was not above capacity`);
  assert.ok(oracle.complete, 'everything answered');
  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  const t = Date.now();
  assert.equal(await oracle.verifyStore(r.pg), [], 'event store agrees with the oracle');
  console.log(`store verified in ${Date.now() - t} ms`);
  const exit = await d.stop();
  assert.is(exit.code, 0);
  failed = false;
});

test.run();
