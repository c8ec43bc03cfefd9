/**
 * The projection role (docs/architecture.md §1): consume bank.events, shard
 * by account, and in workers parse, drop what is already projected, fold and
 * encode; then, in the core's one transaction per flush, COPY
 * transaction_projections and upsert account_projections through a staging
 * table. The partitioned-pipeline core (../partitioned-pipeline.ts) does the rest.
 *
 * Exactly-once in the read models: the offsets commit with the rows, and on
 * assignment the consumer seeks to them. Re-sent events (a relay's
 * at-least-once, a replay) are dropped by version. A flush whose rows meet a
 * key another writer already holds is redone with versions read from
 * Postgres. While a projection rebuild runs (or one was interrupted) the
 * flush waits; backpressure pauses consumption meanwhile.
 */
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { DaemonContext } from '../../daemon';
import type { Message } from '../../kafka/consumer';
import { copyIn } from '../../db/sql/copy-in';
import { upsertAccountProjections } from '../../db/sql/upsert-account-projections';
import { projectorWriteGate } from '../../db/sql/projection-rebuilds';
import { encodeEnvelope } from '../../codec/envelope';
import type { EventType } from '../../domain/types';
import type { DeadMessage } from '../dead-letter';
import { CANARY_PARTITION, type DeadLetter, type PipelineRole, type Preparation, type RoleSettings, type WriteResult } from '../role';
import { createWorkerPool, type WorkerPool } from '../worker-pool';
import { asConsumed, FlushInput, packChunk, type EventChunk, type SourceMessage } from './event-chunk';
import { TRANSACTION_COLUMNS } from '../../codec/rows';
import { projectShard, type ProjectResult, type ProjectTask } from './project-shard';
import { ProjectedVersions } from './projected-versions';

export interface ProjectedFlush {
  seq: number;
  input: FlushInput;
  results: ProjectResult[];
  /** accountId -> version this flush projects it to */
  advanced: Map<string, number>;
  workerSeconds: number;
}

const GATE_WHY = {
  'rebuild-running': 'a projection rebuild is running; projections wait for it',
  'rebuild-interrupted': 'a projection rebuild was interrupted; projections wait until `banking-es rebuild-projections` completes it',
} as const;

export class ProjectionRole implements PipelineRole<EventChunk, FlushInput, ProjectedFlush> {
  readonly settings: RoleSettings;
  readonly workers: WorkerPool<ProjectTask, ProjectResult>;
  private readonly versions: ProjectedVersions;
  private readonly shards: number;

  constructor(private readonly ctx: DaemonContext) {
    const { config } = ctx;
    const p = config.projections;
    this.settings = {
      name: 'projections', noun: 'event', topic: config.kafka.topics.events, group: config.kafka.projectionGroupId, dlqTopic: config.kafka.topics.eventsDlq,
      batchTimeMs: p.batchTimeMs, batchSize: p.batchSize, maxInFlight: p.maxInFlight,
      // a consume call is packed as one chunk, and a flush takes whole chunks: none may exceed a flush
      consumeBatch: Math.min(2000, p.batchSize),
      // redone once with versions from Postgres; each conflict after that is a real fault, counted and backed off
      maxRedos: 1,
    };
    this.workers = createWorkerPool(config.pipeline.workers, 'projection-worker.js', projectShard);
    this.versions = new ProjectedVersions(config.pipeline.stateCacheSize);
    this.shards = Math.max(1, p.shards);
  }

  /** A consume call's messages are sharded and packed at once (event-chunk.ts says why). */
  itemsOf(msgs: Message[]): EventChunk[] {
    return [packChunk(msgs, this.shards)];
  }

  weight(c: EventChunk): number {
    return c.count;
  }

  batchOf(chunks: EventChunk[]): FlushInput {
    return new FlushInput(chunks, this.shards);
  }

  halves(input: FlushInput): [FlushInput, FlushInput] {
    const msgs = input.all();
    const mid = msgs.length >> 1;
    return [this.flushOf(msgs.slice(0, mid)), this.flushOf(msgs.slice(mid))];
  }

  first(input: FlushInput): DeadMessage {
    return input.all()[0];
  }

  /** A new account opened, then a deposit: an account row and a transaction row. */
  canary(): FlushInput {
    const accountId = randomUUID();
    const recordedAt = new Date().toISOString();
    const envelope = (version: number, type: EventType, data: Record<string, unknown>) =>
      encodeEnvelope({ eventId: randomUUID(), accountId, version, type, data, commandId: randomUUID(), recordedAt });
    return this.flushOf([
      envelope(1, 'AccountCreated', { ownerName: 'banking-es canary', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }),
      envelope(2, 'MoneyDeposited', { amount: '1.00', currency: 'USD', balanceAfter: '100' }),
    ].map((value, i): SourceMessage => ({ key: accountId, value: Buffer.from(value), headers: [], partition: CANARY_PARTITION, offset: i })));
  }

  private flushOf(msgs: SourceMessage[]): FlushInput {
    return new FlushInput([packChunk(msgs.map((m) => asConsumed(this.settings.topic, m)), this.shards)], this.shards);
  }

  /** A new owner may follow a writer whose commits this process never saw. */
  assigned(): void {
    this.versions.clear();
  }

  /** Projects a flush in the workers, one task per shard; what it advances is pending until it commits. */
  async prepare(input: FlushInput, seq: number, how: Preparation<never>): Promise<ProjectedFlush> {
    const versions = await this.versions.load(this.ctx.pool, input.accounts.flatMap((s) => [...s]), seq, how.careful);
    const t0 = performance.now();
    const results = await Promise.all(input.packs.map((msgs, i) => {
      const projectedIds: string[] = [];
      const projectedVersions: number[] = [];
      for (const id of input.accounts[i]) {
        const v = versions.get(id);
        if (v) { projectedIds.push(id); projectedVersions.push(v); }
      }
      // the pool moves what it is given; a copy goes, the pack stays here for a redo and for dead letters
      return this.workers.run({ msgs: new Uint8Array(msgs), projectedIds, projectedVersions });
    }));
    const workerSeconds = (performance.now() - t0) / 1000;
    const advanced = new Map<string, number>();
    for (const r of results) for (let k = 0; k < r.advancedIds.length; k++) advanced.set(r.advancedIds[k], r.advancedVersions[k]);
    this.versions.prepared(seq, advanced);
    return { seq, input, results, advanced, workerSeconds };
  }

  workerSeconds(p: ProjectedFlush): number {
    return p.workerSeconds;
  }

  deadLetters(p: ProjectedFlush): DeadLetter[] {
    return p.results.flatMap((r, i) => r.dlq.map((d) => ({ message: p.input.source(i, d.index), code: d.code, reason: d.message })));
  }

  async write(client: PoolClient, p: ProjectedFlush): Promise<WriteResult> {
    const gate = await projectorWriteGate(client);
    if (gate !== 'open') {
      // the rebuild rewrites every projection: what we knew is void
      this.versions.clear();
      return { gated: gate, why: GATE_WHY[gate] };
    }
    const { results } = p;
    if (results.some((r) => r.transactionCount)) await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, results.map((r) => r.transactions));
    if (results.some((r) => r.accountCount)) await upsertAccountProjections(client, results.map((r) => r.accounts));
    return 'written';
  }

  committed(p: ProjectedFlush, seq: number): void {
    const { metrics, log } = this.ctx;
    this.versions.committed(seq, p.advanced);
    let newest = 0;
    for (const r of p.results) {
      metrics.eventsProjected.inc({ result: 'applied' }, r.applied);
      metrics.eventsProjected.inc({ result: 'stale' }, r.stale);
      metrics.eventsProjected.inc({ result: 'tombstone' }, r.tombstones);
      metrics.eventsProjected.inc({ result: 'dlq' }, r.dlq.length);
      if (r.gapCount) {
        metrics.projectionGaps.inc(r.gapCount);
        log.warn({ gaps: r.gaps, count: r.gapCount }, 'events with a version gap projected: history started mid-stream for these accounts (earlier versions never reached this consumer)');
      }
      if (r.newestRecordedAtMs > newest) newest = r.newestRecordedAtMs;
    }
    if (newest > 0) metrics.projectionLagSeconds.set(Math.max(0, (Date.now() - newest) / 1000));
  }

  abandon(seq: number): void {
    this.versions.abandon(seq);
  }
}
