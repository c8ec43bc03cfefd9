/**
 * The projected-version overlay that lets flush N+1 be prepared while flush
 * N commits (src/pipeline/projections/projected-versions.ts), against real Postgres:
 * a flush sees the pending versions of earlier flushes only; a commit makes
 * them the cache's; a flush that did not commit as prepared takes its own and
 * every later flush's pending versions with it, so they are read again.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { ProjectedVersions } from '../../../src/pipeline/projections/projected-versions';
import { createPool } from '../../../src/db/pool';
import { migrate } from '../../../src/db/migrate';
import { createLogger } from '../../../src/logger';
import { createTestDatabase, type TestDb } from '../../helpers/stack';

let db: TestDb;
let pool: Pool;
const a = randomUUID(), b = randomUUID(), c = randomUUID();

test.before(async () => {
  db = await createTestDatabase('projected_versions');
  pool = createPool({ url: db.url, max: 2 }, createLogger({ level: 'silent' }));
  await migrate(pool);
  // Postgres holds a at 3, b at 5; c has no projection
  await pool.query(`INSERT INTO account_projections (account_id, owner_name, currency, balance, status, version, opened_at, updated_at)
    VALUES ($1, 'A', 'USD', 0, 'open', 3, now(), now()), ($2, 'B', 'USD', 0, 'open', 5, now(), now())`, [a, b]);
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

const read = async (v: ProjectedVersions, seq: number, fresh = false) => Object.fromEntries(await v.load(pool, [a, b, c], seq, fresh));

test('a flush sees the pending versions of earlier flushes, not its own or later ones', async () => {
  const v = new ProjectedVersions(100);
  assert.equal(await read(v, 1), { [a]: 3, [b]: 5, [c]: 0 });
  v.prepared(1, new Map(Object.entries({ [a]: 7, [c]: 2 })));
  assert.equal(await read(v, 2), { [a]: 7, [b]: 5, [c]: 2 }, 'flush 2 is prepared on flush 1');
  assert.equal(await read(v, 1), { [a]: 3, [b]: 5, [c]: 0 }, 'flush 1 prepared again sees what Postgres and the cache hold');
  assert.equal(await read(v, 2, true), { [a]: 3, [b]: 5, [c]: 0 }, 'fresh reads Postgres only');
});

test('commit moves a flush\'s versions to the cache; a later flush\'s pending ones stay', async () => {
  const v = new ProjectedVersions(100);
  await read(v, 1);
  v.prepared(1, new Map(Object.entries({ [a]: 7 })));
  v.prepared(2, new Map(Object.entries({ [a]: 9, [b]: 6 })));
  v.committed(1, new Map(Object.entries({ [a]: 7 })));
  assert.equal(await read(v, 2), { [a]: 7, [b]: 5, [c]: 0 }, 'flush 2 prepared again: flush 1 committed, its own pending is not seen');
  assert.equal(await read(v, 3), { [a]: 9, [b]: 6, [c]: 0 }, 'flush 3 sees flush 2 still pending');
});

test('abandon drops the flush\'s and every later flush\'s pending versions', async () => {
  const v = new ProjectedVersions(100);
  await read(v, 1);
  v.prepared(1, new Map(Object.entries({ [a]: 7 })));
  v.prepared(2, new Map(Object.entries({ [b]: 8 })));
  v.prepared(3, new Map(Object.entries({ [c]: 1 })));
  v.abandon(2);
  assert.equal(await read(v, 4), { [a]: 7, [b]: 5, [c]: 0 }, 'only flush 1 is left pending');
  v.abandon(1);
  assert.equal(await read(v, 4), { [a]: 3, [b]: 5, [c]: 0 });
});

test.run();
