/**
 * A node-rdkafka KafkaConsumer in a consumer group with manual offsets.
 * Where each partition starts is decided by the owner (`resolveStart`, which
 * reads the offsets stored in Postgres) before the partition is assigned; a
 * partition whose stored offset Kafka no longer holds is assigned paused and
 * reported, never reset (docs/architecture.md §4). Rebalances wait for the owner to drain
 * (`onRevoke`) before giving partitions up.
 */
import Kafka from 'node-rdkafka';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { Health } from '../health';
import { recordRdkafkaStats } from '../metrics';
import { backoffMs, classifyError, coerceError, errorCodeOf } from '../errors';
import { baseKafkaConfig } from './client-config';
import { closeWithin } from './native-close';

export type Message = Kafka.Message;
export interface Tp { topic: string; partition: number }
/**
 * Where a partition starts. `applied`: the stored offset below which every message was applied, when
 * the start is lower (the outcomes between them are published again).
 */
export interface StartOffset extends Tp { offset: number | 'beginning' | 'end'; stored: boolean; applied?: number }

export interface ConsumerHooks {
  resolveStart(tps: Tp[]): Promise<StartOffset[]>;
  onAssigned(tps: StartOffset[]): void;
  onRevoke(tps: Tp[]): Promise<void>;
  onMessages(msgs: Message[]): void;
}

const ERR_ASSIGN = -175;
const ERR_REVOKE = -174;
const ERR_AUTO_OFFSET_RESET = -140;
const OFFSET_BEGINNING = -2; // librdkafka logical offsets
const OFFSET_END = -1;
/** A crashed owner's partitions move after this long (librdkafka's default is 45 s). */
const SESSION_TIMEOUT_MS = 6000;

export class GroupConsumer {
  readonly raw: Kafka.KafkaConsumer;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private assigned: Tp[] = [];
  private readonly stopped = new Set<string>(); // "topic/partition" stopped for OFFSET_OUT_OF_RANGE
  private readonly stoppedTopics: Set<string>; // topics banking_es_partitions_stopped has a series for
  /** the group gave this consumer its first assignment (possibly empty) and it was applied */
  private rebalanced = false;
  private pausedAll = false;
  private rebalancing: Promise<void> = Promise.resolve();
  private closing = false;
  /** when the consumer last owned nothing (it starts owning nothing); undefined while it owns partitions */
  private unassignedSince: number | undefined = Date.now();
  /** librdkafka's cgrp.state and join_state, from its statistics */
  private groupState = { state: 'unknown', join: 'unknown' };
  private readonly stateTimer: NodeJS.Timeout;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly opts: { groupId: string; topic: string; name: string; consumeBatch?: number },
    private readonly hooks: ConsumerHooks,
  ) {
    this.stoppedTopics = new Set([opts.topic]);
    metrics.partitionsStopped.set({ topic: opts.topic }, 0); // a series from the start, for alerts
    this.raw = new Kafka.KafkaConsumer(
      {
        ...baseKafkaConfig(config, opts.name),
        'group.id': opts.groupId,
        'enable.auto.commit': false,
        'enable.auto.offset.store': false,
        'enable.partition.eof': false,
        'queued.max.messages.kbytes': config.kafka.queuedMaxMessagesKbytes,
        'queued.min.messages': 10000,
        // librdkafka waits this long after its prefetch queue was full before fetching again (default
        // 1000 ms): with a bounded queue that stalled the pipeline for a second per cycle
        'fetch.queue.backoff.ms': 5,
        'fetch.max.bytes': config.kafka.fetchMaxBytes,
        'fetch.wait.max.ms': 10,
        'session.timeout.ms': SESSION_TIMEOUT_MS,
        'heartbeat.interval.ms': 500,
        'partition.assignment.strategy': 'range,roundrobin',
        // static membership: a restarted instance gets its partitions back without a group-wide rebalance
        ...(config.kafka.groupInstanceId ? { 'group.instance.id': `${config.kafka.groupInstanceId}-${opts.name}` } : {}),
        'rebalance_cb': (err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) => this.onRebalance(err, assignment),
      } as unknown as Kafka.ConsumerGlobalConfig,
      { 'auto.offset.reset': 'error' },
    );
    this.raw.on('event.error', (err) => {
      if (err.code === ERR_AUTO_OFFSET_RESET) void this.checkRanges('consume reported an offset out of range');
      else log.warn({ err, consumer: opts.name }, 'kafka consumer error');
    });
    this.raw.on('event.stats', (s) => {
      recordRdkafkaStats(metrics, opts.name, s.message);
      this.recordGroupState(s.message);
    });
    this.publishAssignmentState();
    this.stateTimer = setInterval(() => this.publishAssignmentState(), 1000);
    this.stateTimer.unref();
  }

  /** Seconds this consumer has owned no partition; 0 while it owns some. */
  get unassignedSeconds(): number {
    return this.unassignedSince === undefined ? 0 : (Date.now() - this.unassignedSince) / 1000;
  }

  private recordGroupState(statsJson: string): void {
    try {
      const cgrp = (JSON.parse(statsJson) as { cgrp?: { state?: string; join_state?: string } }).cgrp;
      if (!cgrp?.state) return;
      const next = { state: cgrp.state, join: cgrp.join_state ?? 'unknown' };
      if (next.state !== this.groupState.state || next.join !== this.groupState.join) {
        this.metrics.consumerGroupState.remove({ consumer: this.opts.name, ...this.groupState });
        this.groupState = next;
      }
      this.metrics.consumerGroupState.set({ consumer: this.opts.name, ...this.groupState }, 1);
    } catch { /* statistics are information only */ }
  }

  private publishAssignmentState(): void {
    this.metrics.consumerUnassignedSeconds.set({ consumer: this.opts.name }, Math.round(this.unassignedSeconds));
  }

  private setAssigned(tps: Tp[]): void {
    this.assigned = tps;
    if (tps.length === 0) this.unassignedSince ??= Date.now();
    else this.unassignedSince = undefined;
    this.publishAssignmentState();
    this.publishStopped();
  }

  /** The partitions this instance owns and has stopped; one stopped after a revoke is another owner's to find. */
  private stoppedAssigned(): Tp[] {
    return this.assigned.filter((tp) => this.stopped.has(`${tp.topic}/${tp.partition}`));
  }

  /** banking_es_partitions_stopped{topic}: owned and stopped now, so it falls back to 0 once fixed or handed over. */
  private publishStopped(): void {
    const byTopic = new Map<string, number>();
    for (const t of this.stoppedTopics) byTopic.set(t, 0);
    for (const tp of this.stoppedAssigned()) byTopic.set(tp.topic, (byTopic.get(tp.topic) ?? 0) + 1);
    for (const [topic, n] of byTopic) {
      this.metrics.partitionsStopped.set({ topic }, n);
      this.stoppedTopics.add(topic);
    }
  }

  get assignment(): Tp[] {
    return this.assigned;
  }

  connect(timeoutMs = 15000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.raw.connect({ timeout: timeoutMs }, (err) => (err ? reject(new Error(`kafka consumer could not connect: ${err.message}`)) : resolve()));
    });
  }

  private onRebalance(err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]): void {
    const tps = assignment.map((a) => ({ topic: a.topic, partition: a.partition }));
    this.rebalancing = this.rebalancing.then(async () => {
      if (err.code === ERR_ASSIGN) await this.assign(tps);
      else if (err.code === ERR_REVOKE) await this.revoke(tps);
      else this.log.error({ err }, 'rebalance error');
    });
  }

  private async assign(tps: Tp[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const starts = await this.hooks.resolveStart(tps);
        const checked = await this.checkStoredInRange(starts);
        this.raw.assign(checked.map((s) => ({ topic: s.topic, partition: s.partition, offset: s.offset === 'beginning' ? OFFSET_BEGINNING : s.offset === 'end' ? OFFSET_END : s.offset })));
        const bad = checked.filter((s) => this.stopped.has(`${s.topic}/${s.partition}`));
        if (bad.length) this.raw.pause(bad.map((s) => ({ topic: s.topic, partition: s.partition })));
        if (this.pausedAll) this.raw.pause(checked.map((s) => ({ topic: s.topic, partition: s.partition })));
        this.setAssigned(tps);
        this.rebalanced = true;
        this.hooks.onAssigned(checked);
        this.metrics.consumerPartitions.set({ consumer: this.opts.name }, checked.length);
        this.log.info({ consumer: this.opts.name, partitions: checked.map((s) => `${s.partition}@${s.offset}${s.stored ? '' : ' (no stored offset)'}`) }, 'partitions assigned');
        return;
      } catch (e) {
        if (this.closing) return;
        // nothing is consumed meanwhile, and the readiness probe says so (no partitions owned); a fatal
        // cause (no consumer_offsets table, no privilege) is logged at error level, and still retried:
        // librdkafka considers these partitions ours until we assign them
        const errorClass = classifyError(e);
        const wait = Math.max(100, backoffMs(attempt, 200, errorClass === 'fatal' ? 30_000 : 5000));
        const fields = { err: coerceError(e), errorClass, code: errorCodeOf(e), attempt, retryInMs: wait };
        if (errorClass === 'transient') this.log.warn(fields, 'could not resolve start offsets; retrying');
        else this.log.error(fields, 'could not resolve start offsets; retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private async revoke(tps: Tp[]): Promise<void> {
    try {
      await this.hooks.onRevoke(tps);
    } catch (e) {
      this.log.error({ err: coerceError(e) }, 'draining before revoke failed');
    }
    this.setAssigned([]);
    this.metrics.consumerPartitions.set({ consumer: this.opts.name }, 0);
    try { this.raw.unassign(); } catch (e) { this.log.warn({ err: coerceError(e) }, 'unassign failed'); }
    this.log.info({ consumer: this.opts.name, partitions: tps.map((t) => t.partition) }, 'partitions revoked');
  }

  /**
   * A stored offset below the log start or past its end means commands were lost before we read them: stop
   * that partition. A start below the log start only for outcomes to publish again (every message up to
   * the log start was applied) starts at the log start instead: what those messages published is
   * lost, said once per assignment.
   */
  private async checkStoredInRange(starts: StartOffset[]): Promise<StartOffset[]> {
    const checked: StartOffset[] = [];
    for (const start of starts) {
      let s = start;
      if (s.stored && typeof s.offset === 'number') {
        const wm = await this.watermarks(s.topic, s.partition);
        if (s.offset < wm.lowOffset && s.applied !== undefined && s.applied >= wm.lowOffset && s.applied <= wm.highOffset) {
          this.log.error({ topic: s.topic, partition: s.partition, from: s.offset, logStart: wm.lowOffset, applied: s.applied },
            'what messages Kafka no longer holds (retention) published (outcomes, transfer steps) never reached Kafka and cannot be published again; the messages were applied; starting from the log start');
          s = { ...s, offset: wm.lowOffset };
        }
        const offset = s.offset as number;
        if (offset < wm.lowOffset || offset > wm.highOffset) this.stopPartition(s, wm);
        else this.stopped.delete(`${s.topic}/${s.partition}`);
      }
      checked.push(s);
    }
    return checked;
  }

  private stopPartition(s: Tp & { offset?: unknown }, wm: { lowOffset: number; highOffset: number }): void {
    const key = `${s.topic}/${s.partition}`;
    if (!this.stopped.has(key)) {
      this.stopped.add(key);
      this.metrics.errors.inc({ component: this.opts.name, code: 'OFFSET_OUT_OF_RANGE' });
    }
    this.publishStopped();
    this.log.error({ topic: s.topic, partition: s.partition, storedOffset: s.offset, logStart: wm.lowOffset, logEnd: wm.highOffset },
      'OFFSET_OUT_OF_RANGE: the stored offset is no longer in Kafka, so commands were lost before banking-es read them; this partition is stopped and will not be reset');
  }

  private async checkRanges(why: string): Promise<void> {
    this.log.warn({ why }, 'checking assigned partitions against the log');
    for (const tp of this.assigned) {
      try {
        const pos = this.raw.position([tp])[0]?.offset;
        const wm = await this.watermarks(tp.topic, tp.partition);
        if (typeof pos === 'number' && pos >= 0 && (pos < wm.lowOffset || pos > wm.highOffset)) {
          this.stopPartition({ ...tp, offset: pos }, wm);
          this.raw.pause([tp]);
        }
      } catch (e) {
        this.log.warn({ err: coerceError(e) }, 'watermark check failed');
      }
    }
  }

  watermarks(topic: string, partition: number, timeoutMs = 5000): Promise<{ lowOffset: number; highOffset: number }> {
    return new Promise((resolve, reject) => {
      this.raw.queryWatermarkOffsets(topic, partition, timeoutMs, (err, o) => (err ? reject(err) : resolve(o)));
    });
  }

  /** Cached high watermark from librdkafka statistics; undefined until stats arrive. */
  cachedHighWatermark(topic: string, partition: number): number | undefined {
    try {
      const o = this.raw.getWatermarkOffsets(topic, partition);
      return o.highOffset >= 0 ? o.highOffset : undefined;
    } catch {
      return undefined;
    }
  }

  /** Backpressure: stop fetching every assigned partition (memory stays bounded), or resume. */
  setPaused(paused: boolean): void {
    if (paused === this.pausedAll) return;
    this.pausedAll = paused;
    const tps = this.assigned.filter((tp) => !this.stopped.has(`${tp.topic}/${tp.partition}`));
    if (tps.length === 0) return;
    try {
      if (paused) this.raw.pause(tps);
      else this.raw.resume(tps);
    } catch (e) {
      this.log.warn({ err: coerceError(e) }, 'pause/resume failed');
    }
  }

  /** Fetches an assigned partition again from `offset` (what was fetched past it and not yet consumed is dropped). */
  seek(tp: Tp & { offset: number }): Promise<void> {
    if (!this.assigned.some((a) => a.topic === tp.topic && a.partition === tp.partition)) {
      return Promise.reject(new Error(`${tp.topic}/${tp.partition} is not assigned to this consumer`));
    }
    return new Promise((resolve, reject) => {
      this.raw.seek(tp, 5000, (err) => (err ? reject(coerceError(err)) : resolve()));
    });
  }

  /** Commits offsets to Kafka too, only for lag tooling: Postgres holds the truth. */
  commitToKafka(offsets: Array<Tp & { offset: number }>): void {
    if (offsets.length === 0 || !this.raw.isConnected()) return;
    try { this.raw.commit(offsets); } catch { /* informational only */ }
  }

  /**
   * The consume loop. node-rdkafka's consume(n) keeps collecting until n
   * messages arrived or ONE wait timed out, so under a steady trickle it
   * holds messages until n arrive (2 s at 1,000/s for n = 2000). Instead:
   * wait (≤ 50 ms) for one message, then drain what librdkafka has already
   * queued with a zero timeout. Latency no longer depends on the arrival rate.
   */
  start(): void {
    this.raw.subscribe([this.opts.topic]);
    this.running = true;
    const batch = this.opts.consumeBatch ?? 2000;
    let idle = true;
    this.loopDone = new Promise<void>((resolve) => {
      const next = () => {
        if (!this.running) return resolve();
        this.raw.setDefaultConsumeTimeout(idle ? 50 : 0);
        this.raw.consume(idle ? 1 : batch, (err, msgs) => {
          if (err && err.code !== Kafka.CODES.ERRORS.ERR__TIMED_OUT) {
            if (err.code === ERR_AUTO_OFFSET_RESET) void this.checkRanges(err.message);
            else if (this.running) this.log.warn({ err }, 'consume failed');
          }
          idle = !msgs || msgs.length === 0;
          if (msgs && msgs.length) {
            try { this.hooks.onMessages(msgs); } catch (e) { this.log.error({ err: coerceError(e) }, 'message handler failed'); }
          }
          if (!this.running) return resolve();
          setImmediate(next);
        });
      };
      next();
    });
  }

  /** Connects, registers a readiness probe under `probe` (connected, partitions owned), and starts consuming. */
  async serve(health: Health, probe: string): Promise<void> {
    await this.connect();
    const instance = this.config.kafka.groupInstanceId;
    this.log.info({ consumer: this.opts.name, group: this.opts.groupId, groupInstanceId: instance ? `${instance}-${this.opts.name}` : null, sessionTimeoutMs: SESSION_TIMEOUT_MS },
      'consumer group membership');
    health.add(probe, async () => {
      if (!this.raw.isConnected()) throw new Error('consumer disconnected');
      // owning nothing is information, not unreadiness: more instances than partitions own nothing by design
      const group = `group ${this.opts.groupId} ${this.groupState.state}/${this.groupState.join}`;
      // before its first assignment (even an empty one) it cannot know whether a partition is stopped
      if (!this.rebalanced) throw new Error(`0 partitions assigned for ${Math.round(this.unassignedSeconds)} s (${group}): joining, no assignment yet`);
      const stopped = this.stoppedAssigned();
      if (stopped.length) {
        throw new Error(`${stopped.length} of ${this.assigned.length} partitions stopped (OFFSET_OUT_OF_RANGE: messages lost before they were read): `
          + `${stopped.map((t) => `${t.topic}/${t.partition}`).join(', ')}; docs/runbook.md "Partitions stopped"`);
      }
      if (this.assigned.length === 0) return `0 partitions assigned for ${Math.round(this.unassignedSeconds)} s (${group})`;
      return `${this.assigned.length} partitions assigned (${group})`;
    });
    this.start();
  }

  /** Stops consuming; resolves once the in-flight consume call returned. */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.stateTimer);
    await this.loopDone;
  }

  /**
   * Leaves the group. librdkafka's close waits for every offset commit in flight, and one sent as the
   * coordinator died waits up to socket.timeout.ms (native-close.ts), so the coordinator is asked first:
   * if it does not answer, the consumer is left unclosed and the group expires this member after
   * session.timeout.ms, as after a crash. Offsets live in Postgres, so nothing depends on the close.
   */
  async close(): Promise<void> {
    this.closing = true;
    await this.stop();
    if (!this.raw.isConnected()) return;
    const probe = await this.coordinatorAnswers(1000);
    if (probe !== true) {
      this.log.warn({ consumer: this.opts.name, err: probe }, 'group coordinator not answering: not closing the consumer; the group expires this member after session.timeout.ms');
      return;
    }
    await closeWithin(`kafka-consumer-${this.opts.name}`, 2000, (done) => this.raw.disconnect(done));
  }

  /** true when the group coordinator answers an offset fetch within `timeoutMs`, else the error. */
  private coordinatorAnswers(timeoutMs: number): Promise<true | Error> {
    return new Promise((resolve) => {
      try {
        this.raw.committed([{ topic: this.opts.topic, partition: 0 }], timeoutMs, (err) => resolve(err ? coerceError(err) : true));
      } catch (e) {
        resolve(coerceError(e));
      }
    });
  }
}
