/**
 * A slice's decided outcomes, packed for the hand-off to the main thread
 * (src/pipeline/commands/decided-outcomes.ts): every outcome comes back as it
 * was decided, found by its pair, and nothing is found that was not decided.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomInt, randomUUID } from 'node:crypto';
import { DecidedLookup, DecidedWriter, decidedEntries, outcomeValue } from '../../../src/pipeline/commands/decided-outcomes';
import { outcomeKey, type KnownOutcome } from '../../../src/pipeline/commands/decide-shard';
import { PairHash } from '../../../src/codec/hash';

/** the seed a daemon picks at random (ResentCommands.seed) */
const SEED = randomInt(0, 2 ** 32);
const find = (lookup: DecidedLookup, a: string, c: string) => lookup.find(outcomeKey(a, c), PairHash.first(a, c, SEED));

const deposit = (version: number): KnownOutcome => ({ status: 'accepted', type: 'Deposit', version, balance: '12.50' });
const kinds: KnownOutcome[] = [
  deposit(7),
  { status: 'accepted', type: 'Transfer', version: 8, balance: '2.50', transfer: { toAccountId: randomUUID(), amount: '10.00', currency: 'EUR' } },
  { status: 'rejected', type: 'Withdraw', reason: 'INSUFFICIENT_FUNDS', detail: 'balance 2.50 is less than 9.00' },
  // free text echoed from input: quotes, backslashes, a line break, a control character, non-ASCII, a pair and lone surrogates
  { status: 'rejected', type: 'Dep"os\\it\n€\u0001', reason: 'INVALID_COMMAND', detail: 'amount: "1e309" is not money ✓ \ud83d\ude00' },
  { status: 'rejected', type: 'a\ud800b', reason: 'INVALID_COMMAND', detail: '\udfff\u2028end\ud83d' },
  { status: 'rejected', type: 'Transfer', reason: 'SAME_ACCOUNT', toAccountId: randomUUID() },
  // where Postgres says the original was read (a decided outcome has none yet; the value carries it if it does)
  { status: 'accepted', type: 'Withdraw', version: 2 ** 40, balance: '0.00', sourcePartition: 3, sourceOffset: 2 ** 50 },
  { status: 'rejected', type: 'Deposit', reason: 'ACCOUNT_CLOSED', sourcePartition: 0, sourceOffset: 0 },
];

test('an outcome\'s value is JSON that reads back as the same outcome', () => {
  for (const o of kinds) {
    const v = outcomeValue(o);
    assert.equal(JSON.parse(v), o, v);
    assert.equal(JSON.parse(v), JSON.parse(JSON.stringify(o)));
  }
});

test('every outcome comes back as it was decided, found by its pair, in the order decided', () => {
  const w = new DecidedWriter(SEED);
  // more than the writer's first hash array, so it grows
  const written = Array.from({ length: 5000 }, (_, i) => ({ a: randomUUID(), c: randomUUID(), o: kinds[i % kinds.length] }));
  for (const { a, c, o } of written) w.add(a, c, outcomeKey(a, c), o);
  const d = w.finish();
  assert.is(d.hashes.length, written.length);
  assert.is(d.hashes.buffer.byteLength, written.length * 4, 'the hashes own a buffer of their size: transferred, they hold only the used entries');
  assert.is(d.offsets.buffer.byteLength, written.length * 4);
  assert.equal(decidedEntries(d), written.map(({ a, c, o }) => [outcomeKey(a, c), o]));
  const lookup = new DecidedLookup(d);
  for (const { a, c, o } of written) assert.equal(find(lookup, a, c), o);
});

test('nothing is found that was not decided: another pair, the ids swapped, another slice', () => {
  const w = new DecidedWriter(SEED);
  const [a, c] = [randomUUID(), randomUUID()];
  w.add(a, c, outcomeKey(a, c), kinds[0]);
  const lookup = new DecidedLookup(w.finish());
  assert.is(find(lookup, a, randomUUID()), undefined);
  assert.is(find(lookup, c, a), undefined);
  assert.is(find(new DecidedLookup(new DecidedWriter(SEED).finish()), a, c), undefined);
});

test('pairs that share a hash are told apart by their keys, wherever they sit', () => {
  // a collision is one pair in 2^32 by chance: made here by giving records 1, 3 and 5 one hash (above 2^31 too)
  for (const same of [12345, 0xfffffff0]) {
    const w = new DecidedWriter(SEED);
    const pairs = Array.from({ length: 6 }, () => [randomUUID(), randomUUID()] as const);
    pairs.forEach(([a, c], i) => w.add(a, c, outcomeKey(a, c), deposit(i)));
    const d = w.finish();
    d.hashes[1] = d.hashes[3] = d.hashes[5] = same;
    const lookup = new DecidedLookup(d);
    for (const i of [5, 1, 3]) assert.equal(lookup.find(outcomeKey(...pairs[i]), same), deposit(i));
    assert.is(lookup.find(outcomeKey(randomUUID(), randomUUID()), same), undefined, 'a pair never decided, with the shared hash');
    assert.is(lookup.find(outcomeKey(...pairs[2]), same), undefined, 'a decided pair under a hash that is not its own');
    for (const i of [0, 2, 4]) assert.equal(lookup.find(outcomeKey(...pairs[i]), PairHash.first(...pairs[i], SEED)), deposit(i), 'the others, by their own hashes');
  }
});

test('many records under one hash (a producer that could aim ids at one): every one found, misses too, in any order', () => {
  const w = new DecidedWriter(SEED);
  const pairs = Array.from({ length: 300 }, () => [randomUUID(), randomUUID()] as const);
  pairs.forEach(([a, c], i) => w.add(a, c, outcomeKey(a, c), deposit(i)));
  const d = w.finish();
  const same = 0x9e3779b9;
  for (let i = 0; i < pairs.length; i += 2) d.hashes[i] = same; // 150 of them, past the lookup's limit for one hash
  const lookup = new DecidedLookup(d);
  assert.is(lookup.find(outcomeKey(randomUUID(), randomUUID()), same), undefined, 'a miss first, under the shared hash');
  const order = pairs.map((_, i) => i).sort(() => Math.random() - 0.5);
  for (const i of order) {
    const hash = i % 2 === 0 ? same : PairHash.first(...pairs[i], SEED);
    assert.equal(lookup.find(outcomeKey(...pairs[i]), hash), deposit(i), `record ${i}`);
  }
  assert.is(lookup.find(outcomeKey(pairs[1][1], pairs[1][0]), same), undefined, 'a pair never decided, after the keys were indexed');
});

test('records sharing a hash in small groups, interleaved: each found along its own chain, misses end at its end', () => {
  const w = new DecidedWriter(SEED);
  const pairs = Array.from({ length: 60 }, () => [randomUUID(), randomUUID()] as const);
  pairs.forEach(([a, c], i) => w.add(a, c, outcomeKey(a, c), deposit(i)));
  const d = w.finish();
  // three groups of 8 (at the lookup's limit, so no key index) under three hashes, every third record each
  const group = (i: number) => 1000 + (i % 3);
  for (let i = 0; i < 24; i++) d.hashes[i * 2] = group(i);
  const lookup = new DecidedLookup(d);
  for (let n = 0; n < 3; n++) assert.is(lookup.find(outcomeKey(randomUUID(), randomUUID()), 1000 + n), undefined, `a miss under hash ${1000 + n}`);
  for (let i = 0; i < 24; i++) assert.equal(lookup.find(outcomeKey(...pairs[i * 2]), group(i)), deposit(i * 2), `record ${i * 2}`);
  assert.is(lookup.find(outcomeKey(...pairs[0]), 1001), undefined, 'a decided pair on another group\'s chain');
});

test('the hashes are the seed\'s: another seed gives another hash for a pair', () => {
  const [a, c] = [randomUUID(), randomUUID()];
  const seeds = Array.from({ length: 50 }, () => randomInt(0, 2 ** 32));
  assert.ok(new Set(seeds.map((s) => PairHash.first(a, c, s))).size >= 49, 'one pair, 50 seeds');
  assert.is(PairHash.first(a, c, SEED), new PairHash(SEED).of(a, c).h1, 'first() is the filter\'s h1 with the same seed');
});

test.run();
