/**
 * What a producer that could aim ids at one hash would cost the main thread.
 * FNV-1a collisions are cheap for a known start: vary five hex digits of an
 * id until two variants take FNV to the same state, chain 12 such blocks
 * (six in the account id, six in the command id), and the 4,096 (account,
 * command) pairs that come out all share PairHash.first for that seed, and
 * one shard. They are decided in one batch and re-sent in the next while it
 * commits; the lookups are knownBefore's (Postgres answering nothing, so
 * every pair is looked for in the batch still committing).
 *
 * Rows: ids made for seed 0 under the daemon's random seed (they miss it),
 * the same ids under seed 0 (every lookup past DecidedLookup's limit for one
 * hash, so its key index), and random ids. ms per batch of 4,096 re-sends,
 * the median of 7 rounds, the first round not counted.
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

/** ms for knownBefore of a batch re-sending every pair of the batch before, still committing. */
async function lookupMs(pairs: Array<[string, string]>, seed: number | undefined): Promise<number> {
  const pool = { query: async () => ({ rows: [] }) } as unknown as Pool;
  const resent = new ResentCommands(pool, undefined, 60_000, seed);
  const p = new Packer();
  pairs.forEach(([accountId, commandId], i) => p.message(0, i, accountId, Buffer.from(JSON.stringify({ commandId, accountId, type: 'Deposit', amount: '1.00' }))));
  const decided = decideShard({ msgs: p.finish(), states: [], known: null, replayBelow: null, maxMessageBytes: 65_536, nowMs: Date.now(), hashSeed: resent.seed });
  const first = resent.pairs();
  for (const [a, c] of pairs) resent.add(first, a, c, false);
  resent.decided(1, [decided.decided]);
  const again = resent.pairs();
  for (const [a, c] of pairs) resent.add(again, a, c, false);
  const t = performance.now();
  const known = await resent.knownBefore(2, again);
  const ms = performance.now() - t;
  if (known?.size !== pairs.length) throw new Error(`found ${known?.size} of ${pairs.length} originals`);
  return ms;
}

async function main(): Promise<void> {
  const made = performance.now();
  const crafted = collidingPairs(12, 0);
  const hashes = new Set(crafted.map(([a, c]) => PairHash.first(a, c, 0)));
  console.log(`${crafted.length} pairs, ${new Set(crafted.map(([a, c]) => `${a}/${c}`)).size} distinct, ${hashes.size} hash(es) under seed 0, made in ${Math.round(performance.now() - made)} ms\n`);
  const cases: Array<[string, Array<[string, string]>, number | undefined]> = [
    ['ids made for seed 0, the daemon\'s random seed', crafted, undefined],
    ['ids made for seed 0, seed 0 (DecidedLookup\'s key index)', crafted, 0],
    ['random ids, the daemon\'s random seed', crafted.map(() => [randomUUID(), randomUUID()]), undefined],
  ];
  console.log('| re-sent batch of 4,096 | knownBefore ms (median) |\n|---|---:|');
  for (const [name, pairs, seed] of cases) {
    const ms: number[] = [];
    for (let round = 0; round < 7; round++) { const t = await lookupMs(pairs, seed); if (round > 0) ms.push(t); }
    console.log(`| ${name} | ${median(ms).toFixed(1)} |`);
  }
}

void main();
