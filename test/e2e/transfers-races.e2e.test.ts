/**
 * Transfers racing everything else on the same few accounts (#17's races),
 * on one instance running every role: three funded USD accounts and one EUR,
 * thirty empty ones whose closes are sent right behind transfers to them, one
 * id never opened. The stream (test/helpers/transfer-ledger.ts) sends deposits,
 * withdrawals of up to 400.00 on 500.00 balances, transfers between the
 * same few accounts (so in both directions, and on from an account a credit
 * just reached), to the closable and missing ones and across currencies,
 * and re-sends, with no pause: each account has commands and transfer steps
 * in flight at once, decided by two roles in any order.
 *
 * What is asserted: the ledger's algebra exactly (every outcome of a command
 * the same, every balance, nothing in flight, each currency conserved,
 * nothing applied twice, each transfer's outcome as its source's events say);
 * the read models are the fold of the events; and the races did happen, as
 * Postgres recorded them: opposite transfers between one pair in flight
 * together, a withdrawal on a source between a transfer's debit and its
 * refund, a destination closed with or after a transfer to it was debited
 * (refunded DESTINATION_CLOSED), and money moved on that the account did not
 * hold before it arrived (A→B→C).
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
  // each race as Postgres recorded it; by versions on one account where the order is what matters (no clocks)
  const races = {
    // A→B and B→A both debited before either was credited (debited_at: the daemon's clock per batch;
    // settled_at: Postgres's now() of the settling transaction; one host)
    opposite: await count(`SELECT count(*)::int AS n FROM transfers a JOIN transfers b ON a.source_id = b.destination_id AND a.destination_id = b.source_id
      WHERE a.settled = 'credited' AND b.settled = 'credited' AND a.debited_at < b.settled_at AND b.debited_at < a.settled_at`),
    // a withdrawal on the source between a transfer's debit and its refund: the refund still lands
    withdrawnBeforeRefund: await count(`SELECT count(*)::int AS n FROM transfers t
      JOIN events r ON r.account_id = t.source_id AND r.event_type = 'TransferRefunded' AND r.payload->'data'->>'transferId' = t.transfer_id::text
      JOIN events w ON w.account_id = t.source_id AND w.event_type = 'MoneyWithdrawn' AND w.version > t.debited_version AND w.version < r.version`),
    // the destination's close committed with or after the debit (a batch's commands share its clock), so the
    // credit found it closed: the transfer was debited while its destination was open
    closedMeanwhile: await count(`SELECT count(*)::int AS n FROM transfers t JOIN events c ON c.account_id = t.destination_id
      WHERE t.reason = 'DESTINATION_CLOSED' AND c.event_type = 'AccountClosed' AND c.recorded_at >= t.debited_at`),
    // A→B→C: a debit of B that spends part of what B's latest credit brought (B holds less after the debit
    // than that credit added), so money that arrived by transfer moved on by transfer
    chained: await count(`SELECT count(*)::int AS n FROM events db
      CROSS JOIN LATERAL (SELECT (payload->'data'->>'amount')::numeric * 100 AS credited FROM events
                           WHERE account_id = db.account_id AND version < db.version AND event_type = 'TransferCredited'
                           ORDER BY version DESC LIMIT 1) cr
      WHERE db.event_type = 'TransferDebited' AND (db.payload->'data'->>'balanceAfter')::numeric < cr.credited`),
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
