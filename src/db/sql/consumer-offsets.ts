import type { PoolClient, Pool } from 'pg';

export interface StoredOffset { partition: number; nextOffset: number; publishedOffset: number | null }

export async function readOffsets(db: Pool | PoolClient, consumer: string, topic: string, partitions: number[]): Promise<Map<number, StoredOffset>> {
  const { rows } = await db.query<{ partition: number; next_offset: string; published_offset: string | null }>(
    'SELECT partition, next_offset, published_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2 AND partition = ANY($3::int[])',
    [consumer, topic, partitions],
  );
  return new Map(rows.map((r) => [r.partition, { partition: r.partition, nextOffset: Number(r.next_offset), publishedOffset: r.published_offset === null ? null : Number(r.published_offset) }]));
}

/**
 * Written in the same transaction as the batch's data (docs/architecture.md §4). A NULL
 * published offset keeps the stored one; offsets never move backwards, so a
 * stale writer cannot rewind a partition.
 */
export async function upsertOffsets(client: Pool | PoolClient, consumer: string, topic: string, rows: Array<{ partition: number; next: number; published: number | null }>): Promise<void> {
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO consumer_offsets AS o (consumer, topic, partition, next_offset, published_offset)
     SELECT $1, $2, p, n, pub FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS t(p, n, pub)
     ON CONFLICT (consumer, topic, partition) DO UPDATE
       SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset),
           published_offset = COALESCE(GREATEST(o.published_offset, EXCLUDED.published_offset), o.published_offset, EXCLUDED.published_offset),
           updated_at = now()`,
    [consumer, topic, rows.map((r) => r.partition), rows.map((r) => r.next), rows.map((r) => r.published)],
  );
}
