/**
 * Projected version per account, for dropping re-sent events before they
 * reach a worker: an in-process LRU in front of account_projections. The LRU
 * is updated only after a commit, so it never runs ahead of Postgres; it can
 * fall behind when another writer (a rebuild, a zombie after a rebalance)
 * advanced an account, and then the transaction rows hit their primary key
 * and the batch is redone with versions read from Postgres.
 *
 * Flush N+1 is prepared while flush N commits, so N's versions are kept as
 * pending, tagged with N's sequence number: a flush sees the pending versions
 * of earlier flushes only. They become the LRU's when N commits and are
 * dropped when it does not (the flushes after it are then prepared again).
 */
import type { Pool, PoolClient } from 'pg';
import { loadProjectedVersions } from '../../db/sql/projected-versions';

export class ProjectedVersions {
  private readonly lru = new Map<string, number>();
  private readonly pending = new Map<string, { seq: number; v: number }>();

  constructor(private readonly maxSize: number) {}

  /** Version of each id (0 = not projected) as flush `seq` must see it. `careful` skips the caches (reads Postgres). */
  async load(db: Pool | PoolClient, ids: string[], seq: number, careful = false): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const missing: string[] = [];
    for (const id of ids) {
      const p = careful ? undefined : this.pending.get(id);
      const v = p && p.seq < seq ? p.v : careful ? undefined : this.lru.get(id);
      if (v === undefined) missing.push(id);
      else out.set(id, v);
    }
    if (missing.length) {
      const loaded = await loadProjectedVersions(db, missing);
      for (const id of missing) {
        const v = loaded.get(id) ?? 0;
        out.set(id, v);
        this.remember(id, v);
      }
    }
    return out;
  }

  /** Flush `seq` was prepared with these versions; flushes after it see them until it commits or fails. */
  prepared(seq: number, versions: Map<string, number>): void {
    for (const [id, v] of versions) this.pending.set(id, { seq, v });
  }

  /** Flush `seq` committed the versions it was prepared with. */
  committed(seq: number, versions: Map<string, number>): void {
    for (const [id, v] of versions) {
      this.remember(id, v);
      if (this.pending.get(id)?.seq === seq) this.pending.delete(id);
    }
  }

  /** Flush `seq` did not commit as prepared: forget what it and every later flush were prepared with. */
  abandon(seq: number): void {
    for (const [id, p] of this.pending) if (p.seq >= seq) this.pending.delete(id);
  }

  clear(): void {
    this.lru.clear();
    this.pending.clear();
  }

  get size(): number {
    return this.lru.size;
  }

  private remember(id: string, v: number): void {
    this.lru.delete(id);
    this.lru.set(id, v);
    if (this.lru.size > this.maxSize) this.lru.delete(this.lru.keys().next().value as string);
  }
}
