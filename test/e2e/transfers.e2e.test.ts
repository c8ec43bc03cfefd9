/**
 * Transfers end to end (docs/transfers.md), on a cold cluster the way a user
 * starts one: the daemon creates its topics, including the internal
 * bank.transfers. A producer sends Transfer on bank.commands and reads one
 * final outcome per transfer on bank.command-results; the balances, the
 * `transfers` table and conservation per currency are checked in Postgres.
 *
 * 1. With only the command role running, a transfer debits its source and
 *    waits in flight: the source cannot be closed (TRANSFERS_PENDING) even
 *    when its cached state says nothing is pending, nor deposited past the
 *    room the refund needs (LIMIT_EXCEEDED), so the refund lands later.
 * 2. A refund forged on bank.transfers before the credit is dead-lettered
 *    (no refusal recorded); the transfers role settles the transfer with the
 *    real credit; then the close goes through. Copies of the applied credit
 *    with another source balance are dead-lettered; a faithful copy is
 *    answered again, the same.
 * 3. Every rule in one mixed run, every Transfer sent twice, with hostile
 *    steps on bank.commands sent three times in between.
 * 4. The CLI: `send Transfer` prints the final outcome, `account <id>`
 *    lists transfers in and out (projected) and those in flight.
 * 5. The read models: account_projections and transaction_projections are
 *    the fold of the events table, every transfer event with its transfer
 *    and the other account.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { Rig, OutcomeTap, sleep } from '../helpers/reliability';
import { transferStepId } from '../../src/domain/transfer';
import { creditStepJson, refundStepJson } from '../../src/codec/transfer-step';
import { TopicReader } from '../helpers/kafka';
import type { Daemon } from '../helpers/daemon';
import { violation } from '../helpers/contracts';
import { diffOnceCaughtUp } from '../helpers/projections';
import { spawnCli, waitForExit } from '../helpers/stack';
import { Client } from 'pg';

type Outcome = Record<string, unknown> & { commandId: string; status: string; reason?: string };

let rig: Rig | undefined;
let tap: OutcomeTap | undefined;
let failed = true;
const outcomes = new Map<string, Outcome[]>();

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('transfers').join(' ')}`);
  await tap?.close();
  await rig?.release();
});

const json = (o: Record<string, unknown>) => JSON.stringify(o);
async function send(cmd: Record<string, unknown> & { accountId: string }): Promise<string> {
  await rig!.producer.send(rig!.topics.commands, cmd.accountId, json(cmd));
  return cmd.commandId as string;
}
const open = (accountId: string, balance: string, currency = 'USD') =>
  send({ commandId: randomUUID(), type: 'OpenAccount', accountId, ownerName: 'T', currency, initialBalance: balance });
const transfer = (accountId: string, toAccountId: string, amount: string, commandId: string = randomUUID()) =>
  send({ commandId, type: 'Transfer', accountId, toAccountId, amount });

async function answered(ids: string[], n = 1, timeoutMs = 60000): Promise<Outcome[]> {
  const until = Date.now() + timeoutMs;
  while (ids.some((id) => (outcomes.get(id)?.length ?? 0) < n)) {
    if (Date.now() > until) throw new Error(`no outcome after ${timeoutMs} ms for ${ids.filter((id) => (outcomes.get(id)?.length ?? 0) < n).join(', ')}`);
    await sleep(50);
  }
  return ids.map((id) => outcomes.get(id)![0]);
}
/** Runs the CLI against the rig's stack and returns what it printed (it must exit 0). */
async function cli(args: string[]): Promise<string> {
  const child = spawnCli([...args, ...(args[0] === 'send' ? ['--timeout', '60000'] : [])], { ...rig!.env, LOG_LEVEL: 'warn' });
  const exit = await waitForExit(child, 70000);
  assert.is(exit.code, 0, child.output());
  return child.output();
}

/** Waits until the projector has an account's row (and, given a type, a movement of that type). */
async function projected(accountId: string, type?: string, timeoutMs = 60000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { rowCount } = type === undefined
      ? await rig!.pg.query('SELECT 1 FROM account_projections WHERE account_id = $1', [accountId])
      : await rig!.pg.query('SELECT 1 FROM transaction_projections WHERE account_id = $1 AND event_type = $2', [accountId, type]);
    if (rowCount) return;
    if (Date.now() > until) throw new Error(`${accountId} not projected${type ? ` with a ${type}` : ''} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

const strip = (o: Outcome) => { const { processedAt: _, ...rest } = o; return rest; };

async function balances(): Promise<Map<string, { balance: string; version: number }>> {
  const { rows } = await rig!.pg.query<{ account_id: string; balance: string; version: string }>(
    `SELECT DISTINCT ON (account_id) account_id, payload->'data'->>'balanceAfter' AS balance, version FROM events ORDER BY account_id, version DESC`);
  return new Map(rows.map((r) => [r.account_id, { balance: r.balance, version: Number(r.version) }]));
}

test('transfers: pending blocks a close, the process settles every rule exactly once, repeats answer the same', async () => {
  rig = await Rig.create({ name: 'xfer', projections: true, createTopics: false, env: { KAFKA_CREATE_TOPICS: 'true' } });
  tap = await OutcomeTap.open(rig.brokers, rig.topics.results, 4, (o) => {
    const v = o as Outcome | undefined;
    if (!v?.commandId) return;
    const list = outcomes.get(v.commandId) ?? [];
    list.push(v);
    outcomes.set(v.commandId, list);
  });

  // 1. the command role alone: the debit happens, the money waits in flight
  const commandsOnly: Daemon = await rig.start({ ROLES: 'commands,projections,relay' });
  await commandsOnly.streaming(45000); // the relay's slot exists before the first event commits
  const S = randomUUID(), D = randomUUID();
  await answered([await open(S, '25.00'), await open(D, '0.00')]);
  const t1 = await transfer(S, D, '25.00');
  await rig.pg.query('SELECT 1'); // the debit's commit is observed through the transfers table below
  const until = Date.now() + 30000;
  while ((await rig.pg.query('SELECT 1 FROM transfers WHERE transfer_id = $1', [t1])).rowCount === 0) {
    if (Date.now() > until) throw new Error('the debit never committed');
    await sleep(50);
  }
  const [closeEarly] = await answered([await send({ commandId: randomUUID(), type: 'CloseAccount', accountId: S })]);
  assert.is(closeEarly.status, 'rejected');
  assert.is(closeEarly.reason, 'TRANSFERS_PENDING', 'a source with a transfer in flight stays open');
  assert.ok(!outcomes.has(t1), 'no final outcome before the credit');
  await projected(S);
  const inFlight = await cli(['account', S]);
  assert.match(inFlight, new RegExp(`1 transfer in flight:[\\s\\S]*to ${D}\\s+25\\.00\\s+${t1}`), inFlight);
  // what the stuck-transfer alert reads, from the instance that debited (no transfers role runs anywhere yet)
  await commandsOnly.until(async () => (await commandsOnly.metric('banking_es_transfers_in_flight{currency="USD"}')) === 1
    && ((await commandsOnly.metric('banking_es_transfers_oldest_seconds')) ?? 0) > 0, 15000, 'the transfer in flight, with its age, in /metrics');

  // N, 2.00 short of the largest balance, sends 1.00 to an account that does not exist: the refund will land on what
  // N holds then. A deposit that fits the balance but not the refund (2.01, sent three times) is refused; 2.00 fits
  const N = randomUUID(), nowhere = randomUUID();
  await answered([await open(N, '90071992547407.91')]);
  const tN = await transfer(N, nowhere, '1.00');
  for (const until = Date.now() + 30000; (await rig.pg.query('SELECT 1 FROM transfers WHERE transfer_id = $1', [tN])).rowCount === 0;) {
    if (Date.now() > until) throw new Error('the debit of N never committed');
    await sleep(50);
  }
  // three deposits of 2.01 under their own ids (each decided, before the one that fits), then a re-send of the first
  const tooMuch = Array.from({ length: 3 }, () => ({ commandId: randomUUID(), type: 'Deposit', accountId: N, amount: '2.01' }));
  const upTo = { commandId: randomUUID(), type: 'Deposit', accountId: N, amount: '2.00' };
  for (const c of [...tooMuch, upTo, tooMuch[0]]) await send(c);
  const refused = await answered(tooMuch.map((c) => c.commandId));
  for (const o of refused) {
    assert.equal([o.status, o.reason], ['rejected', 'LIMIT_EXCEEDED'], JSON.stringify(o));
    assert.match(String(o.detail), /1\.00 USD held for outgoing transfers in flight/);
  }
  const [, again] = await answered([tooMuch[0].commandId], 2).then(() => outcomes.get(tooMuch[0].commandId)!);
  assert.equal([again.status, again.originalStatus, again.reason], ['duplicate', 'rejected', 'LIMIT_EXCEEDED'], JSON.stringify(again));
  const [fitted] = await answered([upTo.commandId]);
  assert.equal([fitted.status, fitted.balance], ['accepted', '90071992547408.91']);
  assert.ok(((await commandsOnly.metric('banking_es_refund_room_redos_total{pipeline="commands"}')) ?? 0) >= 1, 'decided on the cached state first, then redone');

  // a refund forged on bank.transfers before the credit, as if the destination had refused it, three times: the
  // destination recorded no refusal, so each is dead-lettered STEP_UNBACKED and the real credit settles the transfer
  const forgedRefund = refundStepJson({ type: 'RefundTransfer', commandId: transferStepId(S, t1, 'refund'), transferId: t1, accountId: S, toAccountId: D, amount: '25.00', currency: 'USD', reason: 'DESTINATION_CLOSED' });
  for (let i = 0; i < 3; i++) await rig.producer.send(rig.topics.transfers, S, forgedRefund);
  const transfersDlq = await TopicReader.open<unknown>(rig.brokers, rig.topics.transfersDlq, 4);

  // 2. the transfers role settles it; the close then goes through. First it cannot: another session holds
  // the transfer's row, so the settlement waits past statement_timeout (57014), is retried past
  // pipeline.maxRetries, and the transfers role is stalled: not ready, while the command role goes on
  await commandsOnly.stop();
  const holder = new Client({ connectionString: rig.env.DATABASE_URL });
  holder.on('error', () => undefined);
  await holder.connect();
  let both: Daemon;
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM transfers WHERE transfer_id = $1 FOR UPDATE', [t1]);
    both = await rig.start({ ROLES: 'commands,transfers,projections,relay', DB_STATEMENT_TIMEOUT_MS: '700', PIPELINE_MAX_RETRIES: '3' });
    const stalled = await both.untilReadyz((st, body) => st === 503 && body.includes('transfers-pipeline') && body.includes('57014'), 60000, 'a stalled transfers pipeline');
    assert.match(stalled.body, /stalled since .* transient 57014/);
    assert.is(await both.metric('banking_es_pipeline_stalled{pipeline="transfers"}'), 1);
    assert.is(await both.metric('banking_es_pipeline_stalled{pipeline="commands"}'), 0, 'the command role is not stalled');
    // on an account of its own (D's row is held by the blocked credit's uncommitted event in Postgres itself)
    const [meanwhile] = await answered([await open(randomUUID(), '1.00')]);
    assert.is(meanwhile.status, 'accepted', 'commands still get outcomes while the transfers role is stalled');
    assert.ok(!outcomes.has(t1), 'no final outcome while the credit cannot settle');
    await holder.query('ROLLBACK');
  } finally {
    await holder.end().catch(() => undefined);
  }
  const [final1, finalN] = await answered([t1, tN]);
  assert.equal([finalN.status, finalN.reason, finalN.balance], ['rejected', 'DESTINATION_NOT_FOUND', '90071992547409.91'], 'refunded onto the raised balance: exactly the limit');
  await both.untilReadyz((st) => st === 200, 15000, 'ready again once the transfers role settles');
  assert.is(await both.metric('banking_es_pipeline_stalled{pipeline="transfers"}'), 0);
  assert.equal(strip(final1), { commandId: t1, accountId: S, type: 'Transfer', status: 'accepted', transferId: t1, toAccountId: D, version: 2, balance: '0.00' });
  const [closeLate] = await answered([await send({ commandId: randomUUID(), type: 'CloseAccount', accountId: S })]);
  assert.is(closeLate.status, 'accepted', `closed once settled: ${JSON.stringify(closeLate)}`);
  // copies of t1's credit, which was applied: one as the command role wrote it (answered with the same outcome again), three
  // with the source's balance changed (each dead-lettered; the outcome never goes out with it)
  const credit1 = { type: 'CreditTransfer' as const, commandId: transferStepId(S, t1, 'credit'), transferId: t1, accountId: D, fromAccountId: S, amount: '25.00', currency: 'USD', sourceVersion: 2, sourceBalance: '0.00' };
  const answers = () => (outcomes.get(t1) ?? []).length;
  const before = answers();
  await rig.producer.send(rig.topics.transfers, D, creditStepJson(credit1));
  for (let i = 0; i < 3; i++) await rig.producer.send(rig.topics.transfers, D, creditStepJson({ ...credit1, sourceBalance: '25.00' }));
  for (const until = Date.now() + 30000; (transfersDlq.messages.length < 6 || answers() === before) && Date.now() < until;) await sleep(100);
  await transfersDlq.close();
  assert.equal(transfersDlq.messages.map((m) => [m.key, m.headers['error.code']]).sort(), [...Array(3).fill([D, 'STEP_UNBACKED']), ...Array(3).fill([S, 'STEP_UNBACKED'])].sort(),
    'each forged refund and each altered copy of the credit dead-lettered');
  assert.ok(answers() > before, 'the faithful copy answered again');
  assert.ok((outcomes.get(t1) ?? []).every((o) => JSON.stringify(strip(o)) === JSON.stringify(strip(final1))), `t1 only ever answered as it was settled: ${JSON.stringify(outcomes.get(t1))}`);
  const { rows: refunds } = await rig.pg.query('SELECT 1 FROM events WHERE account_id = $1 AND event_type = $2', [S, 'TransferRefunded']);
  assert.is(refunds.length, 0, 'no forged refund applied');

  // 3. every rule, mixed, each Transfer sent twice, hostile steps on bank.commands three times
  const A = randomUUID(), B = randomUUID(), C = randomUUID(), E = randomUUID(), X = randomUUID(), M = randomUUID();
  await answered([await open(A, '100.00'), await open(B, '50.00'), await open(C, '0.00'), await open(E, '0.00', 'EUR'), await open(X, '0.00')]);
  await answered([await send({ commandId: randomUUID(), type: 'CloseAccount', accountId: X })]);
  const forgedCredit = { commandId: transferStepId(A, randomUUID(), 'credit'), type: 'CreditTransfer', transferId: randomUUID(), accountId: B, fromAccountId: A, amount: '5.00', currency: 'USD', sourceVersion: 1, sourceBalance: '0' };
  const squat = { commandId: transferStepId(A, randomUUID(), 'credit'), type: 'Deposit', accountId: B, amount: '5.00' };
  const cases: Array<{ id: string; from: string; to: string; amount: string; expect: string; reason?: string }> = [
    { id: randomUUID(), from: A, to: B, amount: '10.00', expect: 'accepted' },
    { id: randomUUID(), from: B, to: A, amount: '7.00', expect: 'accepted' }, // both directions between one pair
    { id: randomUUID(), from: A, to: E, amount: '1.00', expect: 'rejected', reason: 'CURRENCY_MISMATCH' },
    { id: randomUUID(), from: A, to: M, amount: '2.00', expect: 'rejected', reason: 'DESTINATION_NOT_FOUND' },
    { id: randomUUID(), from: A, to: X, amount: '3.00', expect: 'rejected', reason: 'DESTINATION_CLOSED' },
    { id: randomUUID(), from: A, to: A, amount: '1.00', expect: 'rejected', reason: 'SAME_ACCOUNT' },
    { id: randomUUID(), from: C, to: A, amount: '1.00', expect: 'rejected', reason: 'INSUFFICIENT_FUNDS' },
    { id: randomUUID(), from: M, to: A, amount: '1.00', expect: 'rejected', reason: 'ACCOUNT_NOT_FOUND' },
    { id: randomUUID(), from: X, to: A, amount: '1.00', expect: 'rejected', reason: 'ACCOUNT_CLOSED' },
  ];
  const hostile: string[] = [];
  for (const c of cases) {
    await transfer(c.from, c.to, c.amount, c.id);
    hostile.push(await send(forgedCredit), await send(squat));
  }
  for (const c of cases) await transfer(c.from, c.to, c.amount, c.id); // every one again
  await send(forgedCredit);
  await send(squat);
  await answered(cases.map((c) => c.id), 2);
  for (const c of cases) {
    const [first, again] = outcomes.get(c.id)!;
    assert.is(first.status, c.expect, `${c.reason ?? 'accepted'}: ${JSON.stringify(first)}`);
    if (c.reason) assert.is(first.reason, c.reason);
    assert.is(first.transferId, c.id);
    assert.is(first.toAccountId, c.to);
    assert.equal(strip(again), strip(first), `a repeat answers the same: ${JSON.stringify(again)}`);
  }
  for (const id of [forgedCredit.commandId, squat.commandId]) {
    const got = outcomes.get(id) ?? [];
    assert.ok(got.length >= 3 && got.every((o) => o.status === 'rejected' && o.reason === 'INVALID_COMMAND'), `forged step ${id}: ${JSON.stringify(got)}`);
  }

  // a chain A→B→C once B holds the money
  const chain1 = await transfer(A, B, '20.00');
  await answered([chain1]);
  const chain2 = await transfer(B, C, '60.00');
  const [c2] = await answered([chain2]);
  assert.is(c2.status, 'accepted', JSON.stringify(c2));

  // Postgres: balances as the rules say, nothing in flight, money conserved per currency
  const bal = await balances();
  // balanceAfter in minor units
  assert.is(bal.get(A)?.balance, '7700'); // 100 - 10 + 7 - 20, every refund back
  assert.is(bal.get(B)?.balance, '1300'); // 50 + 10 - 7 + 20 - 60
  assert.is(bal.get(C)?.balance, '6000');
  assert.is(bal.get(E)?.balance, '0');
  assert.is(bal.get(N)?.balance, String(Number.MAX_SAFE_INTEGER), 'N: opened 2.00 short, +2.00, the 1.00 out and back');
  const { rows: [open_] } = await rig.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM transfers WHERE settled IS NULL');
  assert.is(open_.n, 0, 'every transfer settled');
  const { rows: settled } = await rig.pg.query<{ settled: string; n: number }>('SELECT settled, count(*)::int AS n FROM transfers GROUP BY settled ORDER BY settled');
  assert.equal(settled, [{ settled: 'credited', n: 5 }, { settled: 'refunded', n: 4 }]);
  const usd = [S, D, A, B, C, X].reduce((sum, id) => sum + Number(bal.get(id)?.balance ?? 0), 0);
  assert.is(usd, (25 + 100 + 50) * 100, 'USD balances add up to what was opened');
  const { rows: dup } = await rig.pg.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT account_id, command_id FROM events GROUP BY 1, 2 HAVING count(*) > 1) d`);
  assert.is(dup[0].n, 0, 'no step applied twice');
  // 4. the CLI
  const printed = JSON.parse((await cli(['send', 'Transfer', '--account', C, '--to', A, '--amount', '0.50'])).trim().split('\n').filter((l) => l.startsWith('{')).pop() ?? '{}') as Outcome;
  assert.equal([printed.type, printed.status, printed.toAccountId, printed.balance], ['Transfer', 'accepted', A, '59.50'], JSON.stringify(printed));
  await projected(A, 'TransferCredited');
  const report = await cli(['account', A]);
  assert.match(report, new RegExp(`TransferCredited\\s+\\+0\\.50\\s+77\\.50\\s+from ${C}`), report);
  assert.match(report, new RegExp(`TransferRefunded\\s+\\+3\\.00\\s+[0-9.]+\\s+back from ${X}`), report);
  assert.match(report, new RegExp(`TransferDebited\\s+-20\\.00\\s+[0-9.]+\\s+to ${B}`), report);
  assert.not.match(report, /in flight/);

  // the metrics an SRE watches: completions by result, nothing in flight once settled (read every 5 s)
  assert.is(await both.metric('banking_es_transfers_completed_total{result="credited"}'), 6);
  assert.is(await both.metric('banking_es_transfers_completed_total{result="refunded"}'), 4); // with N's
  await both.until(async () => (await both.metric('banking_es_transfers_oldest_seconds')) === 0 && (await both.metric('banking_es_transfers_in_flight{currency="USD"}')) === 0, 15000, 'nothing in flight');

  // the read models, once the projector caught up: every account and every movement (each transfer event with its
  // transfer and the other account) exactly as the fold of the events table says
  assert.equal((await diffOnceCaughtUp(rig.pg)).slice(0, 5), [], 'account_projections and transaction_projections are what the events say');
  const { rows: moves } = await rig.pg.query<{ event_type: string; n: number }>(
    'SELECT event_type, count(*)::int AS n FROM transaction_projections WHERE transfer_id IS NOT NULL AND counterparty_id IS NOT NULL GROUP BY 1 ORDER BY 1');
  assert.equal(moves, [{ event_type: 'TransferCredited', n: 6 }, { event_type: 'TransferDebited', n: 10 }, { event_type: 'TransferRefunded', n: 4 }]);

  const off = [...outcomes.values()].flat().map((o) => violation('outcome', o)).filter(Boolean);
  assert.equal(off.slice(0, 3), [], 'every outcome satisfies contracts/schemas/outcome.json');
  failed = false;
});

test.run();
