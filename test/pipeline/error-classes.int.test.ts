/**
 * Each error class (src/errors.ts, docs/architecture.md §4) caused for real against a
 * running daemon, and what the command pipeline does with it (the poison
 * class, caused by the bytes of a message, is in hostile-resend):
 *   transient - a lock held past statement_timeout (57014): retried with
 *               backoff; past pipeline.maxRetries the role is stalled (/readyz
 *               503 with the SQLSTATE, banking_es_pipeline_stalled 1); it
 *               recovers on its own when the lock goes;
 *   conflict  - another writer holds the same (account, command) key
 *               uncommitted, then commits (23505): the batch is redone from
 *               Postgres and the command answered `duplicate` of that write;
 *   poison that is not one message's: a constraint every rejection row
 *               violates (23514): the batch is narrowed down, but a known-good
 *               batch fails the same way, so nothing is dead-lettered; the
 *               pipeline stalls and recovers when the constraint goes;
 *   fatal     - a table dropped (42P01): the role stops at once, not ready,
 *               retries nothing, and still shuts down cleanly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { cmd, PipelineFixture } from '../helpers/pipeline';
import type { Daemon } from '../helpers/daemon';
import { sleep } from '../helpers/reliability';

let f: PipelineFixture | undefined;
const others: Client[] = [];
let failed = true;

test.after(async () => {
  if (failed) console.log(f?.daemon?.logs().filter((l) => (l.level ?? 0) >= 40).map((l) => JSON.stringify(l).slice(0, 400)).join('\n'));
  for (const c of others) await c.end().catch(() => undefined);
  await f?.release();
});

async function session(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  others.push(c);
  return c;
}

async function metric(d: Daemon, line: string): Promise<number> {
  const found = (await d.get('/metrics')).body.split('\n').filter((l) => l.startsWith(line));
  return found.reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

test('transient, conflict and fatal failures are each acted on by their class', async () => {
  f = await PipelineFixture.create('errclass');
  const fx = f;
  const d = await fx.start({ DB_STATEMENT_TIMEOUT_MS: '700', PIPELINE_MAX_RETRIES: '3' });
  const a = randomUUID();
  const b = randomUUID();
  const opens = [cmd.open(a, '10.00'), cmd.open(b, '10.00')];
  await fx.sendAll(opens);
  await fx.outcomeFor(opens, 30000);
  assert.is((await d.get('/readyz')).status, 200);

  // transient: every statement on events waits for a lock past statement_timeout
  const locker = await session(fx.db.url);
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
  const blocked = cmd.deposit(a, '1.00');
  await fx.send(blocked);
  const stalled = await d.untilReadyz((s, body) => s === 503 && body.includes('commands-pipeline') && body.includes('57014'), 60000, 'a stalled commands pipeline');
  assert.match(stalled.body, /stalled since .* transient 57014/);
  assert.is(await metric(d, 'banking_es_pipeline_stalled{pipeline="commands"}'), 1);
  assert.ok(await metric(d, 'banking_es_retries_total{component="commands",code="57014"}') >= 4, 'retried past pipeline.maxRetries');
  assert.is((await d.get('/healthz')).status, 200, 'alive all along');
  await locker.query('ROLLBACK');
  const [afterLock] = await fx.outcomeFor([blocked], 30000);
  assert.is(afterLock.status, 'accepted');
  await d.untilReadyz((s) => s === 200, 10000, 'ready again');
  assert.is(await metric(d, 'banking_es_pipeline_stalled{pipeline="commands"}'), 0);

  // conflict: another writer inserts the same command for b and holds it uncommitted
  const commandId = randomUUID();
  const writer = await session(fx.db.url);
  await writer.query('BEGIN');
  await writer.query(
    `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
     VALUES ($1, 2, $2, 'MoneyDeposited', $3::jsonb, $4, now())`,
    [b, randomUUID(), JSON.stringify({ data: { amount: '700', balanceAfter: '1700', currency: 'USD' } }), commandId],
  );
  const conflicts0 = await metric(d, 'banking_es_occ_conflicts_total');
  await fx.send({ ...cmd.deposit(b, '5.00'), commandId });
  const waiting = async () => (await writer.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).rows[0].n;
  const deadline = Date.now() + 20000;
  while ((await waiting()) === 0) {
    if (Date.now() > deadline) throw new Error('the daemon never waited on the held key');
    await sleep(20);
  }
  await writer.query('COMMIT');
  const [dup] = await fx.outcomeFor([{ commandId, accountId: b, type: 'Deposit' }], 30000);
  assert.equal({ status: dup.status, originalStatus: dup.originalStatus, version: dup.version, balance: dup.balance }, { status: 'duplicate', originalStatus: 'accepted', version: 2, balance: '17.00' });
  assert.ok((await metric(d, 'banking_es_occ_conflicts_total')) > conflicts0, 'counted as a conflict');
  assert.is((await fx.events(b)).length, 2, 'no second effect');

  // a fault of the schema, not of a message: every rejection row now violates a constraint (23514, a
  // "poison" SQLSTATE). The batch is narrowed down to one message, but a known-good batch fails the same
  // way, so nothing is dead-lettered: the pipeline retries, stalls, and recovers when the schema does.
  const dlqBefore = fx.dlqMessages().length;
  await fx.pg.query('ALTER TABLE command_rejections ADD CONSTRAINT no_rejections_for_now CHECK (false) NOT VALID');
  const overdraw = [cmd.withdraw(a, '1000.00'), cmd.deposit(a, '0.50')];
  await fx.sendAll(overdraw);
  const schemaStall = await d.untilReadyz((st, body) => st === 503 && body.includes('23514'), 60000, 'a stall on the schema fault');
  assert.match(schemaStall.body, /stalled since .* unknown 23514/);
  await sleep(1000);
  assert.is(fx.dlqMessages().length, dlqBefore, 'nothing dead-lettered for a fault of the schema');
  await fx.pg.query('ALTER TABLE command_rejections DROP CONSTRAINT no_rejections_for_now');
  const [rejected, deposited] = await fx.outcomeFor(overdraw, 30000);
  assert.equal([rejected.status, rejected.reason, deposited.status], ['rejected', 'INSUFFICIENT_FUNDS', 'accepted']);
  await d.untilReadyz((st) => st === 200, 10000, 'ready again after the schema fault');

  // fatal: a table the pipeline needs is gone
  await fx.pg.query('DROP TABLE command_rejections');
  await fx.send(cmd.deposit(a, '1.00'));
  const fatal = await d.untilReadyz((s, body) => s === 503 && body.includes('42P01'), 30000, 'a fatal stop');
  assert.match(fatal.body, /fatal 42P01/);
  assert.is(await metric(d, 'banking_es_pipeline_stalled{pipeline="commands"}'), 1);
  await sleep(3000);
  assert.is(await metric(d, 'banking_es_retries_total{component="commands",code="42P01"}'), 1, 'a fatal error is not retried');
  assert.is(await metric(d, 'banking_es_consumer_paused{pipeline="commands"}'), 1, 'consumption is paused');
  const fatalLogs = d.logs().filter((l) => typeof l.msg === 'string' && l.msg.includes('fatal error'));
  assert.is(fatalLogs.length, 1, 'logged once');
  const exit = await d.stop();
  assert.is(exit.code, 0, `a halted role still shuts down cleanly: ${JSON.stringify(exit)}`);
  fx.daemon = undefined;
  failed = false;
});

test.run();
