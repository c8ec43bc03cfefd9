/**
 * Transfers racing everything else on the same few accounts (#17's races),
 * on one instance running every role: three funded USD accounts and one EUR,
 * thirty empty ones whose closes are sent right behind transfers to them, one
 * id never opened. The stream (test/helpers/transfer-ledger.ts) sends deposits,
 * withdrawals of up to 400.00 on 500.00 balances, transfers in both
 * directions between the same pairs, on from an account that was just
 * credited (chains A→B→C), to the closable and missing ones and across
 * currencies, and re-sends, with no pause: each account has commands and
 * transfer steps in flight at once, decided by two roles in any order.
 *
 * What is asserted: the ledger's algebra exactly (every outcome of a command
 * the same, every balance, nothing in flight, each currency conserved,
 * nothing applied twice, each transfer's outcome as its source's events say);
 * the read models are the fold of the events; and the races did happen, as
 * Postgres recorded them: opposite transfers between one pair in flight
 * together, a withdrawal decided on a source while its transfer was in
 * flight, a destination closed after a transfer to it was debited (refunded
 * DESTINATION_CLOSED), and money moved on from an account within a second of
 * arriving.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rig } from '../helpers/reliability';
import { TransferLedger } from '../helpers/transfer-ledger';
import { diffOnceCaughtUp } from '../helpers/projections';

let rig: Rig | undefined;
let ledger: TransferLedger | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('transfers-races').join(' ')}`);
  await ledger?.close();
  await rig?.release();
});

test('transfers race withdrawals, each other, closes and chains on four funded accounts: every balance, outcome and read model exact', async () => {
  rig = await Rig.create({ name: 'xferrace', projections: true, env: { ROLES: 'commands,transfers,projections,relay', KAFKA_CREATE_TOPICS: 'true' } });
  const r = rig;
  const l = ledger = await TransferLedger.open(r, 9191, { usd: 3, eur: 1, empty: 30, missing: 1 });
  const daemon = await r.start();
  await daemon.streaming(45000);
  await l.openAccounts();
  await l.stream(4000, 0);
  await l.drain();
  const { transfers, credited, refunded } = await l.check();
  assert.ok(credited > 100 && refunded > 20, `a real mix: ${transfers} transfers, ${credited} credited, ${refunded} refunded`);

  const count = async (sql: string) => (await r.pg.query<{ n: number }>(sql)).rows[0].n;
  const races = {
    opposite: await count(`SELECT count(*)::int AS n FROM transfers a JOIN transfers b ON a.source_id = b.destination_id AND a.destination_id = b.source_id
      WHERE a.settled = 'credited' AND b.settled = 'credited' AND a.debited_at < b.settled_at AND b.debited_at < a.settled_at`),
    withdrawnInFlight: await count(`SELECT count(*)::int AS n FROM transfers t JOIN events e ON e.account_id = t.source_id
      WHERE e.event_type = 'MoneyWithdrawn' AND e.version > t.debited_version AND e.recorded_at < t.settled_at`),
    closedMeanwhile: await count(`SELECT count(*)::int AS n FROM transfers t JOIN events c ON c.account_id = t.destination_id
      WHERE t.reason = 'DESTINATION_CLOSED' AND c.event_type = 'AccountClosed' AND c.recorded_at >= t.debited_at`),
    chained: await count(`SELECT count(*)::int AS n FROM transfers ab JOIN transfers bc ON bc.source_id = ab.destination_id
      WHERE ab.settled = 'credited' AND bc.settled = 'credited' AND bc.debited_at > ab.settled_at AND bc.debited_at < ab.settled_at + interval '1 second'`),
  };
  for (const [what, n] of Object.entries(races)) assert.ok(n > 0, `the race happened: ${what} (${JSON.stringify(races)})`);

  assert.equal((await diffOnceCaughtUp(r.pg)).slice(0, 5), [], 'account_projections and transaction_projections are what the events say');
  assert.is((await daemon.get('/readyz')).status, 200);
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  console.log(`${l.size} commands on 35 accounts (${transfers} transfers: ${credited} credited, ${refunded} refunded); races seen: ${JSON.stringify(races)}`);
  assert.is((await daemon.stop()).code, 0);
  failed = false;
});

test.run();
