/**
 * The classified retry loop (docs/architecture.md §9): takes one batch to its
 * commit by doing what its BatchRun state asks for. Prepares (through the
 * role), sends the batch's dead letters and commits it in one transaction
 * with its offsets; on a failure, acts on the class: redo carefully, wait
 * out a gate, back off (stalled past pipeline.maxRetries), isolate poison by
 * halving, check the schema with a canary, dead-letter the lone culprit and
 * commit past it, or halt on a fatal error. Once a batch was abandoned,
 * nothing after it commits: that would move the offsets past it.
 */
import type { Pool } from 'pg';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { upsertOffsets } from '../db/sql/consumer-offsets';
import { BankingError, backoffMs, classifyError, coerceError, errorCodeOf } from '../errors';
import type { RetryBudget } from '../retry-budget';
import { BatchRun, type Attempt } from './batch-run';
import { inTransaction, type TransactionResult } from './batch-transaction';
import type { DeadLetterSender } from './dead-letter';
import type { PartitionOffsets } from './partition-offsets';
import type { Batch, PipelineRole } from './role';
import type { WriteLock } from './write-lock';

/** The cause a redo streak past maxRedos is reported with, when no unique violation named one. */
class KeyConflict extends Error {
  readonly code = 'CONFLICT';
  constructor() {
    super('the batch keeps meeting rows another writer already holds; redone carefully, it conflicts again');
  }
}

/** How a batch (or part of one) ended: committed as first prepared, committed after a redo or retry, or not at all. */
export type RunResult = 'clean' | 'committed' | 'abandoned';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunnerContext {
  pool: Pool;
  log: Logger;
  metrics: Metrics;
}

export class BatchRunner<Item, B extends Batch, P, L> {
  private stopping = false;
  /** set once a batch was abandoned (a fatal error, or giving up at shutdown): nothing after it may commit */
  private abandoned = false;
  private gateLogged: string | null = null;
  private stopped!: () => void;
  /** resolves when stop() begins: a role halted by a fatal error waits for it instead of retrying */
  private readonly stopRequested = new Promise<void>((r) => { this.stopped = r; });
  constructor(
    private readonly role: PipelineRole<Item, B, P, L>,
    private readonly ctx: RunnerContext,
    private readonly budget: RetryBudget,
    private readonly offsets: PartitionOffsets,
    private readonly letters: DeadLetterSender,
    /** offsets up to `next` committed in Postgres: Kafka's copy, lag */
    private readonly onCommitted: (next: ReadonlyMap<number, number>) => void,
    /** a fatal error: stop consuming until the role is stopped */
    private readonly pause: () => void,
  ) {}

  /** A batch was abandoned: nothing after it commits, and consumption stays paused. */
  get isAbandoned(): boolean {
    return this.abandoned;
  }

  /** The role is stopping: give up retrying soon, and release a halted batch. */
  stop(): void {
    this.stopping = true;
    this.stopped();
  }

  /** The shutdown budget is spent: every batch still running ends at its next step, uncommitted (redone after the restart). */
  abandonAll(): void {
    this.stop();
    if (!this.abandoned) this.ctx.log.warn('batches still in flight at the end of the shutdown budget are abandoned; they are redone after the restart');
    this.abandoned = true;
  }

  /** Commits `batch` (or a part of one) as number `seq`, from `first` when it was prepared ahead. Never rejects. */
  async run(batch: B, seq: number, first?: P): Promise<RunResult> {
    try {
      return await this.steps(batch, seq, first);
    } catch (e) {
      // a broken invariant of the state machine, or a role's bug: committing on would rest on a wrong assumption
      this.budget.failed(e, 'fatal', `a batch of ${batch.count} ${this.role.settings.noun}s (internal error)`);
      this.pause();
      return this.giveUp(e, 'an internal error stopped the pipeline; the batch and every later one are redone on restart');
    }
  }

  private async steps(batch: B, seq: number, first?: P): Promise<RunResult> {
    const { role } = this;
    const what = `a batch of ${batch.count} ${role.settings.noun}s`;
    const run = new BatchRun(batch.count, first !== undefined, role.settings.maxRedos);
    let prepared = first;
    let learned: L | undefined;
    let cause: unknown;
    /** the role's write lock while held: from a careful preparation to its commit, or for a commit */
    let release: (() => void) | undefined;
    try {
      for (;;) {
        if (this.abandoned) run.abandon();
        switch (run.state) {
          case 'prepare':
            if (run.careful && role.writeLock) {
              if (release !== undefined) throw new Error('the write lock is held already: it is not reentrant');
              release = await this.locked(role.writeLock, 'exclusive');
              if (this.abandoned) continue; // given up while waiting (shutdown): abandoned at the loop's top
            }
            try {
              prepared = await role.prepare(batch, seq, { careful: run.careful, learned, committedNext: this.offsets.committed });
              run.prepared();
            } catch (e) {
              release?.();
              release = undefined;
              cause = e;
              role.abandon(seq);
              run.attempted({ kind: 'failed', errorClass: classifyError(e) }, this.stopping);
            }
            break;
          case 'commit': {
            const p = prepared!;
            let t: TransactionResult;
            let lockSeconds = 0;
            try {
              // shared, for the transaction only: not while dead letters wait for Kafka (a careful redo holds
              // it exclusively already, from its preparation on, dead letters included)
              t = await this.commit(p, batch.next, false, async () => {
                if (release !== undefined || !role.writeLock) return true;
                const asked = performance.now();
                release = await this.locked(role.writeLock, 'shared');
                lockSeconds = (performance.now() - asked) / 1000;
                return !this.abandoned;
              });
            } finally {
              release?.();
              release = undefined;
            }
            if (t.kind === 'committed') {
              // waiting for the other account writer's commit is part of writing (docs/metrics.md)
              this.ctx.metrics.stage.observe({ pipeline: role.settings.name, stage: 'write' }, lockSeconds + t.writeSeconds);
              this.ctx.metrics.stage.observe({ pipeline: role.settings.name, stage: 'commit' }, t.commitSeconds);
              this.committed(p, seq, batch.next);
            } else {
              role.abandon(seq, p);
              prepared = undefined;
            }
            if (t.kind === 'redo') {
              cause = t.error ?? new KeyConflict();
              if (t.error !== undefined) {
                this.ctx.metrics.occConflicts.inc();
                this.ctx.log.info({ err: coerceError(t.error) }, `rows of ${what} already written by another writer; redoing it carefully, from what Postgres holds`);
              }
              if (role.learn) {
                try {
                  learned = await role.learn(p, learned);
                } catch (e) {
                  t = { kind: 'failed', error: e, errorClass: classifyError(e) };
                }
              }
            }
            if (t.kind === 'failed') cause = t.error;
            if (t.kind === 'gated' && this.gateLogged !== t.gate) {
              this.ctx.log.warn({ gate: t.gate }, t.why);
              this.gateLogged = t.gate;
            }
            run.attempted(attemptOf(t), this.stopping);
            break;
          }
          case 'wait':
            if (run.waitFor === 'gate') {
              this.ctx.metrics.retries.inc({ component: role.settings.name, code: this.gateLogged ?? 'gate' });
              await sleep(250 + backoffMs(Math.min(run.gatesInARow - 1, 4), 100, 2000));
            } else {
              await sleep(this.budget.failed(cause, run.errorClass!, what));
            }
            run.waited();
            break;
          case 'isolate':
            run.finished(await this.isolate(batch, seq, cause));
            break;
          case 'canary':
            run.canary(await this.canaryCommits(seq));
            break;
          case 'dead-letter':
            run.finished(await this.deadLetterPoison(batch, seq, cause));
            break;
          case 'halted':
            this.budget.failed(cause, 'fatal', what);
            this.pause();
            await this.stopRequested;
            run.finished(this.giveUp(cause, 'stopped by a fatal error; the batch and every later one are redone on restart'));
            break;
          case 'done':
            return run.clean ? 'clean' : 'committed';
          case 'abandoned':
            if (!this.abandoned) {
              const err = cause === undefined ? undefined : coerceError(cause);
              this.ctx.log.warn({ err, errorClass: cause === undefined ? undefined : classifyError(cause) }, 'giving up on a batch at shutdown; its offsets and every later batch\'s were not committed, so they are redone on restart');
            }
            this.abandoned = true;
            return 'abandoned';
        }
      }
    } finally {
      // a batch that ends (done, abandoned) with the lock in hand lets it go
      release?.();
    }
  }

  /**
   * Sends the preparation's dead letters (acknowledged before their offsets commit, so none is lost), then
   * writes it with its offsets. `beforeWrite` runs between the two (the runner takes the role's write lock);
   * false: the batch was given up meanwhile, nothing is written (redone after the restart).
   */
  private async commit(p: P, next: ReadonlyMap<number, number>, dryRun = false, beforeWrite?: () => Promise<boolean>): Promise<TransactionResult> {
    const { role } = this;
    if (role.mustRedo?.(p)) return { kind: 'redo' };
    try {
      await Promise.all(role.deadLetters(p).map((d) => this.letters.send(d.message, { code: d.code, message: d.reason })));
    } catch (error) {
      return { kind: 'failed', error, errorClass: classifyError(error) };
    }
    const { group, topic } = role.settings;
    if (beforeWrite && !(await beforeWrite())) return { kind: 'redo' };
    const rows = [...next].map(([partition, n]) => ({ partition, next: n, published: role.publishedOffset?.(partition) ?? null }));
    return inTransaction(this.ctx.pool, (client) => role.write(client, p), { group, topic, rows }, dryRun);
  }

  /** The write lock in `mode`; a wait past 30 s makes the role not ready (RetryBudget.waiting). */
  private async locked(lock: WriteLock, mode: 'shared' | 'exclusive'): Promise<() => void> {
    this.budget.waiting(`the write lock (${mode}) another pipeline of this process holds`);
    try {
      return await lock.acquire(mode);
    } finally {
      this.budget.waiting(null);
    }
  }

  private committed(p: P, seq: number, next: ReadonlyMap<number, number>): void {
    this.budget.succeeded();
    if (this.gateLogged) this.ctx.log.info({ gate: this.gateLogged }, 'writes are open again; the pipeline continues');
    this.gateLogged = null;
    this.role.committed(p, seq);
    this.advance(next);
  }

  private advance(next: ReadonlyMap<number, number>): void {
    this.offsets.advance(next);
    this.letters.keepAbove(this.offsets.committed);
    this.onCommitted(next);
  }

  /** This batch is abandoned, and with it every later one (logged once). */
  private giveUp(e: unknown, why: string): 'abandoned' {
    if (!this.abandoned) this.ctx.log.error({ err: coerceError(e), errorClass: classifyError(e) }, why);
    this.abandoned = true;
    return 'abandoned';
  }

  /**
   * A batch failed because of one message's content ("poison"): commit it in
   * two halves, in offset order (so per-account and per-partition order
   * hold), splitting again whichever half fails the same way, until the
   * culprit stands alone (Kafka Connect's sinks "unwrap the batch" the same way).
   */
  private async isolate(batch: B, seq: number, cause: unknown): Promise<'done' | 'abandoned'> {
    const from = this.role.first(batch);
    this.ctx.log.warn({ err: coerceError(cause), messages: batch.count, from: `${from.partition}:${from.offset}` }, `a batch failed on its content; splitting it to isolate the ${this.role.settings.noun}`);
    const [a, b] = this.role.halves(batch);
    for (const half of [a, b]) if ((await this.run(half, seq)) === 'abandoned') return 'abandoned';
    return 'done';
  }

  /**
   * Before one message is dead-lettered for its content, a known-good batch
   * (the role's canary) is prepared and committed the same way, then rolled
   * back. If it fails too, the fault is the schema's or the database's (a
   * column type changed, a constraint added): dead-lettering would drain
   * every message to the DLQ one by one, so the pipeline backs off and stalls instead.
   * Run before every dead letter, not cached: a schema fault that appears
   * a moment after a real poison message must not dead-letter valid ones.
   */
  private async canaryCommits(seq: number): Promise<boolean> {
    const canary = this.role.canary();
    let t: TransactionResult;
    try {
      const p = await this.role.prepare(canary, seq, { careful: true, learned: undefined, committedNext: this.offsets.committed });
      t = await this.commit(p, canary.next, true);
    } catch (error) {
      t = { kind: 'failed', error, errorClass: classifyError(error) };
    } finally {
      this.role.abandon(seq);
    }
    if (t.kind === 'committed') return true;
    this.ctx.log.warn({ err: t.kind === 'failed' ? coerceError(t.error) : undefined, result: t.kind }, `a known-good batch fails to commit too: not dead-lettering the ${this.role.settings.noun}`);
    return false;
  }

  /** Dead-letters the lone poison message (with its error class and SQLSTATE), then commits its offset alone. */
  private async deadLetterPoison(batch: B, seq: number, cause: unknown): Promise<'done' | 'abandoned'> {
    const m = this.role.first(batch);
    const err = coerceError(cause);
    const sqlstate = errorCodeOf(cause);
    // a replayed offset was dead-lettered before the offset past it committed
    const replayed = m.offset < (this.offsets.committed.get(m.partition) ?? -1);
    // one text for both roles (tests and alerts match it), the topic says which
    if (!replayed) this.ctx.log.error({ err, sqlstate, topic: this.role.settings.topic, partition: m.partition, offset: m.offset }, 'poison message isolated: its content fails the commit; dead-lettered, the partition goes on');
    const { group, topic } = this.role.settings;
    const next = new Map([[m.partition, m.offset + 1]]);
    const failure = await this.budget.untilDone(`dead-lettering a poison ${this.role.settings.noun}`, async () => {
      // banking-es's own poison (a transfer step no debit backs) says its code; what Postgres refused is POISON
      if (!replayed) await this.letters.send(m, { code: cause instanceof BankingError ? cause.code : 'POISON', message: err.message, sqlstate });
      await upsertOffsets(this.ctx.pool, group, topic, [{ partition: m.partition, next: m.offset + 1, published: this.role.publishedOffset?.(m.partition) ?? null }]);
    }, () => this.stopping || this.abandoned);
    if (failure !== undefined) return this.giveUp(failure, `could not commit past a dead-lettered ${this.role.settings.noun}; it and every later batch are redone on restart`);
    // what the failed attempts prepared for this seq is stale: the next part loads afresh
    this.role.abandon(seq);
    this.role.committedPast?.(seq, next);
    this.advance(next);
    return 'done';
  }
}

function attemptOf(t: TransactionResult): Attempt {
  switch (t.kind) {
    case 'committed': return { kind: 'committed' };
    case 'redo': return { kind: 'redo' };
    case 'gated': return { kind: 'gated' };
    case 'failed': return { kind: 'failed', errorClass: t.errorClass };
  }
}
