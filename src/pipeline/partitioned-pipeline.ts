/**
 * The partitioned-pipeline core, one for both roles (docs/architecture.md §9):
 * a consumer group on the role's topic whose messages are batched (RxJS,
 * batch-sink.ts), prepared ahead and committed in order (commit-chain.ts,
 * batch-runner.ts), with backpressure (consumption paused past
 * maxInFlight, resumed below half), lag and worker metrics, and a stop that
 * drains what was consumed. A role (role.ts) supplies how a batch is
 * prepared and what it writes.
 */
import type { DaemonContext } from '../daemon';
import { GroupConsumer, type Message } from '../kafka/consumer';
import { coerceError } from '../errors';
import type { Stage } from '../metrics';
import { Arrivals } from './arrivals';
import { RetryBudget } from '../retry-budget';
import { BatchRunner } from './batch-runner';
import { BatchSink } from './batch-sink';
import { CommitChain } from './commit-chain';
import { DeadLetterSender } from './dead-letter';
import { PartitionOffsets } from './partition-offsets';
import type { Batch, PipelineRole } from './role';

export class PartitionedPipeline<Item, B extends Batch, P, L> {
  private readonly consumer: GroupConsumer;
  private readonly sink: BatchSink<Item>;
  private readonly chain: CommitChain<P>;
  private readonly runner: BatchRunner<Item, B, P, L>;
  private readonly offsets: PartitionOffsets;
  private readonly letters: DeadLetterSender;
  private readonly utilTimer: NodeJS.Timeout;
  private readonly arrivals = new Arrivals();
  private inFlight = 0;
  /** consumption is held while what was consumed drains, before a partition is rewound */
  private holdingForRewind = false;
  private stopping = false;
  /** a fatal error halted the runner: consumption stays paused until the role is stopped */
  private halted = false;
  /** label sets of banking_es_consumer_lag_messages this instance reports */
  private lagSeries = new Set<string>();

  constructor(private readonly ctx: DaemonContext, private readonly role: PipelineRole<Item, B, P, L>) {
    const { config, log, metrics } = ctx;
    const s = role.settings;
    this.offsets = new PartitionOffsets(s.group, s.topic, config.kafka.autoOffsetReset === 'latest' ? 'latest' : 'earliest');
    this.letters = new DeadLetterSender(ctx.producer, s.dlqTopic, s.topic, (code) => metrics.dlq.inc({ topic: s.dlqTopic, reason: code }));
    const budget = new RetryBudget(s.name, ctx, config.pipeline.maxRetries);
    this.runner = new BatchRunner(role, ctx, budget, this.offsets, this.letters, (next) => this.committed(next), () => {
      this.halted = true;
      this.setPaused(true);
    });
    this.chain = new CommitChain<P>((seq) => role.abandon(seq));
    this.sink = new BatchSink<Item>(s.batchTimeMs, s.batchSize, (items) => this.handleBatch(items), role.weight?.bind(role));
    this.consumer = new GroupConsumer(config, log, metrics, { groupId: s.group, topic: s.topic, name: s.name, consumeBatch: s.consumeBatch }, {
      resolveStart: (tps) => this.offsets.resolveStart(ctx.pool, tps, (stored) => role.startFrom?.(stored) ?? stored.nextOffset),
      onAssigned: (starts) => this.assigned(starts.map((st) => st.partition)),
      // a graceful hand-over: what was consumed commits, and the role records what it published (commands:
      // the outcomes' offsets), so the next owner re-publishes nothing
      onRevoke: async () => {
        await this.drain(30_000);
        await this.role.drained?.(this.offsets.committed).catch((e: unknown) => log.warn({ err: coerceError(e) }, `the ${s.name} role could not finish flushing before its partitions were revoked`));
      },
      onMessages: (msgs) => this.onMessages(msgs),
    });
    this.utilTimer = setInterval(() => {
      metrics.workerUtilization.set({ pipeline: s.name }, role.workers.utilization());
      metrics.workerQueue.set({ pipeline: s.name }, role.workers.queueSize());
      this.updateLag();
      void this.rewind();
    }, 1000);
    this.utilTimer.unref();
  }

  async start(): Promise<void> {
    await this.consumer.serve(this.ctx.health, `${this.role.settings.name}-consumer`);
  }

  /**
   * Stop consuming, let what was consumed commit, let the role flush, release
   * the consumer and the workers, within the shutdown budget: the drain gets
   * two fifths of it; what is still in flight then is abandoned (redone after
   * the restart) and given a tenth more to let go, so the consumer is closed
   * inside the budget, not after the process decided to exit.
   */
  async stop(): Promise<void> {
    const { name } = this.role.settings;
    const budgetMs = this.ctx.config.shutdown.timeoutMs;
    this.stopping = true;
    this.runner.stop();
    clearInterval(this.utilTimer);
    await this.consumer.stop();
    await this.drain(budgetMs * 0.4);
    if (this.inFlight > 0) {
      this.runner.abandonAll();
      await this.drain(budgetMs * 0.1);
    }
    this.sink.close();
    await this.role.drained?.(this.offsets.committed).catch((e: unknown) => this.ctx.log.warn({ err: coerceError(e) }, `the ${name} role could not finish flushing at shutdown`));
    await this.consumer.close();
    await this.role.workers.close();
    this.ctx.health.remove(`${name}-consumer`);
    this.ctx.health.remove(`${name}-pipeline`);
  }

  private async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await this.sink.idle(this.role.settings.batchTimeMs);
  }

  private assigned(partitions: number[]): void {
    this.offsets.assigned(partitions);
    this.letters.keepAbove(this.offsets.committed, partitions);
    this.role.assigned?.(partitions);
  }

  private onMessages(msgs: Message[]): void {
    // Kafka's timestamp is the producer's clock (CreateTime): on one host or with synced clocks, produce → consumed.
    // A backlog, a skewed clock or a hostile timestamp is not a fetch: only 0..60 s is observed
    let produced = Infinity;
    for (const m of msgs) if (m.timestamp && m.timestamp < produced) produced = m.timestamp;
    const fetchMs = Date.now() - produced;
    if (fetchMs >= 0 && fetchMs <= 60_000) this.observe('fetch', fetchMs / 1000);
    this.arrivals.arrived(performance.now(), msgs.length);
    this.inFlight += msgs.length;
    this.ctx.metrics.inFlight.set({ pipeline: this.role.settings.name }, this.inFlight);
    if (this.inFlight >= this.role.settings.maxInFlight) this.setPaused(true);
    for (const item of this.role.itemsOf(msgs)) this.sink.push(item);
  }

  private setPaused(paused: boolean): void {
    this.consumer.setPaused(paused);
    this.ctx.metrics.paused.set({ pipeline: this.role.settings.name }, paused ? 1 : 0);
  }

  /**
   * Two stages: batch N+1 is prepared (on the state batch N was prepared
   * into, kept pending) while batch N commits; batches commit strictly in
   * order, and N+1 commits as prepared only if N committed exactly that.
   */
  private async handleBatch(items: Item[]): Promise<void> {
    const started = process.hrtime.bigint();
    const batch = this.role.batchOf(items);
    const sealed = performance.now();
    const arrived = this.arrivals.take(batch.count);
    if (arrived !== undefined) this.observe('batch', (sealed - arrived) / 1000);
    let prepared = sealed;
    await this.chain.next(
      async (seq) => {
        // given up at shutdown: the batch is not committed, so preparing it (again) only spends the stop budget
        if (this.runner.isAbandoned) throw new Error('the pipeline gave up its batches at shutdown');
        const p = await this.role.prepare(batch, seq, { careful: false, learned: undefined, committedNext: this.offsets.committed });
        prepared = performance.now();
        return p;
      },
      async (seq, first) => {
        // once per batch, for the preparation it commits from (prepared again when the batch before was redone)
        if (first !== undefined) {
          this.observe('prepare', (prepared - sealed) / 1000);
          this.observe('worker', this.role.workerSeconds(first));
          this.observe('wait', (performance.now() - prepared) / 1000);
        }
        const result = await this.runner.run(batch, seq, first);
        this.finished(batch, started);
        return result === 'clean';
      },
    );
  }

  private observe(stage: Stage, seconds: number): void {
    this.ctx.metrics.stage.observe({ pipeline: this.role.settings.name, stage }, seconds);
  }

  /** A batch left the pipeline (committed or abandoned): in-flight accounting, batch metrics, backpressure released below half. */
  private finished(batch: B, started: bigint): void {
    const { metrics } = this.ctx;
    const { name, maxInFlight } = this.role.settings;
    this.inFlight -= batch.count;
    metrics.inFlight.set({ pipeline: name }, this.inFlight);
    metrics.batchSize.observe({ sink: name }, batch.count);
    metrics.flushDuration.observe({ sink: name }, Number(process.hrtime.bigint() - started) / 1e9);
    if (this.inFlight <= maxInFlight / 2 && !this.runner.isAbandoned && !this.holdingForRewind) this.setPaused(false);
  }

  /**
   * Consumes again the partitions the role asks for (outcomes that never reached Kafka), from where it says.
   * Consumption is held and what was consumed drains first: every replayed message then lies below the
   * committed offset, so it is decided from what Postgres holds, never on a batch still committing (a copy of
   * an original decided on a pending batch would be answered `duplicate`, not with its own status).
   */
  private async rewind(): Promise<void> {
    const { role } = this;
    if (this.holdingForRewind || this.stopping || !role.dueRewinds || !role.beginRewind) return;
    const due = role.dueRewinds();
    if (due.length === 0) return;
    const { name, topic, batchTimeMs } = this.role.settings;
    this.holdingForRewind = true;
    this.setPaused(true);
    try {
      // a consume call already under way when the pause came delivers within its 50 ms wait; then the drain
      await new Promise((r) => setTimeout(r, 100 + batchTimeMs));
      await this.drain(30_000);
      for (const r of due) {
        const tp = { topic, partition: r.partition, offset: r.offset };
        try {
          const { lowOffset } = await this.consumer.watermarks(topic, r.partition);
          // a consume result a blocked main thread held back past the wait above arrives in this turn of the loop
          await new Promise((resolve) => setImmediate(resolve));
          if (this.inFlight > 0) throw new Error(`${this.inFlight} consumed messages have not committed yet`);
          // nothing yields from here to the seek call: every batch begun after beginRewind was consumed after the seek
          const offset = role.beginRewind(r.partition, lowOffset);
          if (offset === undefined) continue; // no longer frozen: assigned again meanwhile
          tp.offset = offset;
          await this.consumer.seek(tp);
          this.ctx.log.warn(tp, `outcomes of the ${name} pipeline never reached Kafka; consuming the partition again from the first of them, to publish them again`);
        } catch (e) {
          this.ctx.log.warn({ err: coerceError(e), ...tp }, 'could not rewind the partition to publish lost outcomes again; retrying later');
          this.role.rewindFailed?.(r.partition);
        }
      }
    } finally {
      this.holdingForRewind = false;
      if (this.inFlight <= this.role.settings.maxInFlight / 2 && !this.runner.isAbandoned && !this.stopping && !this.halted) this.setPaused(false);
    }
  }

  /** Offsets up to `next` committed in Postgres: Kafka's copy for lag tooling, and the lag gauge. */
  private committed(next: ReadonlyMap<number, number>): void {
    this.updateLag();
    this.consumer.commitToKafka([...next].map(([partition, offset]) => ({ topic: this.role.settings.topic, partition, offset })));
  }

  /**
   * banking_es_consumer_lag_messages for the partitions owned now; a partition handed to another
   * instance loses its series here (within a second), or its last value would be summed with the
   * new owner's by every lag alert.
   */
  private updateLag(): void {
    const { group } = this.role.settings;
    const owned = new Set<string>();
    for (const tp of this.consumer.assignment) {
      const hi = this.consumer.cachedHighWatermark(tp.topic, tp.partition);
      const nx = this.offsets.committed.get(tp.partition);
      const labels = { group, topic: tp.topic, partition: String(tp.partition) };
      owned.add(JSON.stringify(labels));
      if (hi !== undefined && nx !== undefined) this.ctx.metrics.consumerLag.set(labels, Math.max(0, hi - nx));
    }
    for (const l of this.lagSeries) if (!owned.has(l)) this.ctx.metrics.consumerLag.remove(JSON.parse(l) as Record<string, string>);
    this.lagSeries = owned;
  }
}
