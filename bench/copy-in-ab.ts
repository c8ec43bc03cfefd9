/**
 * `node dist/bench/copy-in-ab.js <databaseUrl>`: one small durable
 * transaction (BEGIN, a binary COPY, COMMIT) as every batch commits it, with
 * src/db/sql/copy-in.ts (statement, rows and CopyDone in one socket write)
 * against pg-copy-streams (statement, wait for CopyInResponse, then the rows
 * through a stream), interleaved, 3 rounds of 1,000 transactions each at 11
 * rows (a batch at 1,000 commands/s) and 270 rows (at 10,000/s). Prints wall
 * and client CPU µs per transaction as Markdown and the figures as JSON.
 */
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Pool, type PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { CopyWriter, PGCOPY_HEADER, PGCOPY_TRAILER } from '../src/codec/pgcopy';
import { copyIn } from '../src/db/sql/copy-in';
import { median, round } from './lib/stats';

type Copy = (c: PoolClient, table: string, columns: string, chunks: Uint8Array[]) => Promise<void>;

const streamed: Copy = async (c, table, columns, chunks) => {
  const stream = c.query(copyFrom(`COPY ${table} (${columns}) FROM STDIN (FORMAT binary)`));
  await pipeline(Readable.from([PGCOPY_HEADER, ...chunks, PGCOPY_TRAILER], { objectMode: false }), stream);
};

async function main() {
  const url = process.argv[2] ?? process.env.DATABASE_URL;
  if (!url) throw new Error('usage: copy-in-ab <databaseUrl>');
  const pool = new Pool({ connectionString: url, max: 1 });
  await pool.query('CREATE TABLE IF NOT EXISTS copy_in_ab (id uuid PRIMARY KEY, n bigint NOT NULL, note text NOT NULL)');
  const c = await pool.connect();
  const chunk = (rows: number) => { const w = new CopyWriter(); for (let i = 0; i < rows; i++) w.row(3).uuid(randomUUID()).int8(i).text('x'.repeat(200)); return w.finish(); };
  const run = async (copy: Copy, n: number, rows: number) => {
    const chunks = Array.from({ length: n }, () => chunk(rows));
    const u0 = process.cpuUsage();
    const t0 = performance.now();
    for (const ch of chunks) { await c.query('BEGIN'); await copy(c, 'copy_in_ab', 'id, n, note', [ch]); await c.query('COMMIT'); }
    const u = process.cpuUsage(u0);
    return { wallUs: ((performance.now() - t0) * 1000) / n, cpuUs: (u.user + u.system) / n };
  };
  const out: Array<{ rows: number; how: string; wallUs: number; cpuUs: number }> = [];
  try {
    for (const rows of [11, 270]) {
      const xs: Record<string, Array<{ wallUs: number; cpuUs: number }>> = { 'one write': [], 'pg-copy-streams': [] };
      for (let r = 0; r < 3; r++) {
        xs['pg-copy-streams'].push(await run(streamed, 1000, rows));
        xs['one write'].push(await run(copyIn, 1000, rows));
      }
      for (const [how, v] of Object.entries(xs)) out.push({ rows, how, wallUs: round(median(v.map((x) => x.wallUs))), cpuUs: round(median(v.map((x) => x.cpuUs))) });
    }
  } finally {
    await c.query('DROP TABLE IF EXISTS copy_in_ab');
    c.release();
    await pool.end();
  }
  console.log('| rows | COPY | wall µs / transaction | client CPU µs / transaction |\n|---:|---|---:|---:|');
  for (const o of out) console.log(`| ${o.rows} | ${o.how} | ${o.wallUs} | ${o.cpuUs} |`);
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
