/**
 * A Transfer's debit against real Postgres (docs/transfers.md, #17): the
 * worker's TransferDebited row goes into `events`, and what findKnownOutcomes
 * then reads back is enough to publish the very same credit step again, the
 * way a replay after a crash or a producer's re-send does. Its `transfers`
 * row (migration 0009) is in flight until a credit or a refund settles it, once.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pool } from 'pg';
import { copyIn } from '../../src/db/sql/copy-in';
import { checkCommit, findKnownOutcomes } from '../../src/db/sql/find-known-outcomes';
import { loadLatestStates } from '../../src/db/sql/load-latest-states';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { EVENT_COLUMNS, TRANSFER_COLUMNS } from '../../src/codec/rows';
import { transferStepId } from '../../src/domain/transfer';
import type { AccountState } from '../../src/domain/types';
import { settleTransfers, unbackedTransfers, transfersInFlight, transfersPending } from '../../src/db/sql/transfers';
import { decideShard, type KnownOutcome } from '../../src/pipeline/commands/decide-shard';
import { decideSteps } from '../../src/pipeline/transfers/decide-steps';
import { creditStepJson } from '../../src/codec/transfer-step';
import { forEachRecord, Packer } from '../../src/pipeline/pack';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;

test.before(async () => {
  db = await createTestDatabase('transfer_debit');
  pool = createPool({ url: db.url, max: 2 }, createLogger({ level: 'silent' }));
  await migrate(pool);
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

const A = '0a000000-0000-4000-8000-0000000000aa', B = '0b000000-0000-4000-8000-0000000000bb';
const T = '71000000-0000-4000-8000-000000000001';

function decideOne(known: Map<string, KnownOutcome> | null, replayBelow: Map<number, number> | null) {
  const p = new Packer(1024);
  p.message(3, 42, A, Buffer.from(JSON.stringify({ commandId: T, type: 'Transfer', accountId: A, toAccountId: B, amount: '12.34' })));
  const r = decideShard({
    msgs: p.finish(), states: [{ accountId: A, version: 5, balance: 5000, currency: 'EUR', status: 'open', ownerName: '' }],
    known, replayBelow, maxMessageBytes: 65536, nowMs: Date.now(), hashSeed: 0, transfers: true,
  });
  const steps: string[] = [];
  forEachRecord(r.steps, (k, v) => steps.push(`${k!.toString()} ${v!.toString()}`));
  return { r, steps };
}

test('a debit stored by the worker brings back the same credit step, and restores the source', async () => {
  const first = decideOne(null, null);
  assert.is(first.steps.length, 1);
  const client = await pool.connect();
  try {
    await copyIn(client, 'events', EVENT_COLUMNS, [first.r.events]);
    await copyIn(client, 'transfers', TRANSFER_COLUMNS, [first.r.transferRows]);
  } finally {
    client.release();
  }
  const known = await findKnownOutcomes(pool, [A], [T]);
  assert.equal(known.get(`${A}/${T}`), {
    status: 'accepted', type: 'Transfer', version: 6, balance: '37.66', sourcePartition: 3, sourceOffset: 42,
    transfer: { toAccountId: B, amount: '12.34', currency: 'EUR' },
  });
  const again = decideOne(known, new Map([[3, 100]]));
  assert.equal(again.steps, first.steps, 'byte for byte');
  assert.equal([again.r.eventCount, again.r.republished], [0, 1]);
  // the latest event alone restores the source: balance after the debit, still open
  const states = await loadLatestStates(pool, [A]);
  assert.equal(states.get(A), { accountId: A, version: 6, balance: 3766, currency: 'EUR', status: 'open', ownerName: '' });
});

test('the transfers row is in flight until settled, and settles once', async () => {
  assert.equal(await transfersPending(pool, [A, B]), new Map([[A, 1]]));
  const flight = await transfersInFlight(pool);
  assert.equal(flight.map((f) => [f.currency, f.transfers, f.minor]), [['EUR', 1, 1234n]]);
  const { rows } = await pool.query('SELECT source_id, destination_id, debited_version, settled FROM transfers WHERE transfer_id = $1', [T]);
  assert.equal(rows, [{ source_id: A, destination_id: B, debited_version: '6', settled: null }]);
  const client = await pool.connect();
  try {
    const moved = { destinationId: B, amount: 1234, currency: 'EUR' };
    // what the debit left on the source (version 6, 37.66 EUR): the credit's outcome fields
    const credit = { sourceId: A, transferId: T, settled: 'credited' as const, reason: null, ...moved, sourceVersion: 6, sourceBalance: 3766, creditStepId: null };
    const creditStep = transferStepId(A, T, 'credit');
    const refund = { sourceId: A, transferId: T, settled: 'refunded' as const, reason: 'DESTINATION_CLOSED' as const, ...moved, sourceVersion: null, sourceBalance: null, creditStepId: creditStep };
    // a step that moved another amount, destination or currency than the debit, or a credit naming another version or
    // balance of the source after it (a copy or forgery on bank.transfers), settles nothing, and is unbacked
    for (const wrong of [{ amount: 1235 }, { destinationId: A }, { currency: 'USD' }, { sourceVersion: 7 }, { sourceBalance: 3767 }]) {
      const forged = [{ ...credit, ...wrong }];
      assert.is(await settleTransfers(client, forged), 0, JSON.stringify(wrong));
      assert.is(await unbackedTransfers(client, forged), 1);
    }
    // a refund with no refusal of the credit recorded at the destination, or one for another reason, settles nothing
    assert.is(await settleTransfers(client, [refund]), 0, 'no refusal recorded yet');
    assert.is(await unbackedTransfers(client, [refund]), 1);
    await pool.query(`INSERT INTO command_rejections (account_id, command_id, command_type, reason, rejected_at) VALUES ($1, $2, 'CreditTransfer', 'DESTINATION_NOT_FOUND', now())`, [B, creditStep]);
    assert.is(await settleTransfers(client, [refund]), 0, 'the destination refused for another reason');
    await pool.query(`UPDATE command_rejections SET reason = 'DESTINATION_CLOSED' WHERE account_id = $1 AND command_id = $2`, [B, creditStep]);
    assert.is(await unbackedTransfers(client, [credit, refund]), 0, 'both backed: the credit by the debit, the refund by the refusal');
    assert.is(await settleTransfers(client, [refund]), 1);
    // a copy of the applied refund is checked the same way: backed as it was, not with another reason, and a
    // credit of this refunded transfer is backed by nothing
    assert.is(await unbackedTransfers(client, [{ ...refund, reason: 'CURRENCY_MISMATCH' }]), 1);
    assert.is(await unbackedTransfers(client, [credit]), 1, 'a credit of a refunded transfer: only a forgery can ask');
    const again = [refund];
    assert.is(await settleTransfers(client, again), 0, 'settled once: the first settlement stays, and the caller learns it');
    assert.is(await unbackedTransfers(client, again), 0, 'backed: another writer settled it first, a redo and not poison');
  } finally {
    client.release();
  }
  assert.equal(await transfersPending(pool, [A]), new Map());
  assert.equal(await transfersInFlight(pool), []);
  const after = await pool.query('SELECT settled, reason FROM transfers WHERE transfer_id = $1', [T]);
  assert.equal(after.rows, [{ settled: 'refunded', reason: 'DESTINATION_CLOSED' }]);
});

test('one round trip tells a batch decided the other way, refused on a state another writer moved past, or decided on a state Postgres never held', async () => {
  // A holds the debit at version 6 (first test); C has no event at all
  const C = '0c000000-0000-4000-8000-0000000000cc', X = '7a000000-0000-4000-8000-000000000001';
  const none = { accounts: [], commands: [] };
  const client = await pool.connect();
  try {
    const no = { decidedOtherwise: false, unknownStates: [], overLimit: false }, otherwise = { decidedOtherwise: true, unknownStates: [], overLimit: false };
    assert.equal(await checkCommit(client, none, none), no, 'nothing to check');
    assert.equal(await checkCommit(client, none, { accounts: [A], commands: [T] }), otherwise, 'refused now, accepted before');
    assert.equal(await checkCommit(client, { accounts: [A], commands: [X] }, none), no, 'a new command');
    assert.equal(await checkCommit(client, none, none, { accounts: [A], versions: [6] }), no, 'refused on the latest state');
    assert.equal(await checkCommit(client, none, none, { accounts: [A], versions: [5] }), otherwise, 'refused on a state moved past');
    assert.equal(await checkCommit(client, none, none, { accounts: [C, A], versions: [0, 6] }), no, 'no account moved');
    assert.equal(await checkCommit(client, none, none, { accounts: [C, A], versions: [0, 4] }), otherwise, 'one of several moved');
    // a state from Redis must be one Postgres holds: A's latest event is version 6, a EUR debit leaving 3766
    type S = { v: number; b: string; cur?: string; closed?: boolean; id?: string };
    const on = (states: S[]) => checkCommit(client, none, none, undefined, {
      accounts: states.map((x) => x.id ?? A), versions: states.map((x) => x.v), balances: states.map((x) => x.b),
      currencies: states.map((x) => x.cur ?? 'EUR'), closed: states.map((x) => x.closed ?? false),
    });
    const unknownA = { decidedOtherwise: false, unknownStates: [A], overLimit: false };
    assert.equal(await on([{ v: 6, b: '3766' }]), no, 'the latest state');
    assert.equal(await on([{ v: 7, b: '3766' }]), unknownA, 'a state newer than Postgres: it would leave a gap');
    assert.equal(await on([{ v: 6, b: '999999' }]), unknownA, 'the same version with another balance: another ledger');
    assert.equal(await on([{ v: 6, b: '3766', cur: 'USD' }]), unknownA, 'another currency: amounts would be read in its digits');
    assert.equal(await on([{ v: 6, b: '3766', closed: true }]), unknownA, 'closed, where Postgres has it open');
    assert.equal(await on([{ v: 3, b: '0', id: C }]), { decidedOtherwise: false, unknownStates: [C], overLimit: false }, 'an account Postgres has no event of');
    assert.equal(await on([{ v: 6, b: '3766' }, { v: 9, b: '1' }]), unknownA, 'one of several unknown');
    assert.equal(await checkCommit(client, none, { accounts: [A], commands: [T] }, undefined, { accounts: [A], versions: [9], balances: ['1'], currencies: ['EUR'], closed: [false] }),
      { decidedOtherwise: true, unknownStates: [A], overLimit: false }, 'both at once: both are said');
  } finally {
    client.release();
  }
});

test('a deposit past the room a transfer in flight leaves is caught at commit, and refused when decided on what Postgres holds', async () => {
  // R is 2.00 short of the largest balance; it sends 1.00 to B, then takes deposits
  const R = '0d000000-0000-4000-8000-0000000000dd', MAX = Number.MAX_SAFE_INTEGER;
  const r0: AccountState = { accountId: R, version: 1, balance: MAX - 200, currency: 'USD', status: 'open', ownerName: '' };
  let offset = 0;
  const cmd = (o: Record<string, unknown>) => JSON.stringify({ commandId: `72000000-0000-4000-8000-${String(++offset).padStart(12, '0')}`, accountId: R, ...o });
  const slice = (states: AccountState[], commands: string[], pendingCounted = false) => {
    const p = new Packer(1024);
    for (const c of commands) p.message(1, offset, R, Buffer.from(c));
    return decideShard({ msgs: p.finish(), states, known: null, replayBelow: null, maxMessageBytes: 65536, nowMs: Date.now(), hashSeed: 0, transfers: true, pendingCounted });
  };
  const debit = slice([r0], [cmd({ type: 'Transfer', toAccountId: B, amount: '1.00' })]);
  const r1 = debit.states[0];
  const client = await pool.connect();
  try {
    await copyIn(client, 'events', EVENT_COLUMNS, [debit.events]);
    await copyIn(client, 'transfers', TRANSFER_COLUMNS, [debit.transferRows]);
    const none = { accounts: [], commands: [] };
    const check = (r: { raisedAccounts: string[]; raisedPeaks: string[] }) => checkCommit(client, none, none, undefined, undefined, { accounts: r.raisedAccounts, peaks: r.raisedPeaks });
    // decided on a cached state (the money in flight not counted): 2.01 fits the balance; the commit finds no room for the refund
    const over = slice([r1], [cmd({ type: 'Deposit', amount: '2.01' })]);
    assert.equal([over.eventCount, over.raisedAccounts, over.raisedPeaks], [1, [R], [String(MAX - 99)]]);
    assert.equal(await check(over), { decidedOtherwise: false, unknownStates: [], overLimit: true });
    // the rule holds at the deposit, not at the end of the slice: a withdrawal after it does not make it fit
    const drawn = slice([r1], [cmd({ type: 'Deposit', amount: '2.01' }), cmd({ type: 'Withdraw', amount: '1.00' })]);
    assert.equal([drawn.eventCount, drawn.raisedPeaks, (await check(drawn)).overLimit], [2, [String(MAX - 99)], true]);
    const fits = slice([r1], [cmd({ type: 'Deposit', amount: '2.00' })]);
    assert.equal(await check(fits), { decidedOtherwise: false, unknownStates: [], overLimit: false }, 'up to the limit with the refund');
    // a debit in the same slice is counted by the slice itself: refused at once, and the total the commit checks carries it
    const both = slice([r1], [cmd({ type: 'Transfer', toAccountId: B, amount: '0.50' }), cmd({ type: 'Deposit', amount: '3.01' }), cmd({ type: 'Deposit', amount: '2.51' })]);
    assert.equal([both.eventCount, both.rejectReasons, both.raisedPeaks], [2, { LIMIT_EXCEEDED: 1 }, [String(MAX - 49)]]);
    assert.equal((await check(both)).overLimit, true, 'with the 1.00 in flight before the slice');
    // the careful redo reads the money in flight from `transfers` with the state, in one statement, as the
    // command role does (and only then: a plain load leaves it out), and refuses
    assert.equal(await transfersPending(pool, [R]), new Map([[R, 1]]));
    const withCounts = await loadLatestStates(pool, [R, A], true);
    assert.equal(withCounts.get(R), { ...r1, transfersPending: 1, transfersPendingAmount: 100 });
    assert.is(withCounts.get(A)?.transfersPending, undefined, 'A has nothing in flight any more');
    assert.is((await loadLatestStates(pool, [R])).get(R)?.transfersPending, undefined);
    const careful = slice([withCounts.get(R)!], [cmd({ type: 'Deposit', amount: '2.01' }), cmd({ type: 'Deposit', amount: '2.00' })], true);
    assert.equal([careful.eventCount, careful.rejectReasons, careful.raisedAccounts], [1, { LIMIT_EXCEEDED: 1 }, []], 'counted: refused, and nothing left to check');
    // a state that carries a count from an earlier slice (cached) is not trusted with it: only a counted task is
    const cached = slice([{ ...r1, transfersPending: 9, transfersPendingAmount: MAX }], [cmd({ type: 'Deposit', amount: '0.01' })]);
    assert.equal([cached.eventCount, cached.raisedPeaks], [1, [String(MAX - 299)]]);
    // a transfer's credit to R, decided by the transfer role's worker on a cached state, is checked the same way
    const credit = creditStepJson({ type: 'CreditTransfer', commandId: transferStepId(B, T, 'credit'), transferId: T, accountId: R, fromAccountId: B, amount: '2.01', currency: 'USD', sourceVersion: 3, sourceBalance: '0.00' });
    const p = new Packer(1024);
    p.message(0, 7, R, Buffer.from(credit));
    const credited = decideSteps({ msgs: p.finish(), states: [r1], known: null, replayBelow: null, maxMessageBytes: 65536, nowMs: Date.now(), hashSeed: 0, transfers: true });
    assert.equal([credited.eventCount, credited.raisedPeaks, (await check(credited)).overLimit], [1, [String(MAX - 99)], true]);
  } finally {
    client.release();
  }
});

test.run();
