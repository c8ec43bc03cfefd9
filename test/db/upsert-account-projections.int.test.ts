/**
 * The account upsert of every projection flush and of the rebuild
 * (src/db/sql/upsert-account-projections.ts), against real Postgres: new
 * accounts are inserted, existing ones move forward only, an existing row
 * keeps its owner_name and opened_at, and an account another writer inserts
 * while the statement runs is settled by the same version rule.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { CopyWriter } from '../../src/codec/pgcopy';
import { upsertAccountProjections } from '../../src/db/sql/upsert-account-projections';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;

test.before(async () => {
  db = await createTestDatabase('upsert_accounts');
  pool = createPool({ url: db.url, max: 4 }, createLogger({ level: 'silent' }));
  await migrate(pool);
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

interface Row { id: string; owner: string; balance: number; status?: 'open' | 'closed'; version: number; openedAt: number; at: number }

/** Staging rows in the projector's layout (ACCOUNT_STAGING_COLUMNS). */
function rows(rs: Row[]): Uint8Array {
  const w = new CopyWriter();
  for (const r of rs) {
    w.row(9).uuid(r.id).text(r.owner).text('EUR').int8(r.balance).text(r.status ?? 'open').int8(r.version).timestamptz(r.openedAt).timestamptz(r.at);
    if (r.status === 'closed') w.timestamptz(r.at); else w.null();
  }
  return w.finish();
}

async function upsert(rs: Row[], client?: PoolClient): Promise<void> {
  const c = client ?? (await pool.connect());
  try {
    if (!client) await c.query('BEGIN');
    await upsertAccountProjections(c, [rows(rs)]);
    if (!client) await c.query('COMMIT');
  } finally {
    if (!client) c.release();
  }
}

async function read(id: string): Promise<{ owner: string; balance: number; status: string; version: number; openedAt: number; updatedAt: number; closed: boolean } | undefined> {
  const { rows: r } = await pool.query<{ owner_name: string; balance: string; status: string; version: string; opened_at: Date; updated_at: Date; closed_at: Date | null }>(
    'SELECT owner_name, balance, status, version, opened_at, updated_at, closed_at FROM account_projections WHERE account_id = $1', [id]);
  if (!r[0]) return undefined;
  const x = r[0];
  return { owner: x.owner_name, balance: Number(x.balance), status: x.status, version: Number(x.version), openedAt: x.opened_at.getTime(), updatedAt: x.updated_at.getTime(), closed: x.closed_at !== null };
}

const T0 = Date.parse('2026-01-01T00:00:00Z');

test('one call inserts new accounts, moves existing ones forward, and leaves older rows alone', async () => {
  const fresh = randomUUID(), ahead = randomUUID(), behind = randomUUID(), equal = randomUUID();
  await upsert([
    { id: ahead, owner: 'Ahead', balance: 100, version: 2, openedAt: T0, at: T0 + 2 },
    { id: behind, owner: 'Behind', balance: 500, version: 9, openedAt: T0, at: T0 + 9 },
    { id: equal, owner: 'Equal', balance: 700, version: 4, openedAt: T0, at: T0 + 4 },
  ]);
  // a later flush: a new account, one moving forward (its owner_name and opened_at unknown here), one older, one equal
  await upsert([
    { id: fresh, owner: 'Fresh', balance: 42, version: 1, openedAt: T0 + 10, at: T0 + 10 },
    { id: ahead, owner: '', balance: 150, status: 'closed', version: 5, openedAt: T0 + 11, at: T0 + 11 },
    { id: behind, owner: '', balance: 1, version: 3, openedAt: T0 + 12, at: T0 + 12 },
    { id: equal, owner: '', balance: 2, version: 4, openedAt: T0 + 13, at: T0 + 13 },
  ]);
  assert.equal(await read(fresh), { owner: 'Fresh', balance: 42, status: 'open', version: 1, openedAt: T0 + 10, updatedAt: T0 + 10, closed: false });
  assert.equal(await read(ahead), { owner: 'Ahead', balance: 150, status: 'closed', version: 5, openedAt: T0, updatedAt: T0 + 11, closed: true });
  assert.equal(await read(behind), { owner: 'Behind', balance: 500, status: 'open', version: 9, openedAt: T0, updatedAt: T0 + 9, closed: false });
  assert.equal(await read(equal), { owner: 'Equal', balance: 700, status: 'open', version: 4, openedAt: T0, updatedAt: T0 + 4, closed: false });
});

/** Sessions of this database waiting on a lock. */
async function lockWaiters(): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
  return rows[0].n;
}

test('an account another writer inserts meanwhile: the newer version wins, either way round', async () => {
  for (const [first, second, want] of [[3, 5, 5], [5, 3, 5]] as const) {
    const id = randomUUID();
    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      // a inserts the account and holds its key uncommitted; b's statement, whose snapshot has no such
      // account, must wait on that key, then settle by version when a commits
      await upsert([{ id, owner: `v${first}`, balance: first, version: first, openedAt: T0, at: T0 + first }], a);
      const pending = upsert([{ id, owner: `v${second}`, balance: second, version: second, openedAt: T0, at: T0 + second }], b);
      let waiting = await lockWaiters();
      for (let i = 0; i < 100 && waiting === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        waiting = await lockWaiters();
      }
      assert.is(waiting, 1, 'the second writer waits on the first one\'s key');
      await a.query('COMMIT');
      await pending;
      await b.query('COMMIT');
      const r = await read(id);
      assert.is(r?.version, want);
      assert.is(r?.balance, want);
      assert.is(r?.owner, `v${first}`, 'the row keeps the owner_name it was inserted with');
    } finally {
      a.release();
      b.release();
    }
  }
});

test.run();
