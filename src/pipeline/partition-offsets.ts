/**
 * Where each assigned partition stands in Postgres (docs/architecture.md §4):
 * the next offset committed with the data, read when the partition is
 * assigned and moved forward as batches commit. The consumer starts there;
 * a message below it is a replay.
 */
import type { Pool } from 'pg';
import { readOffsets, type StoredOffset } from '../db/sql/consumer-offsets';
import type { StartOffset, Tp } from '../kafka/consumer';

export class PartitionOffsets {
  /** partition -> first offset not yet committed in Postgres (as stored when assigned, then as batches commit) */
  readonly committed = new Map<number, number>();
  /** next offsets stored in Postgres, as read by the latest resolveStart */
  private stored = new Map<number, number>();

  constructor(private readonly group: string, private readonly topic: string, private readonly reset: 'earliest' | 'latest') {}

  /** Where each partition starts: `startFrom` its stored offsets, or the reset policy's end when none are stored. */
  async resolveStart(pool: Pool, tps: Tp[], startFrom: (s: StoredOffset) => number): Promise<StartOffset[]> {
    const stored = await readOffsets(pool, this.group, this.topic, tps.map((t) => t.partition));
    this.stored = new Map([...stored].map(([p, s]) => [p, s.nextOffset]));
    return tps.map((tp) => {
      const s = stored.get(tp.partition);
      if (!s) return { ...tp, offset: this.reset === 'earliest' ? 'beginning' : 'end', stored: false };
      const offset = startFrom(s);
      return { ...tp, offset, stored: true, ...(offset < s.nextOffset ? { applied: s.nextOffset } : {}) };
    });
  }

  /**
   * The partitions were assigned: what resolveStart read just before is what
   * is committed (no second query, whose late answer could move an offset
   * back after a batch committed).
   */
  assigned(partitions: number[]): void {
    this.committed.clear();
    for (const p of partitions) {
      const next = this.stored.get(p);
      if (next !== undefined) this.committed.set(p, next);
    }
  }

  /** A batch committed up to `next`; offsets never move back. */
  advance(next: ReadonlyMap<number, number>): void {
    for (const [p, n] of next) this.committed.set(p, Math.max(n, this.committed.get(p) ?? 0));
  }
}
