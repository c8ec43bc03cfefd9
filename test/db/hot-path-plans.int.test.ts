/**
 * The statements every batch runs probe indexes, whatever the size of the
 * tables: none may read a whole table. Each statement is captured as the
 * daemon sends it (a recording client), then planned by Postgres against
 * tables of 200,000 rows, `events` with statistics older than most of its
 * rows, for a batch of 500 accounts. PLAN=1 prints a failing plan. The commit's check once answered `version > v` with a
 * hash join over all of `events` (17 ms per batch at 96k events, growing
 * with the table).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pool, PoolClient } from 'pg';
import { checkCommit, findKnownOutcomes } from '../../src/db/sql/find-known-outcomes';
import { loadLatestStates } from '../../src/db/sql/load-latest-states';
import { settleTransfers, transfersPending, unbackedTransfers } from '../../src/db/sql/transfers';
import type { Settlement } from '../../src/pipeline/transfers/decide-steps';
import { loadProjectedVersions } from '../../src/db/sql/projected-versions';
import { readCommittedEvents } from '../../src/db/sql/read-committed-events';
import { ensurePollerIndex } from '../../src/db/sql/poller-index';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;
const ACCOUNTS = 5_000, VERSIONS = 40;

test.before(async () => {
  db = await createTestDatabase('hot_path_plans');
  pool = createPool({ url: db.url, max: 2 }, createLogger({ level: 'silent' }));
  await migrate(pool);
  // account i has id md5(i); its events 1..40, 40 rejections, 40 transfers and a projection row.
  // The events table's statistics are taken when it held 100 accounts: a ledger that grew since
  // its last analyze, as a busy one always has (the plan that read the whole table came from such)
  await pool.query('ALTER TABLE events SET (autovacuum_enabled = false)');
  const events = (from: number, to: number) => pool.query(
    `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
     SELECT md5(i::text)::uuid, v, gen_random_uuid(), 'MoneyDeposited',
            jsonb_build_object('data', jsonb_build_object('balanceAfter', (v * 100)::text, 'currency', 'USD', 'amount', '1.00')),
            gen_random_uuid(), now()
       FROM generate_series($1::int, $2::int) AS i, generate_series(1, $3::int) AS v`,
    [from, to, VERSIONS],
  );
  await events(1, 100);
  await pool.query('ANALYZE events');
  await events(101, ACCOUNTS);
  await pool.query(
    `INSERT INTO command_rejections (account_id, command_id, command_type, reason, rejected_at)
     SELECT md5(i::text)::uuid, gen_random_uuid(), 'Withdraw', 'INSUFFICIENT_FUNDS', now() FROM generate_series(1, $1::int) AS i, generate_series(1, $2::int)`,
    [ACCOUNTS, VERSIONS],
  );
  await pool.query(
    `INSERT INTO transfers (source_id, transfer_id, destination_id, amount, currency, debited_version, debited_at, settled, settled_at)
     SELECT md5(i::text)::uuid, gen_random_uuid(), md5((i + 1)::text)::uuid, 100, 'USD', 3, now(), 'credited', now() FROM generate_series(1, $1::int) AS i, generate_series(1, $2::int)`,
    [ACCOUNTS, VERSIONS],
  );
  await pool.query(
    `INSERT INTO account_projections (account_id, owner_name, currency, balance, status, version, opened_at, updated_at)
     SELECT md5(i::text)::uuid, 'Owner', 'USD', 1000, 'open', $2::int, now(), now() FROM generate_series(1, $1::int) AS i`,
    [ACCOUNTS, VERSIONS],
  );
  await pool.query('ANALYZE command_rejections, transfers, account_projections');
  await ensurePollerIndex(pool, () => undefined);
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

/** A client that records each statement and answers as if nothing matched. */
function recorder(): { client: PoolClient; statements: Array<{ text: string; values: unknown[] }> } {
  const statements: Array<{ text: string; values: unknown[] }> = [];
  const query = (text: string, values: unknown[] = []) => {
    statements.push({ text, values });
    return Promise.resolve({ rows: text.includes('AS decided_otherwise') ? [{ decided_otherwise: false, unknown_states: null }] : text.includes('count(*)') && !text.includes('AS data') ? [{ n: 0 }] : [], rowCount: 0 });
  };
  return { client: { query } as unknown as PoolClient, statements };
}

/** The scans of a plan that read a whole table (Seq Scan), by table. */
async function wholeTableScans(text: string, values: unknown[]): Promise<string[]> {
  const { rows } = await pool.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${text}`, values);
  const found: string[] = [];
  const walk = (n: PlanNode) => {
    // a whole table read: a sequential scan, or an index read with no condition (e.g. feeding a hash join);
    // not a partial index of what is in flight (transfers not yet settled), which is small by its nature
    const partial = n['Index Name'] !== undefined && PARTIAL_INDEXES.has(n['Index Name']);
    const whole = n['Node Type'] === 'Seq Scan' || (/Index|Bitmap Heap/.test(n['Node Type']) && !partial && n['Index Cond'] === undefined && n['Recheck Cond'] === undefined);
    if (whole && n['Relation Name'] !== undefined) found.push(n['Relation Name']);
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(rows[0]['QUERY PLAN'][0].Plan);
  if (found.length && process.env.PLAN) console.log(JSON.stringify(rows[0]['QUERY PLAN'][0].Plan, null, 1));
  return found;
}
interface PlanNode { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; 'Index Cond'?: string; 'Recheck Cond'?: string; Plans?: PlanNode[] }
const PARTIAL_INDEXES = new Set(['transfers_in_flight_by_age']); // WHERE settled IS NULL (migration 0009)

const batch = Array.from({ length: 500 }, (_, i) => i * 9 + 1);
const ids = async (ns: number[]) => (await pool.query<{ id: string }>('SELECT md5(n::text)::uuid::text AS id FROM unnest($1::int[]) AS n', [ns])).rows.map((r) => r.id);
const commandIds = (n: number) => Array.from({ length: n }, (_, i) => `7a000000-0000-4000-8000-${String(i).padStart(12, '0')}`);

test('every statement of a batch, and the polling relay\'s read, probes indexes: no whole-table scan', async () => {
  const accounts = await ids(batch);
  const r = recorder();
  const pairs = { accounts, commands: commandIds(accounts.length) };
  // a batch refuses on fewer accounts than it writes to, each at its latest version
  const refused = accounts.slice(0, 60);
  await checkCommit(r.client, pairs, pairs, { accounts: refused, versions: refused.map(() => VERSIONS) }, {
    accounts, versions: accounts.map(() => VERSIONS), balances: accounts.map(() => String(VERSIONS * 100)),
    currencies: accounts.map(() => 'USD'), closed: accounts.map(() => false),
  }, { accounts, peaks: accounts.map(() => String(VERSIONS * 100)) }); // each raised by a deposit: the room its transfers in flight need
  await findKnownOutcomes(r.client, pairs.accounts, pairs.commands);
  await loadLatestStates(r.client, accounts);
  await loadLatestStates(r.client, accounts, true); // a careful redo's, with the transfers in flight
  await transfersPending(r.client, accounts);
  // credits (checked against the debit's event) and refunds (against the destination's recorded refusal)
  const settlements: Settlement[] = accounts.map((a, i) => ({
    sourceId: a, transferId: pairs.commands[i], destinationId: accounts[(i + 1) % accounts.length], amount: 100, currency: 'USD',
    ...(i % 2 === 0
      ? { settled: 'credited' as const, reason: null, sourceVersion: VERSIONS, sourceBalance: VERSIONS * 100, creditStepId: null }
      : { settled: 'refunded' as const, reason: 'DESTINATION_CLOSED' as const, sourceVersion: null, sourceBalance: null, creditStepId: pairs.commands[i] }),
  }));
  await settleTransfers(r.client, settlements);
  await unbackedTransfers(r.client, settlements);
  await loadProjectedVersions(r.client, accounts);
  // the polling relay, half-way through the table
  const { rows: [mid] } = await pool.query<{ tx_id: string; position: string }>('SELECT tx_id::text, position::text FROM events ORDER BY position OFFSET 100000 LIMIT 1');
  await readCommittedEvents(r.client, { txId: mid.tx_id, position: mid.position }, 5000);
  assert.is(r.statements.length, 10, 'each function sent its statements');
  for (const s of r.statements) {
    assert.equal(await wholeTableScans(s.text, s.values), [], s.text.replace(/\s+/g, ' ').slice(0, 160));
  }
});

test.run();
