/**
 * copyIn (src/db/sql/copy-in.ts) sends the COPY statement, its rows and
 * CopyDone in one write, before Postgres says it is in copy mode. Against
 * real Postgres: the rows arrive; a statement Postgres refuses before copy
 * mode (an unknown column) and a row it refuses during the copy (a unique
 * violation, which the command role turns into a careful redo) both reject
 * with Postgres's own error, and the connection goes on serving queries, with
 * none of the unread data mistaken for a message; a large copy (several MB,
 * more than a socket buffer) arrives whole.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { CopyWriter } from '../../src/codec/pgcopy';
import { copyIn } from '../../src/db/sql/copy-in';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;

test.before(async () => {
  db = await createTestDatabase('copy_in');
  pool = createPool({ url: db.url, max: 2 }, createLogger({ level: 'silent' }));
  await migrate(pool);
  await pool.query('CREATE TABLE copy_probe (id uuid PRIMARY KEY, n bigint NOT NULL, note text NOT NULL)');
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

function rows(ids: string[], note = 'x'): Uint8Array {
  const w = new CopyWriter();
  ids.forEach((id, i) => w.row(3).uuid(id).int8(i).text(note));
  return w.finish();
}

async function withClient<T>(f: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try { return await f(c); } finally { c.release(); }
}

test('rows from several chunks arrive inside the transaction, all or nothing', async () => {
  const a = [randomUUID(), randomUUID()], b = [randomUUID()];
  await withClient(async (c) => {
    await c.query('BEGIN');
    await copyIn(c, 'copy_probe', 'id, n, note', [rows(a), new Uint8Array(0), rows(b)]);
    await c.query('COMMIT');
  });
  const { rows: got } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM copy_probe WHERE id = ANY($1::uuid[])', [[...a, ...b]]);
  assert.is(Number(got[0].n), 3);
});

test('a statement refused before copy mode rejects, and the connection serves the next query', async () => {
  await withClient(async (c) => {
    for (let i = 0; i < 3; i++) {
      await c.query('BEGIN');
      const err = await copyIn(c, 'copy_probe', 'id, n, no_such_column', [rows([randomUUID()])]).then(() => null, (e: Error & { code?: string }) => e);
      assert.ok(err, 'the copy must fail');
      assert.is(err!.code, '42703');
      await c.query('ROLLBACK');
      const { rows: r } = await c.query<{ one: number }>('SELECT 1 AS one');
      assert.is(r[0].one, 1);
    }
  });
});

test('a row refused during the copy (unique violation) rejects with 23505; the next transaction commits', async () => {
  const id = randomUUID();
  await pool.query("INSERT INTO copy_probe (id, n, note) VALUES ($1, 0, 'first')", [id]);
  await withClient(async (c) => {
    await c.query('BEGIN');
    // the duplicate first, many rows after it: Postgres errors while data is still unread in the socket
    const many = Array.from({ length: 20_000 }, () => randomUUID());
    const err = await copyIn(c, 'copy_probe', 'id, n, note', [rows([id]), rows(many)]).then(() => null, (e: Error & { code?: string }) => e);
    assert.is(err?.code, '23505');
    await c.query('ROLLBACK');
    const next = randomUUID();
    await c.query('BEGIN');
    await copyIn(c, 'copy_probe', 'id, n, note', [rows([next])]);
    await c.query('COMMIT');
    const { rows: r } = await c.query<{ n: string }>('SELECT count(*) AS n FROM copy_probe WHERE id = ANY($1::uuid[])', [[next, ...many]]);
    assert.is(Number(r[0].n), 1, 'only the later row: the failed copy left nothing');
  });
});

test('a copy larger than a socket buffer arrives whole', async () => {
  const ids = Array.from({ length: 60_000 }, () => randomUUID());
  const note = 'y'.repeat(100);
  await withClient(async (c) => {
    await c.query('BEGIN');
    await copyIn(c, 'copy_probe', 'id, n, note', [rows(ids.slice(0, 30_000), note), rows(ids.slice(30_000), note)]);
    await c.query('COMMIT');
  });
  const { rows: r } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM copy_probe WHERE id = ANY($1::uuid[])', [ids]);
  assert.is(Number(r[0].n), 60_000);
});

test.run();
