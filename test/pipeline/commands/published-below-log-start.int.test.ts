/**
 * A published offset below the log start (docs/operations.md): every command
 * of the partition was applied, but the outcomes of some were never
 * acknowledged, and Kafka's retention has since deleted those commands (a
 * Kafka outage longer than retention, then a restart). Their outcomes cannot
 * be published again; the partition must not stop for it. It starts at the
 * log start, says once which outcomes are lost, publishes again the ones it
 * still can, and keeps answering new commands.
 *
 * The mock cluster keeps about 5 MB per partition: seven 900 KB messages on
 * the account's partition (dead-lettered as too large) move its log start.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture, type Cmd } from '../../helpers/pipeline';

let f: PipelineFixture | undefined;
const WAIT_MS = 45000;

test.before(async () => {
  f = await PipelineFixture.create('belowlogstart');
});

test.after(async () => {
  await f?.release();
});

test('outcomes below the log start are reported lost; the partition starts at the log start and flows', async () => {
  const fx = f!;
  await fx.start();
  const a = randomUUID();
  const open = cmd.open(a, '1.00');
  const { partition } = await fx.send(open);
  await fx.outcomeFor([open], WAIT_MS);
  const big = '{"junk":"' + 'x'.repeat(900_000) + '"}';
  for (let i = 0; i < 7; i++) await fx.send({ key: a, value: big });
  const deposits: Cmd[] = Array.from({ length: 5 }, () => cmd.deposit(a, '1.00'));
  await fx.sendAll(deposits);
  await fx.outcomeFor(deposits, WAIT_MS);
  await fx.stop();

  // as after a crash while Kafka did not acknowledge any outcome: every command applied, none published
  const { rows: [stored] } = await fx.pg.query<{ next: number }>(
    'UPDATE consumer_offsets SET published_offset = 0 WHERE consumer = $1 AND topic = $2 AND partition = $3 RETURNING next_offset::int AS next',
    [fx.group, fx.topics.commands, partition]);
  const published = fx.outcomes.messages.length;
  const d = await fx.start();
  const lost = d.logs().find((l) => (l.level ?? 0) >= 50 && /cannot be published again/.test(String(l.msg)) && l.partition === partition);
  assert.ok(lost, 'an error says which outcomes are lost');
  const logStart = lost.logStart as number;
  assert.ok(logStart > 0 && logStart <= stored.next, `log start ${logStart}, applied up to ${stored.next}`);
  assert.is(lost.from, 0);

  // the partition flows: a new command of the same account is answered, on the state Postgres holds
  const more = cmd.deposit(a, '1.00');
  await fx.send(more);
  const [o] = await fx.outcomeFor([more], WAIT_MS);
  assert.equal([o.status, o.version, o.balance], ['accepted', 7, '7.00']);
  assert.is(await d.metric(`banking_es_partitions_stopped{topic="${fx.topics.commands}"}`), 0);
  assert.is((await d.get('/readyz')).status, 200);
  // the deposits above the log start were published again, as first answered
  const again = fx.outcomes.messages.slice(published).map((m) => m.value).filter((v) => deposits.some((c) => c.commandId === v.commandId));
  assert.equal(again.map((v) => [v.status, v.version]), [['accepted', 2], ['accepted', 3], ['accepted', 4], ['accepted', 5], ['accepted', 6]]);
  assert.not.ok(fx.outcomes.messages.slice(published).some((m) => m.value.commandId === open.commandId), 'the open is below the log start: lost');
  assert.not.ok(d.logs().some((l) => /OFFSET_OUT_OF_RANGE/.test(String(l.msg))));
  assert.is(d.logs().filter((l) => /cannot be published again/.test(String(l.msg))).length, 1, 'said once');
});

test('commands below the log start that were never applied still stop the partition', async () => {
  const fx = f!;
  await fx.stop();
  const { rows: [row] } = await fx.pg.query<{ partition: number }>(
    `UPDATE consumer_offsets SET next_offset = 0, published_offset = 0 WHERE consumer = $1 AND topic = $2
      AND partition = (SELECT partition FROM consumer_offsets WHERE consumer = $1 AND topic = $2 ORDER BY next_offset DESC LIMIT 1) RETURNING partition`,
    [fx.group, fx.topics.commands]);
  const d = await fx.start();
  await d.until(async () => (await d.metric(`banking_es_partitions_stopped{topic="${fx.topics.commands}"}`)) === 1, 15000, 'the partition to stop');
  assert.ok(d.logs().some((l) => /OFFSET_OUT_OF_RANGE/.test(String(l.msg)) && l.partition === row.partition), 'commands were lost: stopped, never reset');
  assert.not.ok(d.logs().some((l) => /cannot be published again/.test(String(l.msg))));
  assert.is((await d.get('/readyz')).status, 503);
});

test.run();
