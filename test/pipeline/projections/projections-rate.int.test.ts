/**
 * How fast the projection pipeline projects, in process, on the test stack
 * (Kafka mock cluster, embedded Postgres): a 50k-event backlog drained from
 * the first commit to the last, then 50k events timed from the first
 * produce to the last commit. Prints both rates; asserts only a floor that
 * catches a collapse, and that the result equals the fold of the event store.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ProjectionFixture } from '../../helpers/projections';
import { generateHistory } from '../../helpers/event-history';

const N = 50000;
let f: ProjectionFixture;

test.before(async () => {
  f = await ProjectionFixture.create('rate');
});

test.after(async () => {
  await f?.release();
});

test(`projects ${N} backlogged and ${N} live events; the result equals the fold`, async () => {
  const h = generateHistory({ accounts: 10000, commands: 2 * N + 25000, seed: 31 });
  assert.ok(h.length >= 2 * N, `history of ${h.length} events`);
  const backlog = h.slice(0, N);
  const live = h.slice(N, 2 * N); // a prefix of a history is a history: per account, versions stay contiguous
  await f.insertEvents([...backlog, ...live].map((e) => e.envelope));

  await f.produceEvents(backlog);
  const p = await f.startInProcess();
  try {
    let first = 0;
    let firstAt = 0;
    const deadline = Date.now() + 120000;
    for (;;) {
      const c = await f.committedTotal();
      if (c > 0 && firstAt === 0) { first = c; firstAt = Date.now(); }
      if (c >= N) break;
      if (Date.now() > deadline) throw new Error(`backlog not drained: ${c}/${N}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const drainMs = Date.now() - firstAt;
    const drainRate = (N - first) / Math.max(0.001, drainMs / 1000);

    const t0 = Date.now();
    await f.produceEvents(live);
    const producedMs = Date.now() - t0;
    await f.caughtUp(120000);
    const liveMs = Date.now() - t0;
    const liveRate = N / (liveMs / 1000);
    console.log(`backlog: ${N - first} events in ${drainMs} ms after the first commit = ${Math.round(drainRate)} events/s`);
    console.log(`live: ${N} events produced in ${producedMs} ms, all committed after ${liveMs} ms = ${Math.round(liveRate)} events/s produce-to-commit`);
    assert.ok(drainRate > 2000 && liveRate > 2000, 'far below any plausible rate: something is wrong');
  } finally {
    await p.stop();
  }
  const diffs = await f.diffWithEventStore();
  assert.equal(diffs.slice(0, 5), [], `${diffs.length} differences`);
});

test.run();
