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
import type { DaemonContext } from '../daemon';
import { markBackfillDone } from '../db/sql/backfill-marker';
import { readEventsInOrder } from '../db/sql/events-in-order';

export { backfillPending, markBackfillPending } from '../db/sql/backfill-marker';

const PAGE = 5000;

/** Publishes every event in the table to the event topic (keyed by account, in version order per account), then clears the marker. */
export async function backfill(ctx: DaemonContext, marker: string): Promise<number> {
  const { pool, producer, config, log, metrics } = ctx;
  let after: { accountId: string; version: number } | null = null;
  let published = 0;
  for (;;) {
    const rows = await readEventsInOrder(pool, after, PAGE);
    if (rows.length === 0) break;
    await Promise.all(rows.map((r) => producer.send({ topic: config.kafka.topics.events, key: r.account_id, value: Buffer.from(r.payload) })));
    published += rows.length;
    metrics.relayEventsPublished.inc({ mode: 'backfill' }, rows.length);
    const last = rows[rows.length - 1];
    after = { accountId: last.account_id, version: Number(last.version) };
    if (published % 50_000 < PAGE) log.info({ published }, 'relay backfill in progress');
  }
  await markBackfillDone(pool, marker);
  return published;
}
