/**
 * What the hand-off of a decided slice costs in structured clone, and which
 * of its parts: a command worker's result for 4,000 deposits and withdrawals
 * over 1,000 accounts, serialized and deserialized with v8's serializer (the
 * one worker messages use), whole and without its parts in turn. Prints µs
 * per command for each, the median of 5 rounds of 50.
 *
 *   node dist/bench/hand-off-clone-micro.js
 */
import * as v8 from 'node:v8';
import { randomUUID } from 'node:crypto';
import { decideShard } from '../src/pipeline/commands/decide-shard';
import { DecidedWriter, decidedEntries } from '../src/pipeline/commands/decided-outcomes';
import { Packer } from '../src/pipeline/pack';
import { median } from './lib/stats';

const N = 4000;
const accounts = Array.from({ length: 1000 }, () => randomUUID());
const states = accounts.map((accountId) => ({ accountId, version: 1, balance: 1e9, currency: 'USD', status: 'open' as const, ownerName: '' }));
const p = new Packer(1 << 20);
for (let i = 0; i < N; i++) {
  const accountId = accounts[i % accounts.length];
  p.message(0, i, accountId, Buffer.from(JSON.stringify({ commandId: randomUUID(), type: i % 3 ? 'Deposit' : 'Withdraw', accountId, amount: '12.34' })));
}
const result = decideShard({ msgs: p.finish(), states, known: null, replayBelow: null, maxMessageBytes: 65_536, nowMs: Date.now(), hashSeed: 0 });

const none = new DecidedWriter(0).finish();
const variants: Array<[string, object]> = [
  ['the whole result (`decided` packed, decided-outcomes.ts)', result],
  ['the whole result with `decided` a Map of outcome objects (as before 2026-12-03)', { ...result, decided: new Map(decidedEntries(result.decided)) }],
  ['without `decided` (the outcomes a later batch may meet re-sent)', { ...result, decided: none }],
  ['without `decided` and the accepted pairs', { ...result, decided: none, acceptedAccounts: [], acceptedCommands: [] }],
  ['the row and outcome buffers alone', { events: result.events, outcomes: result.outcomes }],
];

console.log('| what is cloned | serialize µs per command | deserialize µs per command | bytes per command |\n|---|---:|---:|---:|');
for (const [name, value] of variants) {
  const ser: number[] = [], de: number[] = [];
  let bytes = Buffer.alloc(0);
  for (let round = 0; round < 6; round++) {
    let t = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) bytes = v8.serialize(value);
    const s = Number(process.hrtime.bigint() - t) / 1e3 / 50 / N;
    t = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) v8.deserialize(bytes);
    const d = Number(process.hrtime.bigint() - t) / 1e3 / 50 / N;
    if (round > 0) { ser.push(s); de.push(d); } // the first round warms up
  }
  console.log(`| ${name} | ${median(ser).toFixed(2)} | ${median(de).toFixed(2)} | ${Math.round(bytes.length / N)} |`);
}
