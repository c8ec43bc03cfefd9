/**
 * Projected version per account, for dropping re-sent events before they
 * reach a worker: an in-process LRU in front of account_projections. It is
 * updated only after a commit, so it never runs ahead of Postgres; it can
 * fall behind when another writer (a rebuild, a zombie after a rebalance)
 * advanced an account, and then the transaction rows hit their primary key
 * and the batch is redone with versions read fresh.
 */
import type { Pool, PoolClient } from 'pg';
import { loadProjectedVersions } from '../db/sql/projected-versions';

export class ProjectedVersions {
  private readonly lru = new Map<string, number>();

  constructor(private readonly maxSize: number) {}

  /** Version of each id (0 = not projected). `fresh` skips the cache. */
  async load(db: Pool | PoolClient, ids: string[], fresh = false): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const missing: string[] = [];
    for (const id of ids) {
      const v = fresh ? undefined : this.lru.get(id);
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

  committed(versions: Record<string, number>): void {
    for (const id of Object.keys(versions)) this.remember(id, versions[id]);
  }

  clear(): void {
    this.lru.clear();
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
