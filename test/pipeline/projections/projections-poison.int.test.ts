/**
 * One bad event must never stop the read models (docs/architecture.md §4). An event the
 * projector reads fine but Postgres refuses at COPY (a NUL in the owner's
 * name: text columns cannot hold it) is sent once, twice and three times
 * between the valid events of other accounts on the same partitions, and
 * again after a restart of the projector. Each copy is isolated by splitting
 * the flush, dead-lettered once to the events DLQ as POISON with its SQLSTATE,
 * and everything else is projected exactly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ProjectionFixture, type OutEvent } from '../../helpers/projections';
import { generateHistory } from '../../helpers/event-history';
import type { RunningProjector } from '../../helpers/projector';
import { encodeEnvelope } from '../../../src/codec/envelope';
import type { Delivered } from '../../helpers/kafka';

let f: ProjectionFixture | undefined;
let p: RunningProjector | undefined;

test.after(async () => {
  await p?.stop().catch(() => undefined);
  await f?.release();
});

test('a poison event sent once, twice and three times, and after a restart, is dead-lettered once per copy; the rest is projected', async () => {
  f = await ProjectionFixture.create('projpoison');
  const fx = f;
  p = await fx.startInProcess();
  const h = generateHistory({ accounts: 12, commands: 600, seed: 77 });
  await fx.insertEvents(h.map((e) => e.envelope));
  const poisonOpen = generateHistory({ accounts: 1, commands: 1, seed: 78 })[0].envelope;
  const poison = (n: number): OutEvent => ({
    key: poisonOpen.accountId,
    value: encodeEnvelope({ ...poisonOpen, data: { ...poisonOpen.data, ownerName: 'a\u0000b' } }),
    headers: { 'x-copy': String(n) },
  });

  // the valid history in four slices, poison copies between them: once, twice, three times
  const slice = Math.ceil(h.length / 4);
  const placed: Delivered[] = [];
  let copy = 0;
  for (let i = 0; i < 3; i++) {
    await fx.produceEvents(h.slice(i * slice, (i + 1) * slice));
    for (let k = 0; k <= i; k++) placed.push(...(await fx.produce([poison(copy++)])));
  }
  await fx.caughtUp(60000);
  await fx.dlq.waitFor((ms) => ms.length >= placed.length, 30000, `${placed.length} dead letters`);

  // a restart, then the last slice with more copies
  await p.stop();
  p = await fx.startInProcess();
  placed.push(...(await fx.produce([poison(copy++), poison(copy++)])));
  await fx.produceEvents(h.slice(3 * slice));
  await fx.caughtUp(60000);
  await fx.dlq.waitFor((ms) => ms.length >= placed.length, 30000, `${placed.length} dead letters`);

  const problems: string[] = [];
  for (const at of placed) {
    const letters = fx.dlq.messages.filter((m) => m.headers['source.partition'] === String(at.partition) && m.headers['source.offset'] === String(at.offset));
    if (letters.length !== 1) { problems.push(`${at.partition}:${at.offset}: ${letters.length} dead letters`); continue; }
    const d = letters[0].headers;
    if (d['error.code'] !== 'POISON' || d['error.class'] !== 'poison' || !/^22/.test(d['error.sqlstate'] ?? '')) problems.push(`${at.partition}:${at.offset}: ${JSON.stringify(d)}`);
  }
  assert.equal(problems, [], 'every poison copy dead-lettered once, as POISON with a data-exception SQLSTATE');
  assert.is(fx.dlq.messages.length, placed.length, 'nothing else dead-lettered');
  assert.equal(await fx.diffWithEventStore(), [], 'the read models are the fold of the event store');
  const { rows } = await fx.pg.query('SELECT count(*)::int AS n FROM account_projections WHERE account_id = $1', [poisonOpen.accountId]);
  assert.is(rows[0].n, 0, 'the poison account was not projected');
  const stalled = await p.metrics.registry.getSingleMetric('banking_es_pipeline_stalled')!.get();
  assert.equal(stalled.values.map((v) => [v.labels.pipeline, v.value]), [['projections', 0]], 'not stalled');
  console.log(`${h.length} events projected; ${placed.length} poison copies dead-lettered once each`);
});

test.run();
