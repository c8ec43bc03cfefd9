/**
 * `node dist/bench/payload-column.js <databaseUrl>`: what Postgres spends on
 * the events table's `payload` column as `jsonb` (today) against `json` and
 * plain `text`, #15 item 4. The same event rows as the pipeline encodes them
 * (bench/lib/limits.ts) go by durable binary COPY into three copies of the
 * events table that differ only in that column's type, interleaved, 3 rounds;
 * then the state load of a cold account (src/db/sql/load-latest-states.ts,
 * `payload->'data'`; a text column is cast to jsonb first) for 2,000
 * accounts per statement against each.
 *
 * Postgres's CPU is read from /proc for the backend serving the connection,
 * so it is the server's work alone, not the client's. Prints Markdown and the
 * figures as JSON.
 */
import { readFileSync } from 'node:fs';
import { Client } from 'pg';
import { copyIn } from '../src/db/sql/copy-in';
import { EVENT_COLUMNS } from '../src/codec/rows';
import { encodedEventBatches } from './lib/limits';
import { median, round } from './lib/stats';

type Kind = 'jsonb' | 'json' | 'text';
const KINDS: Kind[] = ['jsonb', 'json', 'text'];
const PAYLOAD_FIELD = 4; // the fifth of EVENT_COLUMNS

/** CPU seconds (user + system) of one process, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/**
 * The same binary COPY rows with the payload field re-typed: jsonb's binary
 * form is a version byte then the text; json and text are the text alone.
 */
function withoutJsonbVersion(data: Uint8Array): Uint8Array {
  const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.alloc(src.length);
  let i = 0;
  let o = 0;
  while (i < src.length) {
    const fields = src.readInt16BE(i);
    out.writeInt16BE(fields, o); i += 2; o += 2;
    for (let f = 0; f < fields; f++) {
      const len = src.readInt32BE(i); i += 4;
      if (len < 0) { out.writeInt32BE(len, o); o += 4; continue; }
      const skip = f === PAYLOAD_FIELD ? 1 : 0;
      if (skip && src[i] !== 1) throw new Error('payload is not jsonb version 1');
      out.writeInt32BE(len - skip, o); o += 4;
      src.copy(out, o, i + skip, i + len); o += len - skip; i += len;
    }
  }
  return out.subarray(0, o);
}

async function main() {
  const url = process.argv[2] ?? process.env.DATABASE_URL;
  if (!url) throw new Error('usage: payload-column <databaseUrl>');
  const c = new Client({ connectionString: url });
  await c.connect();
  const backend = Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  const table = (k: Kind) => `payload_ab_${k}`;
  const batchesJsonb = encodedEventBatches(200_000, 4000);
  const batches: Record<Kind, Uint8Array[]> = {
    jsonb: batchesJsonb.map((b) => b.data),
    json: batchesJsonb.map((b) => withoutJsonbVersion(b.data)),
    text: batchesJsonb.map((b) => withoutJsonbVersion(b.data)),
  };
  const rows = batchesJsonb.reduce((n, b) => n + b.rows, 0);
  const accounts: string[] = []; // the rows' accounts, read back after the first copy
  const ddl = (k: Kind) => `CREATE TABLE ${table(k)} (
    account_id uuid NOT NULL, version bigint NOT NULL CHECK (version >= 1), event_id uuid NOT NULL, event_type text NOT NULL,
    payload ${k} NOT NULL, command_id uuid NOT NULL, recorded_at timestamptz NOT NULL,
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(), position bigint GENERATED ALWAYS AS IDENTITY,
    source_partition integer, source_offset bigint,
    PRIMARY KEY (account_id, version), UNIQUE (account_id, command_id))`;
  const copyAll = async (k: Kind) => {
    await c.query(`DROP TABLE IF EXISTS ${table(k)}`);
    await c.query(ddl(k));
    const cpu0 = cpuSeconds(backend);
    const t0 = performance.now();
    for (const data of batches[k]) {
      await c.query('BEGIN');
      await copyIn(c as never, table(k), EVENT_COLUMNS, [data]);
      await c.query('COMMIT');
    }
    const wall = (performance.now() - t0) / 1000;
    return { pgUsPerRow: ((cpuSeconds(backend) - cpu0) * 1e6) / rows, rowsPerS: rows / wall };
  };
  const load = async (k: Kind, ids: string[]) => {
    // a text column has to be parsed as JSON to be read by key
    const data = k === 'text' ? `(e.payload::jsonb)->'data'` : `e.payload->'data'`;
    const sql = `SELECT e.account_id, e.version, e.event_type, ${data} AS data
       FROM unnest($1::uuid[]) AS a(id)
       CROSS JOIN LATERAL (SELECT account_id, version, event_type, payload FROM ${table(k)}
                            WHERE account_id = a.id ORDER BY version DESC LIMIT 1) e`;
    const cpu0 = cpuSeconds(backend);
    const t0 = performance.now();
    let n = 0;
    // 20 passes, so that the backend's CPU is many clock ticks
    for (let pass = 0; pass < 20; pass++) for (let i = 0; i < ids.length; i += 2000) n += (await c.query(sql, [ids.slice(i, i + 2000)])).rowCount ?? 0;
    if (n !== 20 * ids.length) throw new Error(`${k}: loaded ${n} of ${20 * ids.length} states`);
    return { pgUsPerState: ((cpuSeconds(backend) - cpu0) * 1e6) / n, msPer2000: ((performance.now() - t0) * 2000) / n };
  };
  const copies: Record<Kind, Array<{ pgUsPerRow: number; rowsPerS: number }>> = { jsonb: [], json: [], text: [] };
  const loads: Record<Kind, Array<{ pgUsPerState: number; msPer2000: number }>> = { jsonb: [], json: [], text: [] };
  const sizes: Record<Kind, number> = { jsonb: 0, json: 0, text: 0 };
  try {
    for (let r = 0; r < 3; r++) {
      for (const k of r % 2 ? [...KINDS].reverse() : KINDS) copies[k].push(await copyAll(k));
      if (accounts.length === 0) accounts.push(...(await c.query<{ id: string }>(`SELECT DISTINCT account_id::text AS id FROM ${table('jsonb')}`)).rows.map((x) => x.id));
      for (const k of KINDS) await c.query(`VACUUM ANALYZE ${table(k)}`);
      for (const k of r % 2 ? [...KINDS].reverse() : KINDS) loads[k].push(await load(k, accounts));
    }
    for (const k of KINDS) sizes[k] = Number((await c.query<{ n: string }>(`SELECT pg_table_size('${table(k)}')::text AS n`)).rows[0].n);
  } finally {
    for (const k of KINDS) await c.query(`DROP TABLE IF EXISTS ${table(k)}`);
    await c.end();
  }
  const out = KINDS.map((k) => ({
    payload: k,
    rows,
    copyRowsPerS: round(median(copies[k].map((x) => x.rowsPerS))),
    copyPgUsPerRow: round(median(copies[k].map((x) => x.pgUsPerRow)), 1),
    loadPgUsPerState: round(median(loads[k].map((x) => x.pgUsPerState)), 1),
    loadMsPer2000: round(median(loads[k].map((x) => x.msPer2000)), 1),
    tableBytesPerRow: Math.round(sizes[k] / rows),
  }));
  console.log(`${rows} event rows in 4,000-row durable COPY transactions; ${accounts.length} accounts' latest states loaded 2,000 per statement, 20 times; medians of 3 interleaved rounds\n`);
  console.log('| payload | COPY rows/s | Postgres CPU µs / row (COPY) | Postgres CPU µs / state (load) | ms per 2,000 states | table bytes / row |\n|---|---:|---:|---:|---:|---:|');
  for (const o of out) console.log(`| ${o.payload} | ${o.copyRowsPerS} | ${o.copyPgUsPerRow} | ${o.loadPgUsPerState} | ${o.loadMsPer2000} | ${o.tableBytesPerRow} |`);
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
