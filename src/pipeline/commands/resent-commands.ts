/**
 * Re-sent commands recognised before deciding (docs/architecture.md §2.2):
 * the main thread scans each message's commandId, and those the in-process
 * Bloom filter (or Redis's shared window) has seen are looked up in Postgres,
 * so their original outcomes go into the first decision. An original still
 * committing in an earlier batch is found among that batch's decided
 * outcomes, kept here until it commits.
 */
import { randomInt } from 'node:crypto';
import type { Pool } from 'pg';
import { findKnownOutcomes } from '../../db/sql/find-known-outcomes';
import { claimCommands, redisIsReady, type RedisClient } from '../../redis';
import { outcomeKey, type KnownOutcome } from './decide-shard';
import { DecidedLookup, type DecidedOutcomes } from './decided-outcomes';
import { PairHash } from '../../codec/hash';
import { isUuid } from '../../codec/command';

/*
 * A Bloom filter of the (account, command) pairs this process committed
 * recently, so a re-sent command is recognised BEFORE its batch is decided
 * (Postgres is then asked about those few pairs only) instead of surfacing
 * as a unique violation at commit and costing a redo of the whole batch.
 * Two generations: when the current one is full it becomes the old one, so
 * the filter always covers the last `capacity`…2×`capacity` commands and its
 * false-positive rate stays bounded (~0.3% at 16 bits per entry, 4 probes).
 * A false positive costs one index probe; a miss (older than the window, or
 * written before a restart) is still caught by the unique keys at commit.
 */
const BITS_PER_ENTRY = 16;
const PROBES = 4;

class Bloom {
  private readonly bits: Uint32Array;
  private readonly mask: number;
  count = 0;
  constructor(capacity: number) {
    let size = 1024;
    while (size < capacity * BITS_PER_ENTRY) size *= 2;
    this.bits = new Uint32Array(size / 32);
    this.mask = size - 1;
  }
  /** `h1`, `h2`: the key's two hashes (PairHash); the probes are h1 + i·h2 */
  add(h1: number, h2: number): void {
    for (let i = 0; i < PROBES; i++) { const b = (h1 + i * h2) & this.mask; this.bits[b >>> 5] |= 1 << (b & 31); }
    this.count++;
  }
  has(h1: number, h2: number): boolean {
    for (let i = 0; i < PROBES; i++) { const b = (h1 + i * h2) & this.mask; if ((this.bits[b >>> 5] & (1 << (b & 31))) === 0) return false; }
    return true;
  }
}

export class RecentCommands {
  private current: Bloom;
  private old: Bloom | undefined;
  private readonly hash: PairHash;
  /** `seed`: PairHash's; a random one per process in the daemon (ResentCommands) */
  constructor(private readonly capacity = 1_000_000, seed = 0) {
    this.current = new Bloom(capacity);
    this.hash = new PairHash(seed);
  }
  /** Records the pair; true when it may have been recorded before (false: it certainly was not, within the window). */
  record(accountId: string, commandId: string): boolean {
    const { h1, h2 } = this.hash.of(accountId, commandId);
    const seen = this.current.has(h1, h2) || (this.old?.has(h1, h2) ?? false);
    if (this.current.count >= this.capacity) { this.old = this.current; this.current = new Bloom(this.capacity); }
    this.current.add(h1, h2);
    return seen;
  }
}

const COMMAND_ID = Buffer.from('"commandId"');

/**
 * The commandId of a JSON command, found by a byte scan rather than a parse
 * (the worker parses properly later). Returns null when it is not plainly
 * there or not a UUID: the unique keys still protect that command, only less cheaply.
 */
export function scanCommandId(value: Buffer | null | undefined): string | null {
  if (!value) return null;
  let i = value.indexOf(COMMAND_ID);
  if (i < 0) return null;
  i += COMMAND_ID.length;
  while (i < value.length && (value[i] === 0x20 || value[i] === 0x3a || value[i] === 0x0a || value[i] === 0x09 || value[i] === 0x0d)) i++;
  if (value[i] !== 0x22 || i + 37 >= value.length || value[i + 37] !== 0x22) return null;
  const id = value.toString('latin1', i + 1, i + 37);
  // it reaches SQL, Redis keys and the Bloom filter: a UUID, or not used at all
  return isUuid(id) ? id.toLowerCase() : null;
}

/** The (account, command) pairs a batch's scan found: validated, lower-case UUIDs. */
export interface Pairs { accounts: string[]; commands: string[]; bloomHits: number[] }

export class ResentCommands {
  private readonly recent: RecentCommands;
  /** seq -> what that batch decided (one per shard), until it commits or is abandoned */
  private readonly pending = new Map<number, DecidedLookup[]>();

  /**
   * @param seed PairHash's seed for the filter and for the decided outcomes' hashes (the workers get it
   *   in ShardTask.hashSeed): random per process unless given, so ids made to share a hash in one
   *   process mostly do not in another (PairHash)
   */
  constructor(private readonly pool: Pool, private readonly redis: RedisClient | undefined, private readonly windowMs: number,
    readonly seed: number = randomInt(0, 2 ** 32)) {
    this.recent = new RecentCommands(undefined, seed);
  }

  /** A new, empty set of pairs for one batch's scan. */
  pairs(): Pairs {
    return { accounts: [], commands: [], bloomHits: [] };
  }

  /** Adds one scanned pair to the filter; a `careful` preparation records it but does not count it as a re-send (Postgres is read anyway). */
  add(pairs: Pairs, accountId: string, commandId: string, careful: boolean): void {
    if (this.recent.record(accountId, commandId) && !careful) pairs.bloomHits.push(pairs.accounts.length);
    pairs.accounts.push(accountId);
    pairs.commands.push(commandId);
  }

  /** Batch `seq` decided these outcomes (one per shard); later batches may meet re-sends of them. */
  decided(seq: number, decided: DecidedOutcomes[]): void {
    this.pending.set(seq, decided.map((d) => new DecidedLookup(d)));
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
    // each pair once, however many copies the batch holds (a producer may send one thousands of times)
    const byKey = new Map<string, number>();
    for (const i of suspects) byKey.set(outcomeKey(accounts[i], commands[i]), i);
    const idx = [...byKey.values()];
    const known = await findKnownOutcomes(this.pool, idx.map((i) => accounts[i]), idx.map((i) => commands[i]));
    for (const [key, i] of byKey) {
      if (known.has(key) || earlier.length === 0) continue;
      const hash = PairHash.first(accounts[i], commands[i], this.seed);
      for (const d of earlier) {
        const o = d.find(key, hash);
        if (o) { known.set(key, o); break; }
      }
    }
    return known;
  }
}
