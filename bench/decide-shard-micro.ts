/**
 * decideShard alone, for interleaved before/after checks of the command
 * worker's hot path: 20,000 deposits and withdrawals over 1,000 open
 * accounts in one task, 30 runs, the median of the last 25 as µs per command.
 *
 *   node dist/bench/decide-shard-micro.js [packageDir]
 *
 * packageDir (default: this checkout) is a checkout with a dist/, e.g. a
 * `git worktree` of the build before a change; run both in turn, several rounds.
 */
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { packageRoot } from '../src/paths';

type Decide = typeof import('../src/pipeline/commands/decide-shard');
type Pack = typeof import('../src/pipeline/pack');

const dir = path.resolve(process.argv[2] ?? packageRoot());
/* eslint-disable @typescript-eslint/no-require-imports -- the module under test is loaded from the checkout given */
const { decideShard } = require(path.join(dir, 'dist/src/pipeline/commands/decide-shard')) as Decide;
const { Packer } = require(path.join(dir, 'dist/src/pipeline/pack')) as Pack;
/* eslint-enable @typescript-eslint/no-require-imports */

const accounts = Array.from({ length: 1000 }, () => randomUUID());
const states = accounts.map((accountId) => ({ accountId, version: 1, balance: 1e9, currency: 'USD', status: 'open' as const, ownerName: '' }));
const p = new Packer(1 << 20);
for (let i = 0; i < 20_000; i++) {
  const accountId = accounts[i % accounts.length];
  p.message(0, i, accountId, Buffer.from(JSON.stringify({ commandId: randomUUID(), type: i % 3 ? 'Deposit' : 'Withdraw', accountId, amount: '12.34' })));
}
const msgs = p.finish();
const times: number[] = [];
for (let r = 0; r < 30; r++) {
  const t0 = process.hrtime.bigint();
  decideShard({ msgs, states, known: null, replayBelow: null, maxMessageBytes: 65_536, nowMs: Date.now(), hashSeed: 0 });
  if (r >= 5) times.push(Number(process.hrtime.bigint() - t0) / 1e3 / 20_000);
}
times.sort((a, b) => a - b);
process.stdout.write(`${times[times.length >> 1].toFixed(3)} µs per command (${dir})\n`);
