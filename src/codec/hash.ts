/**
 * FNV-1a over a string's UTF-16 code units: the one hash every thread uses,
 * for the shard of an account (identical on the main thread and in workers)
 * and, with a seed, for an (account, command) pair (PairHash).
 */
export function fnv1a(s: string, seed = 0): number {
  let h = (2166136261 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The shard of an account among `shards`. */
export function shardOf(accountId: string, shards: number): number {
  return fnv1a(accountId) % shards;
}

const FNV_OFFSET = 2166136261;
const SECOND_SEED = 0x9e3779b9;

/**
 * The two hashes of an (account, command) pair, for the re-send filter's
 * probes (src/pipeline/commands/resent-commands.ts): fnv1a with the two seeds
 * over `account/command`, taken in ONE pass over the two ids as they are, so
 * no key string is built; then each mixed (murmur3's fmix32). FNV-1a's low
 * bits depend only on the characters' low bits, and hex digits 1–6 share
 * theirs with a–f: without the mix, ids a producer varies only that way would
 * all probe one sixteenth of the filter and be taken for re-sends far more
 * often (each costing a Postgres lookup, never a wrong answer). h1 alone
 * (first()) indexes a batch's decided outcomes
 * (src/pipeline/commands/decided-outcomes.ts).
 */
export class PairHash {
  h1 = 0;
  h2 = 0;

  /**
   * `seed` starts both hashes (XORed into FNV's offset basis). A process
   * picks a random one (ResentCommands.seed). It narrows, and does not stop,
   * ids aimed at one hash: FNV-1a collisions are cheap to make for a known
   * start (chained, thousands of pairs with one hash in seconds), and with
   * ASCII ids whether two collide depends on the seed's low 7 bits alone, so
   * ids made for one seed collide under 1 in 128. What bounds their cost is
   * the lookup (DecidedLookup); in the filter they cost Postgres lookups,
   * never wrong answers.
   */
  constructor(private readonly seed = 0) {}

  of(accountId: string, commandId: string): this {
    let a = (FNV_OFFSET ^ this.seed) >>> 0, b = (FNV_OFFSET ^ SECOND_SEED ^ this.seed) >>> 0;
    for (let i = 0; i < accountId.length; i++) { const c = accountId.charCodeAt(i); a = Math.imul(a ^ c, 16777619); b = Math.imul(b ^ c, 16777619); }
    a = Math.imul(a ^ 0x2f, 16777619); b = Math.imul(b ^ 0x2f, 16777619); // '/'
    for (let i = 0; i < commandId.length; i++) { const c = commandId.charCodeAt(i); a = Math.imul(a ^ c, 16777619); b = Math.imul(b ^ c, 16777619); }
    this.h1 = fmix32(a);
    this.h2 = fmix32(b) | 1;
    return this;
  }

  /** h1 alone (with `seed` as the constructor's), for an index that needs one hash: half the work of of(). */
  static first(accountId: string, commandId: string, seed: number): number {
    let a = (FNV_OFFSET ^ seed) >>> 0;
    for (let i = 0; i < accountId.length; i++) a = Math.imul(a ^ accountId.charCodeAt(i), 16777619);
    a = Math.imul(a ^ 0x2f, 16777619); // '/'
    for (let i = 0; i < commandId.length; i++) a = Math.imul(a ^ commandId.charCodeAt(i), 16777619);
    return fmix32(a);
  }
}

/** murmur3's finalizer: every input bit reaches every output bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
