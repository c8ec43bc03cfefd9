/**
 * Re-sent commands recognised before deciding (docs/architecture.md §2.2):
 * the main thread scans each message's commandId, and those the in-process
 * Bloom filter (or Redis's shared window) has seen are looked up in Postgres,
 * so their original outcomes go into the first decision. An original still
 * committing in an earlier batch is found among that batch's decided
 * outcomes, kept here until it commits.
 */
import type { Pool } from 'pg';
import { findKnownOutcomes } from '../../db/sql/find-known-outcomes';
import { claimCommands, redisIsReady, type RedisClient } from '../../redis';
import { outcomeKey, type KnownOutcome } from './decide-shard';
import { RecentCommands } from './recent-commands';

/** The (account, command) pairs a batch's scan found: validated, lower-case UUIDs. */
export interface Pairs { accounts: string[]; commands: string[]; bloomHits: number[] }

export class ResentCommands {
  private readonly recent = new RecentCommands();
  /** seq -> what that batch decided, until it commits or is abandoned */
  private readonly pending = new Map<number, Array<Map<string, KnownOutcome>>>();

  constructor(private readonly pool: Pool, private readonly redis: RedisClient | undefined, private readonly windowMs: number) {}

  /** A new, empty set of pairs for one batch's scan. */
  pairs(): Pairs {
    return { accounts: [], commands: [], bloomHits: [] };
  }

  /** Adds one scanned pair; `careful` preparations do not consult the filter (Postgres is read anyway). */
  add(pairs: Pairs, accountId: string, commandId: string, careful: boolean): void {
    const key = outcomeKey(accountId, commandId);
    if (!careful && this.recent.mightHave(key)) pairs.bloomHits.push(pairs.accounts.length);
    this.recent.add(key);
    pairs.accounts.push(accountId);
    pairs.commands.push(commandId);
  }

  /** Batch `seq` decided these outcomes (one map per shard); later batches may meet re-sends of them. */
  decided(seq: number, decided: Array<Map<string, KnownOutcome>>): void {
    this.pending.set(seq, decided);
  }

  committed(seq: number): void {
    this.pending.delete(seq);
  }

  /** Batch `seq` did not commit as decided: forget what it and every later batch decided. */
  abandon(seq: number): void {
    for (const k of this.pending.keys()) if (k >= seq) this.pending.delete(k);
  }

  /**
   * Outcomes Postgres (or an earlier batch still committing) already holds
   * for the pairs that look re-sent: the filter's hits plus, when Redis is
   * up, the pairs its shared SET NX window has seen (so a re-send that reaches
   * another instance after a rebalance is recognised too). Only those pairs
   * are probed; null when none looks re-sent.
   */
  async knownBefore(seq: number, pairs: Pairs): Promise<Map<string, KnownOutcome> | null> {
    const { accounts, commands } = pairs;
    // the outcomes of earlier batches still committing, taken before Postgres is asked: a batch that
    // commits meanwhile is then either in this snapshot or visible to the probe
    const earlier = [...this.pending].filter(([k]) => k < seq).flatMap(([, d]) => d);
    const suspects = new Set(pairs.bloomHits);
    if (redisIsReady(this.redis) && commands.length) {
      try {
        for (const i of await claimCommands(this.redis!, accounts, commands, this.windowMs)) suspects.add(i);
      } catch {
        // Redis is only a filter: the unique keys still decide at commit
      }
    }
    if (suspects.size === 0) return null;
    const idx = [...suspects];
    const known = await findKnownOutcomes(this.pool, idx.map((i) => accounts[i]), idx.map((i) => commands[i]));
    for (const i of idx) {
      const key = outcomeKey(accounts[i], commands[i]);
      if (known.has(key)) continue;
      for (const d of earlier) {
        const o = d.get(key);
        if (o) { known.set(key, o); break; }
      }
    }
    return known;
  }
}
