/**
 * What a producer that aims ids at one hash costs the main thread.
 * FNV-1a collisions are cheap for a known start: vary five hex digits of an
 * id until two variants take FNV to the same state, chain 12 such blocks
 * (six in the account id, six in the command id), and the 4,096 (account,
 * command) pairs that come out all share PairHash.first for that seed (and
 * for any seed with the same low 7 bits), and one shard. The lookups are
 * knownBefore's, Postgres answering nothing, so every re-sent pair is looked
 * for in the batch still committing.
 *
 * Rows, ms per batch:
 * - hits: the 4,096 decided in one batch and re-sent in the next, under the
 *   daemon's random seed (the ids mostly miss it), under seed 0 (the one they
 *   were made for: every lookup past DecidedLookup's limit, so its key
 *   index), and random ids;
 * - misses: one colliding pair, the first decided among 4,095 random ones,
 *   the second (never decided) re-sent 4,095 times in the next batch, each
 *   copy a lookup under the shared hash; and the same with random ids.
 * The median of 7 rounds, the first round not counted.
 *
 *   node dist/bench/resend-collisions.js
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { PairHash } from '../src/codec/hash';
import { decideShard } from '../src/pipeline/commands/decide-shard';
import { ResentCommands } from '../src/pipeline/commands/resent-commands';
import { Packer } from '../src/pipeline/pack';
import { median } from './lib/stats';

const FNV_PRIME = 16777619;
const HEX = '0123456789abcdef';

/** 2^blocks pairs sharing PairHash.first(account, command, seed), chained FNV-1a internal collisions. */
function collidingPairs(blocks: number, seed: number): Array<[string, string]> {
  const chars = `${'00000000-0000-4000-8000-000000000000'}/${'00000000-0000-4000-8000-000000000000'}`.split('');
  // the hex digits we may vary, in five-digit blocks (the version and variant digits stay)
  const free = chars.map((_, i) => i).filter((i) => chars[i] === '0');
  const chosen: Array<{ at: number[]; a: string; b: string }> = [];
  let state = (0x811c9dc5 ^ seed) >>> 0, pos = 0;
  for (let block = 0; block < blocks; block++) {
    const at = free.slice(block * 5, block * 5 + 5);
    for (; pos < at[0]; pos++) state = Math.imul(state ^ chars[pos].charCodeAt(0), FNV_PRIME);
    const end = at[4];
    const seen = new Map<number, string>();
    let found: [string, string, number] | undefined;
    for (let v = 0; v < 1 << 20 && !found; v++) {
      const seg = chars.slice(at[0], end + 1);
      at.forEach((p, j) => { seg[p - at[0]] = HEX[(v >> (4 * j)) & 15]; });
      let s = state;
      for (const c of seg) s = Math.imul(s ^ c.charCodeAt(0), FNV_PRIME);
      s >>>= 0;
      const text = seg.join('');
      const prev = seen.get(s);
      if (prev !== undefined) found = [prev, text, s];
      else seen.set(s, text);
    }
    if (!found) throw new Error(`no collision in block ${block}`);
    chosen.push({ at: [at[0], end], a: found[0], b: found[1] });
    for (let j = at[0]; j <= end; j++) chars[j] = found[0][j - at[0]];
    state = found[2];
    pos = end + 1;
  }
  return Array.from({ length: 1 << blocks }, (_, m) => {
    const c = chars.slice();
    chosen.forEach(({ at, a, b }, i) => { const s = (m >> i) & 1 ? b : a; for (let j = 0; j < s.length; j++) c[at[0] + j] = s[j]; });
    const text = c.join('');
    return [text.slice(0, 36), text.slice(37)];
  });
}

/** ms for knownBefore of batch 2 (`again`) while batch 1 (`first`) is still committing; `found` originals expected. */
async function lookupMs(first: Array<[string, string]>, again: Array<[string, string]>, seed: number | undefined, found: number): Promise<number> {
  const pool = { query: async () => ({ rows: [] }) } as unknown as Pool;
  const resent = new ResentCommands(pool, undefined, 60_000, seed);
  const p = new Packer();
  first.forEach(([accountId, commandId], i) => p.message(0, i, accountId, Buffer.from(JSON.stringify({ commandId, accountId, type: 'Deposit', amount: '1.00' }))));
  const decided = decideShard({ msgs: p.finish(), states: [], known: null, replayBelow: null, maxMessageBytes: 65_536, nowMs: Date.now(), hashSeed: resent.seed });
  const one = resent.pairs();
  for (const [a, c] of first) resent.add(one, a, c, false);
  resent.decided(1, [decided.decided]);
  const two = resent.pairs();
  for (const [a, c] of again) resent.add(two, a, c, false);
  const t = performance.now();
  const known = await resent.knownBefore(2, two);
  const ms = performance.now() - t;
  if ((known?.size ?? 0) !== found) throw new Error(`found ${known?.size} originals, expected ${found}`);
  return ms;
}

const randomPairs = (n: number): Array<[string, string]> => Array.from({ length: n }, () => [randomUUID(), randomUUID()]);

async function main(): Promise<void> {
  const made = performance.now();
  const crafted = collidingPairs(12, 0);
  const hashes = new Set(crafted.map(([a, c]) => PairHash.first(a, c, 0)));
  console.log(`${crafted.length} pairs, ${new Set(crafted.map(([a, c]) => `${a}/${c}`)).size} distinct, ${hashes.size} hash(es) under seed 0, made in ${Math.round(performance.now() - made)} ms\n`);
  const random = randomPairs(crafted.length);
  const [q, missing] = crafted;
  const others = randomPairs(crafted.length - 1);
  const cases: Array<[string, Array<[string, string]>, Array<[string, string]>, number | undefined, number]> = [
    ['hits: ids made for seed 0, the daemon\'s random seed', crafted, crafted, undefined, crafted.length],
    ['hits: ids made for seed 0, seed 0 (DecidedLookup\'s key index)', crafted, crafted, 0, crafted.length],
    ['hits: random ids', random, random, undefined, random.length],
    ['misses: one colliding pair, seed 0, the second re-sent 4,095 times', [q, ...others], others.map(() => missing), 0, 0],
    ['misses: random ids, one re-sent 4,095 times', [random[0], ...others], others.map(() => random[1]), undefined, 0],
  ];
  console.log('| batch of 4,096 | knownBefore ms (median) |\n|---|---:|');
  for (const [name, first, again, seed, found] of cases) {
    const ms: number[] = [];
    for (let round = 0; round < 7; round++) { const t = await lookupMs(first, again, seed, found); if (round > 0) ms.push(t); }
    console.log(`| ${name} | ${median(ms).toFixed(1)} |`);
  }
}

void main();
