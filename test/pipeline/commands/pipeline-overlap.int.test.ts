/**
 * Batch N+1 is decided while batch N commits (src/pipeline/commit-chain.ts, src/pipeline/commands/command-role.ts).
 * When N does not commit what it was decided into, N+1 must be decided again:
 * nothing else fences a decision taken on a state that never became final.
 *
 * The case: after a restart (empty Bloom filter, no Redis, cold caches) a
 * re-sent deposit is first decided as new (balance 150 -> 200), then meets
 * the unique key at commit and is redone as a duplicate (balance stays 150).
 * The withdrawal of 180 right behind it, in the next one-message batch, was
 * decided on 200 and accepted; decided again on 150 it is rejected. Without
 * the fence its event would commit at version 4 over a gap, which no key
 * catches.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture } from '../../helpers/pipeline';

const WAIT_MS = 45000;
const ACCOUNTS = 20;
let f: PipelineFixture;

test.before(async () => {
  // one message per batch, so the re-send and the withdrawal are consecutive batches
  f = await PipelineFixture.create('pipeline_overlap', { PIPELINE_BATCH_SIZE: '1', PIPELINE_BATCH_TIME_MS: '1', REDIS_URL: '' });
  await f.start();
});

test.after(async () => {
  await f?.release();
});

/** ACCOUNTS new accounts opened with 100.00, then a deposit of 50.00 to each, committed. */
async function openedWithDeposits() {
  const accounts = Array.from({ length: ACCOUNTS }, () => randomUUID());
  const opens = accounts.map((a) => cmd.open(a, '100.00'));
  const deposits = accounts.map((a) => cmd.deposit(a, '50.00'));
  await f.sendAll(opens);
  await f.outcomeFor(opens, WAIT_MS);
  await f.sendAll(deposits);
  const first = await f.outcomeFor(deposits, WAIT_MS);
  assert.ok(first.every((o) => o.status === 'accepted' && o.balance === '150.00'));
  return { accounts, deposits };
}

test('a batch decided on a predecessor that was redone is decided again', async () => {
  const { accounts, deposits } = await openedWithDeposits();

  await f.restart();
  const withdrawals = accounts.map((a) => cmd.withdraw(a, '180.00'));
  await f.sendAll(accounts.flatMap((_, i) => [deposits[i], withdrawals[i]]));
  const again = await f.outcomeFor(deposits, WAIT_MS, 2);
  const ws = await f.outcomeFor(withdrawals, WAIT_MS);
  for (let i = 0; i < ACCOUNTS; i++) {
    assert.equal([again[i].status, again[i].originalStatus, again[i].version, again[i].balance], ['duplicate', 'accepted', 2, '150.00'], `re-sent deposit ${i}`);
    assert.equal([ws[i].status, ws[i].reason], ['rejected', 'INSUFFICIENT_FUNDS'], `withdrawal ${i}: decided on the redone state`);
    const evs = await f.events(accounts[i]);
    assert.equal(evs.map((e) => e.version), [1, 2], `events of account ${i}`);
  }
});

test('a re-send right behind its original finds it among the outcomes still committing, without a redo', async () => {
  const d = await f.restart();
  const accounts = Array.from({ length: ACCOUNTS }, () => randomUUID());
  const opens = accounts.map((a) => cmd.open(a, '10.00'));
  const deposits = accounts.map((a) => cmd.deposit(a, '5.00'));
  await f.sendAll(opens);
  await f.outcomeFor(opens, WAIT_MS);
  const conflictsBefore = (await d.metric('banking_es_occ_conflicts_total')) ?? 0;
  await f.sendAll(accounts.flatMap((_, i) => [deposits[i], deposits[i]]));
  const os = await f.outcomeFor(deposits, WAIT_MS, 2);
  for (let i = 0; i < ACCOUNTS; i++) {
    const [o1, o2] = f.outcomesOf(deposits[i].commandId);
    assert.equal([o1.status, o1.version, o1.balance], ['accepted', 2, '15.00'], `deposit ${i}`);
    assert.equal([o2.status, o2.originalStatus, o2.version, o2.balance], ['duplicate', 'accepted', 2, '15.00'], `re-send ${i}`);
    assert.is(os[i].status, 'duplicate');
  }
  assert.is((await d.metric('banking_es_occ_conflicts_total')) ?? 0, conflictsBefore, 'no batch met a key at commit');
});

test('after a redone batch, the batches behind it are prepared ahead again', async () => {
  const { accounts, deposits } = await openedWithDeposits();
  // cold again: the re-sent deposits are decided as new and redone at commit (a key someone holds)
  const d = await f.restart();
  const conflicts = (await d.metric('banking_es_occ_conflicts_total')) ?? 0;
  await f.sendAll(deposits);
  await f.outcomeFor(deposits, WAIT_MS, 2);
  assert.ok(((await d.metric('banking_es_occ_conflicts_total')) ?? 0) > conflicts, 'the re-sends were redone');

  const stage = async (s: string) => (await d.metric(`banking_es_pipeline_stage_seconds_count{pipeline="commands",stage="${s}"}`)) ?? 0;
  const before = { batch: await stage('batch'), wait: await stage('wait') };
  const more = accounts.map((a) => cmd.deposit(a, '1.00'));
  await f.sendAll(more);
  const os = await f.outcomeFor(more, WAIT_MS);
  assert.ok(os.every((o) => o.status === 'accepted' && o.balance === '151.00'));
  const batches = (await stage('batch')) - before.batch;
  const waited = (await stage('wait')) - before.wait;
  assert.ok(batches >= ACCOUNTS, `one message per batch: ${batches} batches`);
  // a batch committed from a preparation made ahead observes `wait`; one whose preparation was dropped does not
  assert.is(waited, batches, 'every later batch committed from a preparation made ahead, none prepared twice inside its commit');
});

test.run();
