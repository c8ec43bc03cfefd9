/**
 * Migrations against a real Postgres: idempotent, safe to run twice at once
 * (advisory lock), and producing the schema docs/architecture.md §3 describes.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Pool } from 'pg';
import { migrate, readMigrations } from '../../src/db/migrate';
import { createTestDatabase, spawnCli, waitForExit, withTimeout, type TestDb } from '../helpers/stack';

const expectedNames = readMigrations().map((m) => `${String(m.id).padStart(4, '0')}_${m.name}`);

function newPool(url: string): Pool {
  const pool = new Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 10000 });
  pool.on('error', () => undefined); // an idle client dying must not crash the test process
  return pool;
}

let db: TestDb | undefined;
const pools: Pool[] = [];

async function releaseAll(): Promise<void> {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => undefined)));
  await db?.drop().catch((e: unknown) => console.error('could not drop test database', e));
  db = undefined;
}

const schema = suite('migrate');

schema.before(async () => {
  db = await withTimeout(createTestDatabase('migrate'), 30000, 'creating the test database');
});

schema.after(releaseAll);

schema('the migrations directory has the expected files', () => {
  assert.ok(expectedNames.length >= 2, `found ${expectedNames.join(', ')}`);
  assert.is(expectedNames[0], '0001_event_store');
  assert.is(expectedNames[1], '0002_read_models');
});

schema('concurrent runs from two pools: each migration applied exactly once, no error', async () => {
  const a = newPool(db!.url);
  const b = newPool(db!.url);
  pools.push(a, b);
  const [ra, rb] = await withTimeout(Promise.all([migrate(a), migrate(b)]), 60000, 'concurrent migrate');
  const all = [...ra, ...rb].sort();
  assert.equal(all, [...expectedNames].sort(), `a applied ${ra.join(',')}; b applied ${rb.join(',')}`);
  // the advisory lock serializes the runs: one does everything, the other finds nothing left
  assert.ok(ra.length === 0 || rb.length === 0, `both runs applied something: ${ra} / ${rb}`);
  const { rows } = await a.query<{ id: number; name: string }>('SELECT id, name FROM schema_migrations ORDER BY id');
  assert.equal(rows.map((r) => `${String(r.id).padStart(4, '0')}_${r.name}`), expectedNames);
});

schema('a second run applies nothing', async () => {
  const p = newPool(db!.url);
  pools.push(p);
  assert.equal(await withTimeout(migrate(p), 30000, 'migrate again'), []);
  assert.equal(await withTimeout(migrate(p), 30000, 'migrate a third time'), []);
});

schema('a run on a fresh database applies every migration, and then none', async () => {
  const fresh = await createTestDatabase('migrate_seq');
  const p = newPool(fresh.url);
  try {
    assert.equal(await withTimeout(migrate(p), 30000, 'first migrate'), expectedNames);
    assert.equal(await withTimeout(migrate(p), 30000, 'second migrate'), []);
  } finally {
    await p.end().catch(() => undefined);
    await fresh.drop().catch(() => undefined);
  }
});

async function columns(p: Pool, table: string): Promise<Record<string, { type: string; nullable: boolean }>> {
  const { rows } = await p.query<{ column_name: string; data_type: string; udt_name: string; is_nullable: string }>(
    `SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`,
    [table],
  );
  return Object.fromEntries(rows.map((r) => [r.column_name, { type: r.data_type === 'USER-DEFINED' ? r.udt_name : r.data_type, nullable: r.is_nullable === 'YES' }]));
}

/** Columns of each PRIMARY KEY / UNIQUE constraint on `table`, in key order. */
async function keys(p: Pool, table: string, kind: 'p' | 'u'): Promise<string[][]> {
  const { rows } = await p.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
       FROM pg_constraint c
       CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
      WHERE c.conrelid = $1::regclass AND c.contype = $2
      GROUP BY c.oid`,
    [`public.${table}`, kind],
  );
  return rows.map((r) => r.cols);
}

schema('the tables exist with their keys and column types', async () => {
  const p = newPool(db!.url);
  pools.push(p);
  const { rows } = await p.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`);
  const tables = rows.map((r) => r.table_name);
  for (const t of ['events', 'command_rejections', 'consumer_offsets', 'account_projections', 'transaction_projections', 'schema_migrations']) {
    assert.ok(tables.includes(t), `table ${t} is missing; found ${tables.join(', ')}`);
  }

  assert.equal(await keys(p, 'events', 'p'), [['account_id', 'version']]);
  assert.equal(await keys(p, 'events', 'u'), [['account_id', 'command_id']]);
  assert.equal(await keys(p, 'command_rejections', 'p'), [['account_id', 'command_id']]);
  assert.equal(await keys(p, 'consumer_offsets', 'p'), [['consumer', 'topic', 'partition']]);
  assert.equal(await keys(p, 'account_projections', 'p'), [['account_id']]);
  assert.equal(await keys(p, 'transaction_projections', 'p'), [['account_id', 'version']]);

  const ev = await columns(p, 'events');
  assert.is(ev.account_id.type, 'uuid');
  assert.is(ev.version.type, 'bigint');
  assert.is(ev.payload.type, 'jsonb');
  assert.is(ev.tx_id.type, 'xid8');
  assert.is(ev.command_id.type, 'uuid');
  assert.is(ev.position.type, 'bigint');
  // where the command was read (0005): NULL on rows written before it was recorded
  const sourceColumns = ['source_partition', 'source_offset'];
  for (const [name, c] of Object.entries(ev)) assert.is(c.nullable, sourceColumns.includes(name), `events.${name} nullable: ${c.nullable}`);
  assert.is(ev.source_partition.type, 'integer');
  assert.is(ev.source_offset.type, 'bigint');
  const rej = await columns(p, 'command_rejections');
  assert.equal(sourceColumns.map((n) => rej[n]), [{ type: 'integer', nullable: true }, { type: 'bigint', nullable: true }]);

  const off = await columns(p, 'consumer_offsets');
  assert.is(off.partition.type, 'integer');
  assert.is(off.next_offset.type, 'bigint');
  assert.is((await columns(p, 'account_projections')).balance.type, 'bigint');
});

schema('the events keys are enforced', async () => {
  const p = newPool(db!.url);
  pools.push(p);
  const account = '00000000-0000-4000-8000-000000000001';
  const insert = (version: number, commandId: string) =>
    p.query(
      `INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at)
       VALUES ($1, $2, gen_random_uuid(), 'AccountOpened', '{}'::jsonb, $3, now())`,
      [account, version, commandId],
    );
  const sqlstate = (p: Promise<unknown>) => p.then(() => 'no error', (e: { code?: string }) => e.code);
  await insert(1, '00000000-0000-4000-8000-0000000000a1');
  assert.is(await sqlstate(insert(1, '00000000-0000-4000-8000-0000000000a2')), '23505', 'same (account_id, version)');
  assert.is(await sqlstate(insert(2, '00000000-0000-4000-8000-0000000000a1')), '23505', 'same (account_id, command_id)');
  assert.is(await sqlstate(insert(0, '00000000-0000-4000-8000-0000000000a3')), '23514', 'version >= 1');
  const { rows } = await p.query<{ n: string }>('SELECT count(*) AS n FROM events');
  assert.is(rows[0].n, '1');
});

schema.run();

const cli = suite('banking-es migrate');

cli('applies the migrations, then reports the schema up to date', async () => {
  const second = await createTestDatabase('migrate_cli');
  try {
    const first = spawnCli(['migrate'], { DATABASE_URL: second.url, LOG_LEVEL: 'warn' });
    const r1 = await waitForExit(first, 60000);
    assert.is(r1.code, 0, first.output());
    assert.ok(first.output().includes(`applied: ${expectedNames.join(', ')}`), first.output());

    const again = spawnCli(['migrate'], { DATABASE_URL: second.url, LOG_LEVEL: 'warn' });
    const r2 = await waitForExit(again, 60000);
    assert.is(r2.code, 0, again.output());
    assert.match(again.output(), /schema up to date/);
    assert.not.match(again.output(), /applied:/);
  } finally {
    await second.drop().catch(() => undefined);
  }
});

cli('an unreachable database fails with a non-zero exit, without leaking the password', async () => {
  const child = spawnCli(['migrate'], { DATABASE_URL: 'postgres://nobody:unreachablePw@127.0.0.1:1/none', LOG_LEVEL: 'warn' });
  const r = await waitForExit(child, 60000);
  assert.is(r.code, 1, child.output());
  assert.not.ok(child.output().includes('unreachablePw'), child.output());
});

cli.run();
