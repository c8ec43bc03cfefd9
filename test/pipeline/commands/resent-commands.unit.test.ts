/**
 * The Bloom filter that recognises re-sent commands before their batch is
 * decided (src/pipeline/commands/resent-commands.ts): never a false "new"
 * within its window, few false "seen", and the pair is ordered (account,
 * command), not a set of two ids.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { RecentCommands } from '../../../src/pipeline/commands/resent-commands';
import { PairHash, fmix32, fnv1a } from '../../../src/codec/hash';

const pairs = (n: number): Array<[string, string]> => Array.from({ length: n }, () => [randomUUID(), randomUUID()]);

test('a pair recorded no more than capacity records ago is always seen again', () => {
  const capacity = 20_000;
  const recent = new RecentCommands(capacity);
  const all = pairs(4 * capacity);
  // each step records a new pair and looks up an older one (recording it again): two records a step,
  // so a lag of capacity/2 steps is at most `capacity` records, across generations turning over
  const lag = capacity / 2 - 1;
  all.forEach(([a, c], i) => {
    const seen = recent.record(a, c);
    if (i < 10) assert.not.ok(seen, 'the first pairs are new');
    if (i >= lag) assert.ok(recent.record(...all[i - lag]), `pair ${i - lag} recorded ${lag} steps ago and not seen`);
  });
});

test('pairs never recorded are seldom taken for re-sends (~0.3% designed, under 1% asserted)', () => {
  const recent = new RecentCommands(50_000);
  for (const [a, c] of pairs(50_000)) recent.record(a, c);
  let falseHits = 0;
  const fresh = pairs(20_000);
  for (const [a, c] of fresh) if (recent.record(a, c)) falseHits++;
  assert.ok(falseHits / fresh.length < 0.01, `false positives ${falseHits} of ${fresh.length}`);
});

test('the pair is ordered, and the command alone or the account alone is not the pair', () => {
  const recent = new RecentCommands(1000);
  const [a, c] = [randomUUID(), randomUUID()];
  assert.not.ok(recent.record(a, c));
  assert.not.ok(recent.record(c, a), 'the ids swapped are another pair');
  assert.not.ok(recent.record(a, randomUUID()), 'another command on the account');
  assert.not.ok(recent.record(randomUUID(), c), 'the same command id on another account');
  assert.ok(recent.record(a, c));
});

test('older than two generations, a pair is forgotten (the unique keys catch it at commit)', () => {
  const capacity = 5_000;
  const recent = new RecentCommands(capacity);
  const first = pairs(capacity);
  for (const [a, c] of first) recent.record(a, c);
  for (const [a, c] of pairs(2 * capacity)) recent.record(a, c);
  let still = 0;
  for (const [a, c] of first) if (recent.record(a, c)) still++;
  assert.ok(still / first.length < 0.05, `${still} of ${first.length} still seen after two full generations`);
});

test('the pair\'s hashes are fnv1a\'s two seeds over account/command, mixed, taken without building that string', () => {
  const hash = new PairHash();
  for (const [a, c] of pairs(2000)) {
    const { h1, h2 } = hash.of(a, c);
    assert.is(h1, fmix32(fnv1a(`${a}/${c}`, 0)));
    assert.is(h2, fmix32(fnv1a(`${a}/${c}`, 0x9e3779b9)) | 1);
    assert.is(PairHash.first(a, c, 0), h1, 'first() is h1 alone');
  }
  const seed = 0x5eed1234;
  const seeded = new PairHash(seed);
  for (const [a, c] of pairs(200)) {
    const { h1, h2 } = seeded.of(a, c);
    assert.is(h1, fmix32(fnv1a(`${a}/${c}`, seed)), 'a seed starts FNV where fnv1a\'s seed does');
    assert.is(h2, fmix32(fnv1a(`${a}/${c}`, (0x9e3779b9 ^ seed) >>> 0)) | 1);
  }
});

test('command ids a producer varies only in the digits that share their low bits with a-f are not taken for re-sends more often', () => {
  // FNV-1a alone: every such id's low 4 hash bits are equal, so its probes use a sixteenth of the filter (~8% false positives here)
  const base = '12345612-3456-4123-9456-123456123456';
  const swap: Record<string, string> = { 1: 'a', 2: 'b', 3: 'c', 4: 'd', 5: 'e', 6: 'f' };
  const positions = [...base].map((ch, i) => (swap[ch] && i !== 14 && i !== 19 ? i : -1)).filter((i) => i >= 0);
  const crafted = (n: number) => { const id = [...base]; positions.forEach((p, bit) => { if (Math.floor(n / 2 ** bit) % 2 === 1) id[p] = swap[id[p]]; }); return id.join(''); };
  const recent = new RecentCommands(200_000);
  const account = randomUUID();
  let hits = 0;
  for (let i = 0; i < 200_000; i++) if (recent.record(account, crafted(i))) hits++;
  assert.ok(hits / 200_000 < 0.01, `${hits} of 200000 crafted, never-sent commands taken for re-sends`);
});

test.run();
