/**
 * FNV-1a over a string's UTF-16 code units: the one hash every thread uses,
 * for the shard of an account (identical on the main thread and in workers)
 * and for the Bloom filter's probes (with a seed).
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
