/**
 * The built-in polling relay (cdc.mode = poller, docs/architecture.md §1, §3): reads
 * `events` in (tx_id, position) order below the current snapshot's xmin
 * (readCommittedEvents says why that never skips a late commit), publishes
 * each payload to the event topic (key = account_id), and once Kafka
 * acknowledged a batch stores its last (tx_id, position) in relay_checkpoints.
 * A restart resumes from the stored checkpoint; events published after it and
 * before a crash are published again (at least once; projections dedupe by
 * version).
 *
 * Reading overlaps delivery: up to `pipelineDepth` batches are in flight, and
 * their checkpoints are stored strictly in order. On any failure the cursor
 * returns to the last stored checkpoint and the loop retries with backoff.
 * It polls every `idleMs` while caught up, and immediately again after a
 * full batch.
 *
 * The index it reads through, events (tx_id, position), costs every insert,
 * so it is not in the migrations: start() creates it with CREATE INDEX
 * CONCURRENTLY IF NOT EXISTS (without blocking writers), only where this mode
 * runs.
 *
 * Caveat: a transaction that stays open anywhere on the cluster holds the
 * snapshot's xmin back, and with it this relay (a delay, never a loss).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonContext } from '../daemon';
import { classifyError } from '../errors';
import { RetryBudget } from '../retry-budget';
import { readCommittedEvents, type CommittedEvent } from '../db/sql/read-committed-events';
import { ensurePollerIndex, POLLER_INDEX } from '../db/sql/poller-index';
import { readCheckpoint, saveCheckpoint, START_CHECKPOINT, type RelayCheckpoint } from '../db/sql/relay-checkpoints';

export interface PollingRelayOptions {
  /** Checkpoint name in relay_checkpoints. */
  name: string;
  /** Rows per read. */
  batchSize: number;
  /** Pause between polls while caught up. */
  idleMs: number;
  /** Batches read ahead of the last stored checkpoint. */
  pipelineDepth: number;
}

export const POLLING_RELAY_DEFAULTS: PollingRelayOptions = { name: 'banking_es_poller', batchSize: 5000, idleMs: 100, pipelineDepth: 2 };

export { POLLER_INDEX };

export class PollingRelay {
  private readonly opts: PollingRelayOptions;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wake = new AbortController();
  private cursor: RelayCheckpoint = START_CHECKPOINT;
  private stored: RelayCheckpoint = START_CHECKPOINT;
  private pollCount = 0;
  private publishedCount = 0;
  private budget: RetryBudget | undefined;

  constructor(private readonly ctx: DaemonContext, opts: Partial<PollingRelayOptions> = {}) {
    this.opts = { ...POLLING_RELAY_DEFAULTS, ...opts };
  }

  async start(): Promise<void> {
    await this.ensureIndex();
    this.stored = (await readCheckpoint(this.ctx.pool, this.opts.name)) ?? START_CHECKPOINT;
    this.cursor = this.stored;
    this.ctx.log.info({ relay: this.opts.name, from: this.stored }, 'polling relay started');
    this.budget = new RetryBudget('relay-poller', this.ctx, this.ctx.config.pipeline.maxRetries);
    this.loop = this.run();
  }

  /** Finishes the batches in flight (their checkpoints included), then stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake.abort();
    await this.loop;
  }

  get stats(): { polls: number; published: number; checkpoint: RelayCheckpoint } {
    return { polls: this.pollCount, published: this.publishedCount, checkpoint: this.stored };
  }

  private async ensureIndex(): Promise<void> {
    await ensurePollerIndex(this.ctx.pool, () => this.ctx.log.warn({ index: POLLER_INDEX }, 'dropping an invalid index left by an interrupted build'));
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.pump();
        return;
      } catch (e) {
        if (this.stopping) return;
        const errorClass = classifyError(e);
        // counted, logged once per step, stalled (not ready) past pipeline.maxRetries; a checkpoint stored ends the streak
        const wait = this.budget!.failed(e, errorClass, `the polling relay (resuming from ${this.stored.txId}/${this.stored.position})`);
        if (errorClass === 'fatal') return; // not ready until restarted
        this.cursor = this.stored;
        await this.idle(Math.max(100, wait));
      }
    }
  }

  /** Reads, publishes and checkpoints until stopped; throws on the first failure (after the batches in flight settle). */
  private async pump(): Promise<void> {
    const { batchSize, pipelineDepth } = this.opts;
    const window: Array<Promise<void>> = [];
    let chain: Promise<void> = Promise.resolve();
    try {
      while (!this.stopping) {
        const started = process.hrtime.bigint();
        const rows = await readCommittedEvents(this.ctx.pool, this.cursor, batchSize);
        this.pollCount++;
        if (rows.length > 0) {
          const last = rows[rows.length - 1];
          const cp = { txId: last.txId, position: last.position };
          const acked = Promise.all(rows.map((r) => this.publish(r)));
          chain = this.link(chain, acked, () => this.store(cp, rows.length, started));
          chain.catch(() => undefined); // observed below (window, `await chain`, finally)
          this.cursor = cp;
          window.push(chain);
          if (window.length >= pipelineDepth) await window.shift();
        }
        if (rows.length < batchSize) {
          await chain;
          window.length = 0;
          await this.idle(this.opts.idleMs);
        }
      }
    } finally {
      await chain.catch(() => undefined);
    }
    await chain;
  }

  /**
   * The next link of the checkpoint chain: `store` runs once every earlier
   * link succeeded and this batch's deliveries were acknowledged.
   *
   * Why not `prev.then(() => acked).then(store)`: when an earlier batch fails
   * (Kafka away longer than message.timeout.ms), `prev` rejects and the
   * `() => acked` callback never runs, so nothing ever subscribes to `acked`.
   * Its deliveries time out a moment later, `acked` rejects unobserved, and
   * Node 20 ends the process on the unhandled rejection. So both promises are
   * awaited here unconditionally (allSettled observes both), and the link
   * settles only after this batch's deliveries settled: a failed pump() then
   * really returns after the batches in flight settled, and run() retries
   * from the stored checkpoint with nothing of the old attempt still pending.
   */
  private async link(prev: Promise<void>, acked: Promise<unknown>, store: () => Promise<void>): Promise<void> {
    const [before, own] = await Promise.allSettled([prev, acked]);
    // the earliest failure is the one reported; this batch's checkpoint is never stored past a gap
    if (before.status === 'rejected') throw before.reason;
    if (own.status === 'rejected') throw own.reason;
    await store();
  }

  private publish(r: CommittedEvent): Promise<void> {
    return this.ctx.producer.send({ topic: this.ctx.config.kafka.topics.events, key: r.accountId, value: Buffer.from(r.payload, 'utf8') });
  }

  private async store(cp: RelayCheckpoint, n: number, started: bigint): Promise<void> {
    const { metrics, log, pool } = this.ctx;
    if ((await saveCheckpoint(pool, this.opts.name, cp)) === 'behind') {
      log.warn({ relay: this.opts.name, checkpoint: cp }, 'another poller stored a later checkpoint; run one relay instance per database');
    }
    this.stored = cp;
    this.budget?.succeeded();
    this.publishedCount += n;
    metrics.relayEventsPublished.inc({ mode: 'poller' }, n);
    metrics.batchSize.observe({ sink: 'relay' }, n);
    metrics.flushDuration.observe({ sink: 'relay' }, Number(process.hrtime.bigint() - started) / 1e9);
  }

  private async idle(ms: number): Promise<void> {
    if (this.stopping) return;
    await sleep(ms, undefined, { signal: this.wake.signal }).catch(() => undefined);
  }
}
