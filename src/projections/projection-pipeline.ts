/**
 * The projection pipeline (DESIGN §1, role "projections"): consume
 * bank.events, batch (RxJS), shard by account, and in workers parse, drop
 * what is already projected, fold and encode; then ONE Postgres transaction
 * per flush: COPY transaction_projections, upsert account_projections
 * through a staging table, upsert this consumer's offsets.
 *
 * Exactly-once in the read models: the offsets commit with the rows, and on
 * assignment the consumer seeks to them. Re-sent events (a relay's
 * at-least-once, a replay) are dropped by version. A flush whose rows meet a
 * key another writer already holds is redone with versions read from
 * Postgres. While a projection rebuild runs (or one was interrupted) the
 * flush waits and retries; backpressure pauses consumption meanwhile.
 */
import type { PoolClient } from 'pg';
import type { DaemonContext } from '../daemon';
import { GroupConsumer, type Message, type StartOffset, type Tp } from '../kafka/consumer';
import { readOffsets, upsertOffsets } from '../db/sql/consumer-offsets';
import { copyIn } from '../db/sql/copy-in';
import { upsertAccountProjections } from '../db/sql/upsert-account-projections';
import { projectorWriteGate, type WriteGate } from '../db/sql/projection-rebuilds';
import { backoffMs, coerceError, isRetryablePgError, isUniqueViolation } from '../errors';
import { BatchSink } from '../pipeline/batch-sink';
import { CommitChain } from '../pipeline/commit-chain';
import { FlushInput, packChunk, type EventChunk } from './event-chunk';
import { TRANSACTION_COLUMNS, type ProjectResult } from './project-shard';
import { createProjectionPool, type ProjectionPool } from './projection-pool';
import { ProjectedVersions } from './projected-versions';

const SINK = 'projections';

interface Prepared {
  seq: number;
  input: FlushInput;
  results: ProjectResult[];
  /** accountId -> version this flush projects it to */
  advanced: Map<string, number>;
}

/** A flush met rows another writer holds: redo it with versions from Postgres. */
class RedoFresh extends Error {
  constructor() {
    super('transaction_projections already holds rows of this flush (unique violation)');
  }
}

/** A rebuild owns the read models: wait, then redo fresh. */
class RebuildGate extends Error {
  constructor(readonly gate: Exclude<WriteGate, 'open'>) {
    super(gate === 'rebuild-running'
      ? 'a projection rebuild is running; projections wait for it'
      : 'a projection rebuild was interrupted; projections wait until `banking-es rebuild-projections` completes it');
  }
}

export class ProjectionPipeline {
  private readonly consumer: GroupConsumer;
  private readonly sink: BatchSink<EventChunk>;
  private readonly pool: ProjectionPool;
  private readonly versions: ProjectedVersions;
  private readonly topic: string;
  private readonly group: string;
  /** partition -> next offset committed in Postgres. */
  private readonly committedNext = new Map<number, number>();
  private inFlight = 0;
  private stopping = false;
  private gateLogged: string | null = null;
  private readonly utilTimer: NodeJS.Timeout;

  constructor(private readonly ctx: DaemonContext) {
    const { config, log, metrics } = ctx;
    this.topic = config.kafka.topics.events;
    this.group = config.kafka.projectionGroupId;
    this.pool = createProjectionPool(config.pipeline.workers);
    this.versions = new ProjectedVersions(config.pipeline.stateCacheSize);
    this.sink = new BatchSink<EventChunk>(config.projections.batchTimeMs, config.projections.batchSize, (b) => this.handleBatch(b), (c) => c.count);
    // a consume call is packed as one chunk, and a flush takes whole chunks: none may exceed a flush
    const consumeBatch = Math.min(2000, config.projections.batchSize);
    this.consumer = new GroupConsumer(config, log, metrics, { groupId: this.group, topic: this.topic, name: SINK, consumeBatch }, {
      resolveStart: (tps) => this.resolveStart(tps),
      onAssigned: (starts) => this.onAssigned(starts),
      onRevoke: () => this.drain(30_000),
      onMessages: (msgs) => this.onMessages(msgs),
    });
    this.utilTimer = setInterval(() => {
      metrics.workerUtilization.set({ pipeline: SINK }, this.pool.utilization());
      metrics.workerQueue.set({ pipeline: SINK }, this.pool.queueSize());
      this.updateLag();
    }, 1000);
    this.utilTimer.unref();
  }

  async start(): Promise<void> {
    await this.consumer.serve(this.ctx.health, 'projections-consumer');
  }

  /** Stop consuming, let every consumed message commit, release the consumer and the workers. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.utilTimer);
    await this.consumer.stop();
    await this.drain(this.ctx.config.shutdown.timeoutMs);
    this.sink.close();
    await this.consumer.close();
    await this.pool.close();
    this.ctx.health.remove('projections-consumer');
  }

  private async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await this.sink.idle(this.ctx.config.projections.batchTimeMs);
  }

  private async resolveStart(tps: Tp[]): Promise<StartOffset[]> {
    const stored = await readOffsets(this.ctx.pool, this.group, this.topic, tps.map((t) => t.partition));
    return tps.map((tp) => {
      const s = stored.get(tp.partition);
      if (!s) return { ...tp, offset: this.ctx.config.kafka.autoOffsetReset === 'earliest' ? 'beginning' : 'end', stored: false };
      return { ...tp, offset: s.nextOffset, stored: true };
    });
  }

  private onAssigned(starts: StartOffset[]): void {
    this.committedNext.clear();
    for (const s of starts) if (typeof s.offset === 'number') this.committedNext.set(s.partition, s.offset);
    // a new owner may follow a writer whose commits this process never saw
    this.versions.clear();
  }

  private onMessages(msgs: Message[]): void {
    this.inFlight += msgs.length;
    this.ctx.metrics.inFlight.set({ pipeline: SINK }, this.inFlight);
    if (this.inFlight >= this.ctx.config.projections.maxInFlight) {
      this.consumer.setPaused(true);
      this.ctx.metrics.paused.set({ pipeline: SINK }, 1);
    }
    this.sink.push(packChunk(msgs, this.shards));
  }

  private get shards(): number {
    return Math.max(1, this.ctx.config.projections.shards);
  }

  /**
   * Two stages: flush N+1 is prepared (packed, projected in workers, on the
   * versions flush N was prepared with) while flush N commits; flushes commit
   * strictly in order. If N does not commit exactly as prepared (a redo, a
   * retry, a rebuild gate), N+1 is prepared again on what N committed.
   */
  private readonly chain = new CommitChain<Prepared>((seq) => this.versions.abandon(seq));

  private async handleBatch(chunks: EventChunk[]): Promise<void> {
    const started = process.hrtime.bigint();
    const input = new FlushInput(chunks, this.shards);
    await this.chain.next((seq) => this.prepare(input, seq, false), (seq, first) => this.commitStage(input, seq, first, started));
  }

  /** Commits one prepared flush, redoing and retrying as needed; resolves true when it committed as first prepared. Never rejects. */
  private async commitStage(input: FlushInput, seq: number, first: Prepared | undefined, started: bigint): Promise<boolean> {
    const { metrics, log } = this.ctx;
    let fresh = false;
    let prepared = first;
    let clean = first !== undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        prepared ??= await this.prepare(input, seq, fresh);
        await this.commit(prepared);
        if (this.gateLogged) log.info('projection rebuild finished; projections continue');
        this.gateLogged = null;
        break;
      } catch (e) {
        clean = false;
        prepared = undefined;
        this.versions.abandon(seq);
        // redone once with versions from Postgres; a conflict that survives that is a real fault, retried with backoff
        if (e instanceof RedoFresh && !fresh) { fresh = true; continue; }
        if (this.stopping && attempt > 3) {
          log.error({ err: coerceError(e) }, 'giving up on a flush at shutdown; its offsets were not committed, so it is redone on restart');
          break;
        }
        if (e instanceof RebuildGate) {
          // the rebuild rewrites every projection: forget what we knew, and wait without counting it as a failure
          fresh = true;
          this.versions.clear();
          if (this.gateLogged !== e.gate) log.warn({ gate: e.gate }, e.message);
          this.gateLogged = e.gate;
          metrics.retries.inc({ component: SINK, code: e.gate });
          await new Promise((r) => setTimeout(r, 250 + backoffMs(Math.min(attempt, 4), 100, 2000)));
          attempt = Math.min(attempt, 4);
          continue;
        }
        const code = (e as { code?: string }).code ?? 'UNKNOWN';
        metrics.retries.inc({ component: SINK, code });
        const wait = backoffMs(attempt, 100, 5000);
        if (isRetryablePgError(e)) log.warn({ err: coerceError(e), attempt, retryInMs: wait }, 'postgres unavailable; retrying the flush');
        else log.error({ err: coerceError(e), attempt, retryInMs: wait }, 'flush failed; retrying (nothing was committed)');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    this.inFlight -= input.count;
    metrics.inFlight.set({ pipeline: SINK }, this.inFlight);
    metrics.batchSize.observe({ sink: SINK }, input.count);
    metrics.flushDuration.observe({ sink: SINK }, Number(process.hrtime.bigint() - started) / 1e9);
    if (this.inFlight <= this.ctx.config.projections.maxInFlight / 2) {
      this.consumer.setPaused(false);
      metrics.paused.set({ pipeline: SINK }, 0);
    }
    return clean;
  }

  /** Projects a flush in the workers, one task per shard; what it advances is pending until it commits. */
  private async prepare(input: FlushInput, seq: number, fresh: boolean): Promise<Prepared> {
    const versions = await this.versions.load(this.ctx.pool, input.accounts.flatMap((s) => [...s]), seq, fresh);
    const results: ProjectResult[] = await Promise.all(input.packs.map((msgs, i) => {
      const projectedIds: string[] = [];
      const projectedVersions: number[] = [];
      for (const id of input.accounts[i]) {
        const v = versions.get(id);
        if (v) { projectedIds.push(id); projectedVersions.push(v); }
      }
      // the pool moves what it is given; a copy goes, the pack stays here for a redo and for dead letters
      return this.pool.run({ msgs: new Uint8Array(msgs), projectedIds, projectedVersions });
    }));
    const advanced = new Map<string, number>();
    for (const r of results) for (let k = 0; k < r.advancedIds.length; k++) advanced.set(r.advancedIds[k], r.advancedVersions[k]);
    this.versions.prepared(seq, advanced);
    return { seq, input, results, advanced };
  }

  private async commit(p: Prepared): Promise<void> {
    const { config, metrics, pool, log } = this.ctx;
    const { results, input } = p;
    const next = input.next;

    // dead letters are acknowledged before their offsets commit, so none is lost
    const dlqSends: Promise<void>[] = [];
    results.forEach((r, i) => {
      for (const d of r.dlq) {
        const id = `${i}:${d.index}`;
        if (input.deadLettered.has(id)) continue;
        const m = input.source(i, d.index);
        dlqSends.push(this.ctx.producer.send({
          topic: config.kafka.topics.eventsDlq, key: m.key, value: m.value,
          headers: [...m.headers,
            { 'error.code': d.code }, { 'error.message': d.message }, { 'source.topic': this.topic }, { 'source.partition': String(m.partition) }, { 'source.offset': String(m.offset) }],
        }).then(() => {
          input.deadLettered.add(id);
          metrics.dlq.inc({ topic: config.kafka.topics.eventsDlq, reason: d.code });
        }));
      }
    });
    await Promise.all(dlqSends);

    const txCount = results.reduce((s, r) => s + r.transactionCount, 0);
    const accountCount = results.reduce((s, r) => s + r.accountCount, 0);
    const client: PoolClient = await pool.connect();
    try {
      await client.query('BEGIN');
      const gate = await projectorWriteGate(client);
      if (gate !== 'open') throw new RebuildGate(gate);
      if (txCount) await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, results.map((r) => r.transactions));
      if (accountCount) await upsertAccountProjections(client, results.map((r) => r.accounts));
      await upsertOffsets(client, this.group, this.topic, [...next].map(([partition, n]) => ({ partition, next: n, published: null })));
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (isUniqueViolation(e)) {
        client.release();
        metrics.occConflicts.inc();
        log.info({ err: coerceError(e) }, 'projected rows already written by another writer; redoing the flush with versions from postgres');
        throw new RedoFresh();
      }
      client.release(isRetryablePgError(e) ? (e as Error) : undefined);
      throw e;
    }
    client.release();

    // committed: caches, metrics, lag tooling
    this.versions.committed(p.seq, p.advanced);
    let newest = 0;
    for (const r of results) {
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
    for (const [part, n] of next) this.committedNext.set(part, Math.max(n, this.committedNext.get(part) ?? 0));
    this.updateLag();
    this.consumer.commitToKafka([...next].map(([partition, offset]) => ({ topic: this.topic, partition, offset })));
  }

  private updateLag(): void {
    for (const tp of this.consumer.assignment) {
      const hi = this.consumer.cachedHighWatermark(tp.topic, tp.partition);
      const nx = this.committedNext.get(tp.partition);
      if (hi !== undefined && nx !== undefined) this.ctx.metrics.consumerLag.set({ group: this.group, topic: tp.topic, partition: String(tp.partition) }, Math.max(0, hi - nx));
    }
  }
}
