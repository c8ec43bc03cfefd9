/**
 * The projector's hot path alone, for interleaved before/after checks:
 * packChunk (main thread, per consume call), projectShard (worker) and,
 * within it, scanEnvelope (the envelope's fast path) over
 * 20,000 events of 5,000 accounts as the relays publish them, 30 runs, the
 * median of the last 25 as µs per event.
 *
 *   node dist/bench/project-shard-micro.js [packageDir]
 *
 * packageDir (default: this checkout) is a checkout with a dist/, e.g. a
 * `git worktree` of the build before a change; run both in turn, several rounds.
 */
import * as path from 'node:path';
import { packageRoot } from '../src/paths';
import { eventHistory } from './lib/events';
import type { Message } from '../src/kafka/consumer';

type Project = typeof import('../src/pipeline/projections/project-shard');
type Chunk = typeof import('../src/pipeline/projections/event-chunk');
type Scan = typeof import('../src/codec/envelope-scan');

const dir = path.resolve(process.argv[2] ?? packageRoot());
/* eslint-disable @typescript-eslint/no-require-imports -- the module under test is loaded from the checkout given */
const { projectShard } = require(path.join(dir, 'dist/src/pipeline/projections/project-shard')) as Project;
const { packChunk } = require(path.join(dir, 'dist/src/pipeline/projections/event-chunk')) as Chunk;
const { scanEnvelope } = require(path.join(dir, 'dist/src/codec/envelope-scan')) as Scan;
/* eslint-enable @typescript-eslint/no-require-imports */

const N = 20_000;
const h = eventHistory(N, 5000, 7);
const msgs = h.events.map((e, i) => ({ topic: 'bank.events', partition: i & 3, offset: i, key: Buffer.from(e.key), value: e.value, size: e.value.length })) as unknown as Message[];

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

const pack: number[] = [];
const project: number[] = [];
const scan: number[] = [];
for (let r = 0; r < 30; r++) {
  let t0 = process.hrtime.bigint();
  // as consumed: calls of 2,000 messages (projections.consumeBatch), one shard, so one task below
  const chunks = [];
  for (let i = 0; i < N; i += 2000) chunks.push(packChunk(msgs.slice(i, i + 2000), 1));
  if (r >= 5) pack.push(Number(process.hrtime.bigint() - t0) / 1e3 / N);
  const task = Buffer.concat(chunks.map((c) => c.packs[0]!));
  t0 = process.hrtime.bigint();
  const res = projectShard({ msgs: task, projectedIds: [], projectedVersions: [] });
  if (r >= 5) project.push(Number(process.hrtime.bigint() - t0) / 1e3 / N);
  if (res.applied !== N) throw new Error(`applied ${res.applied} of ${N}`);
  t0 = process.hrtime.bigint();
  let scanned = 0;
  for (const e of h.events) if (scanEnvelope(e.value)) scanned++;
  if (r >= 5) scan.push(Number(process.hrtime.bigint() - t0) / 1e3 / N);
  if (scanned !== N) throw new Error(`the fast path read ${scanned} of ${N}`);
}
process.stdout.write(`packChunk ${median(pack).toFixed(3)} · projectShard ${median(project).toFixed(3)} (of it scanEnvelope ${median(scan).toFixed(3)}) µs per event (${dir})\n`);
