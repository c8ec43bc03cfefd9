/**
 * The projection pipeline (docs/architecture.md §1, role "projections"): consume
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
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { DaemonContext } from '../daemon';
import { GroupConsumer, type Message, type StartOffset, type Tp } from '../kafka/consumer';
import { readOffsets, upsertOffsets } from '../db/sql/consumer-offsets';
import { copyIn } from '../db/sql/copy-in';
import { upsertAccountProjections } from '../db/sql/upsert-account-projections';
import { projectorWriteGate, type WriteGate } from '../db/sql/projection-rebuilds';
import { backoffMs, classifyError, coerceError, errorCodeOf, isRetryablePgError, isUniqueViolation } from '../errors';
import { RetryBudget } from '../retry-budget';
import { encodeEnvelope } from '../codec/envelope';
import type { EventType } from '../domain/types';
import { BatchSink } from '../pipeline/batch-sink';
import { DeadLettered, sendDeadLetter } from '../pipeline/dead-letter';
import { CommitChain } from '../pipeline/commit-chain';
import { asConsumed, FlushInput, packChunk, type EventChunk, type SourceMessage } from './event-chunk';
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

/** How a flush (or part of one) ended: committed as first prepared, committed after a redo or retry, or not committed at all. */
type PartResult = 'clean' | 'committed' | 'abandoned';

/** The canary's messages claim a partition no topic has (partitions are int32 and counted from 0); its transaction is rolled back. */
const CANARY_PARTITION = 0x7fffffff;
/** How long a canary that committed vouches for the schema. */
const CANARY_VALID_MS = 5000;

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
  private readonly budget: RetryBudget;
  /** resolves when stop() begins: a role halted by a fatal error waits for it instead of retrying */
  private stopped!: () => void;
  private readonly stopRequested = new Promise<void>((r) => { this.stopped = r; });
  /** set once a flush was abandoned (a fatal error, or giving up at shutdown): nothing after it may commit */
  private halted = false;
  private canaryPassedAt = 0;
  /** Events dead-lettered by this process and not yet committed past ("partition:offset"): sent once, not on every redo. */
  private readonly deadLettered = new DeadLettered();

  constructor(private readonly ctx: DaemonContext) {
    const { config, log, metrics } = ctx;
    this.topic = config.kafka.topics.events;
    this.group = config.kafka.projectionGroupId;
    this.pool = createProjectionPool(config.pipeline.workers);
    this.versions = new ProjectedVersions(config.pipeline.stateCacheSize);
    this.budget = new RetryBudget(SINK, ctx, config.pipeline.maxRetries);
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
    this.stopped();
    clearInterval(this.utilTimer);
    await this.consumer.stop();
    await this.drain(this.ctx.config.shutdown.timeoutMs);
    this.sink.close();
    await this.consumer.close();
    await this.pool.close();
    this.ctx.health.remove('projections-consumer');
    this.ctx.health.remove(`${SINK}-pipeline`);
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
    this.deadLettered.keepAbove(this.committedNext, starts.map((s) => s.partition));
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

  /** Commits one prepared flush, redoing, retrying and isolating poison as needed; resolves true when it committed as first prepared. Never rejects. */
  private async commitStage(input: FlushInput, seq: number, first: Prepared | undefined, started: bigint): Promise<boolean> {
    const { metrics } = this.ctx;
    const result = await this.commitPart(input, seq, first);
    this.inFlight -= input.count;
    metrics.inFlight.set({ pipeline: SINK }, this.inFlight);
    metrics.batchSize.observe({ sink: SINK }, input.count);
    metrics.flushDuration.observe({ sink: SINK }, Number(process.hrtime.bigint() - started) / 1e9);
    if (this.inFlight <= this.ctx.config.projections.maxInFlight / 2 && !this.halted) {
      this.consumer.setPaused(false);
      metrics.paused.set({ pipeline: SINK }, 0);
    }
    return result === 'clean';
  }

  /**
   * Commits a flush (or part of one being narrowed down), acting on each
   * failure by its class (src/errors.ts): a conflict is redone once with
   * versions from Postgres, a rebuild gate is waited out, a transient or
   * unknown fault is retried with backoff (stalled past pipeline.maxRetries),
   * poison is isolated, a fatal error halts the role. Once anything was
   * abandoned nothing after it commits: that would move the offsets past it.
   */
  private async commitPart(input: FlushInput, seq: number, first?: Prepared): Promise<PartResult> {
    const { metrics, log } = this.ctx;
    let fresh = false;
    let prepared = first;
    let clean = first !== undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.halted) return 'abandoned';
      try {
        prepared ??= await this.prepare(input, seq, fresh);
        await this.commit(prepared);
        this.budget.succeeded();
        if (this.gateLogged) log.info('projection rebuild finished; projections continue');
        this.gateLogged = null;
        return clean ? 'clean' : 'committed';
      } catch (e) {
        clean = false;
        prepared = undefined;
        this.versions.abandon(seq);
        // redone once with versions from Postgres; a conflict that survives that is a real fault, retried with backoff
        if (e instanceof RedoFresh && !fresh) { fresh = true; continue; }
        let errorClass = e instanceof RedoFresh ? 'unknown' : classifyError(e);
        if (this.stopping && (attempt > 3 || errorClass === 'fatal')) return this.halt(e, 'giving up on a flush at shutdown; its offsets and every later flush\'s were not committed, so they are redone on restart');
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
        if (errorClass === 'poison') {
          if (input.count > 1) return this.isolate(input.all(), seq, e);
          if (await this.canaryCommits(seq)) return this.deadLetterPoison(input.all()[0], seq, e);
          // a known-good event fails too: the schema or the database is at fault, not this event
          errorClass = 'unknown';
        }
        const wait = this.budget.failed(e, errorClass, `a projection flush of ${input.count} events`);
        if (errorClass === 'fatal') {
          this.consumer.setPaused(true);
          metrics.paused.set({ pipeline: SINK }, 1);
          await this.stopRequested;
          return this.halt(e, 'stopped by a fatal error; the flush and every later one are redone on restart');
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private halt(e: unknown, why: string): PartResult {
    if (!this.halted) this.ctx.log.error({ err: coerceError(e), errorClass: classifyError(e) }, why);
    this.halted = true;
    return 'abandoned';
  }

  /**
   * A flush failed because of one event's content: commit its events in two
   * halves, in (partition, offset) order, so per-account version order holds,
   * splitting whichever half fails the same way until the culprit stands
   * alone; it is dead-lettered to bank.events.dlq and its offset committed past.
   */
  private async isolate(msgs: SourceMessage[], seq: number, cause: unknown): Promise<PartResult> {
    this.ctx.log.warn({ err: coerceError(cause), events: msgs.length, from: `${msgs[0].partition}:${msgs[0].offset}` }, 'a projection flush failed on its content; splitting it to isolate the event');
    const mid = msgs.length >> 1;
    for (const half of [msgs.slice(0, mid), msgs.slice(mid)]) {
      const input = new FlushInput([packChunk(half.map((m) => asConsumed(this.topic, m)), this.shards)], this.shards);
      if ((await this.commitPart(input, seq)) === 'abandoned') return 'abandoned';
    }
    return 'committed';
  }

  /**
   * Before one event is dead-lettered for its content, a known-good flush (a
   * new account opened, then a deposit: an account row and a transaction row)
   * is projected and committed the same way, then rolled back. If it fails
   * too, the schema or the database is at fault (a column type changed, a
   * constraint added): dead-lettering would drain every event to the DLQ one
   * by one, so the pipeline retries and stalls instead.
   */
  private async canaryCommits(seq: number): Promise<boolean> {
    // many poison events in a row: one canary in a few seconds is enough
    if (Date.now() - this.canaryPassedAt < CANARY_VALID_MS) return true;
    const accountId = randomUUID();
    const recordedAt = new Date().toISOString();
    const envelope = (version: number, type: EventType, data: Record<string, unknown>) =>
      encodeEnvelope({ eventId: randomUUID(), accountId, version, type, data, commandId: randomUUID(), recordedAt });
    const events = [
      envelope(1, 'AccountCreated', { ownerName: 'banking-es canary', currency: 'USD', initialBalance: '0.00', balanceAfter: '0' }),
      envelope(2, 'MoneyDeposited', { amount: '1.00', currency: 'USD', balanceAfter: '100' }),
    ].map((value, i): SourceMessage => ({ key: accountId, value: Buffer.from(value), headers: [], partition: CANARY_PARTITION, offset: i }));
    try {
      const input = new FlushInput([packChunk(events.map((m) => asConsumed(this.topic, m)), this.shards)], this.shards);
      await this.commit(await this.prepare(input, seq, true), { dryRun: true });
      this.canaryPassedAt = Date.now();
      return true;
    } catch (e) {
      this.ctx.log.warn({ err: coerceError(e) }, 'a known-good flush fails to commit too: not dead-lettering the event');
      return false;
    } finally {
      this.versions.abandon(seq);
    }
  }

  private async deadLetterPoison(m: SourceMessage, seq: number, cause: unknown): Promise<PartResult> {
    const sqlstate = errorCodeOf(cause);
    // a replayed offset was dead-lettered before the offset past it committed
    const replayed = m.offset < (this.committedNext.get(m.partition) ?? -1);
    if (!replayed) this.ctx.log.error({ err: coerceError(cause), sqlstate, partition: m.partition, offset: m.offset }, 'poison event isolated: its content fails the projection commit; dead-lettered, the partition goes on');
    const failure = await this.budget.untilDone('dead-lettering a poison event', async () => {
      if (!replayed) await this.sendDeadLetter(m, 'POISON', coerceError(cause).message, sqlstate);
      await upsertOffsets(this.ctx.pool, this.group, this.topic, [{ partition: m.partition, next: m.offset + 1, published: null }]);
    }, () => this.stopping || this.halted);
    if (failure !== undefined) return this.halt(failure, 'could not commit past a dead-lettered event; it and every later flush are redone on restart');
    // what the failed attempts prepared for this seq is stale: the next part loads versions afresh
    this.versions.abandon(seq);
    this.afterCommit(new Map([[m.partition, m.offset + 1]]));
    return 'committed';
  }

  /** To bank.events.dlq with the original key, value and headers plus why (docs/architecture.md §2.3); once per event per process. */
  private async sendDeadLetter(m: SourceMessage, code: string, message: string, sqlstate?: string): Promise<void> {
    const { config, metrics } = this.ctx;
    if (this.deadLettered.has(m.partition, m.offset)) return;
    await sendDeadLetter(this.ctx.producer, config.kafka.topics.eventsDlq, this.topic, m, { code, message, sqlstate });
    this.deadLettered.add(m.partition, m.offset);
    metrics.dlq.inc({ topic: config.kafka.topics.eventsDlq, reason: code });
  }

  /** Offsets committed up to `next`: what we know of them, the dead-letter bookkeeping, and Kafka's copy for lag tooling. */
  private afterCommit(next: Map<number, number>): void {
    for (const [part, n] of next) this.committedNext.set(part, Math.max(n, this.committedNext.get(part) ?? 0));
    this.deadLettered.keepAbove(this.committedNext);
    this.updateLag();
    this.consumer.commitToKafka([...next].map(([partition, offset]) => ({ topic: this.topic, partition, offset })));
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

  /** Writes one prepared flush in one transaction; `dryRun` rolls it back instead (the canary). */
  private async commit(p: Prepared, opts: { dryRun?: boolean } = {}): Promise<void> {
    const { metrics, pool, log } = this.ctx;
    const { results, input } = p;
    const next = input.next;

    // dead letters are acknowledged before their offsets commit, so none is lost
    await Promise.all(results.flatMap((r, i) => r.dlq.map((d) => this.sendDeadLetter(input.source(i, d.index), d.code, d.message))));

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
      if (opts.dryRun) await client.query('ROLLBACK');
      else await client.query('COMMIT');
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
    if (opts.dryRun) return;

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
    this.afterCommit(next);
  }

  private updateLag(): void {
    for (const tp of this.consumer.assignment) {
      const hi = this.consumer.cachedHighWatermark(tp.topic, tp.partition);
      const nx = this.committedNext.get(tp.partition);
      if (hi !== undefined && nx !== undefined) this.ctx.metrics.consumerLag.set({ group: this.group, topic: tp.topic, partition: String(tp.partition) }, Math.max(0, hi - nx));
    }
  }
}
