/**
 * Events committed before the relay's slot existed are not in its stream
 * (a new slot decodes only transactions that commit after its consistent
 * point). When the relay creates its slot, it therefore publishes every
 * event already in the table first, from a snapshot taken after the slot was
 * created: transactions running while the slot was being created have ended
 * by then, so none is missed, and those committing after appear in both (the
 * projections skip what they already have). A marker row, written before the
 * slot is created and cleared only when the backfill completed, makes a crash
 * in between repeat the backfill instead of losing it.
 */
import type { Pool } from 'pg';
import type { DaemonContext } from '../daemon';

const PAGE = 5000;
// ORDER BY names the table's columns: a bare `version` would bind to the text output column and sort 1, 10, 2 …

export async function markBackfillPending(pool: Pool, marker: string): Promise<void> {
  await pool.query(
    `INSERT INTO relay_checkpoints (relay, tx_id, position) VALUES ($1, '0'::xid8, 0)
     ON CONFLICT (relay) DO UPDATE SET position = 0, updated_at = now()`,
    [marker],
  );
}

export async function backfillPending(pool: Pool, marker: string): Promise<boolean> {
  const { rows } = await pool.query<{ position: string }>('SELECT position::text FROM relay_checkpoints WHERE relay = $1', [marker]);
  return rows[0]?.position === '0';
}

/** Publishes every event in the table to the event topic (keyed by account, in version order per account), then clears the marker. */
export async function backfill(ctx: DaemonContext, marker: string): Promise<number> {
  const { pool, producer, config, log, metrics } = ctx;
  let after: [string, string] | null = null;
  let published = 0;
  for (;;) {
    type Row = { account_id: string; version: string; payload: string };
    const res: { rows: Row[] } = after
      ? await pool.query<Row>('SELECT e.account_id, e.version::text AS version, e.payload::text AS payload FROM events e WHERE (e.account_id, e.version) > ($1::uuid, $2::bigint) ORDER BY e.account_id, e.version LIMIT $3', [after[0], after[1], PAGE])
      : await pool.query<Row>('SELECT e.account_id, e.version::text AS version, e.payload::text AS payload FROM events e ORDER BY e.account_id, e.version LIMIT $1', [PAGE]);
    const rows: Row[] = res.rows;
    if (rows.length === 0) break;
    await Promise.all(rows.map((r) => producer.send({ topic: config.kafka.topics.events, key: r.account_id, value: Buffer.from(r.payload) })));
    published += rows.length;
    metrics.relayEventsPublished.inc({ mode: 'backfill' }, rows.length);
    const last: Row = rows[rows.length - 1];
    after = [last.account_id, last.version];
    if (published % 50_000 < PAGE) log.info({ published }, 'relay backfill in progress');
  }
  await pool.query("UPDATE relay_checkpoints SET position = 1, updated_at = now() WHERE relay = $1", [marker]);
  return published;
}
