/**
 * Publishes a committed batch's outcomes to bank.command-results and tracks,
 * per partition, the offset below which every outcome was acknowledged by
 * Kafka ("published"). That offset is stored with the next batch's commit, so
 * after a crash only the unacknowledged tail is re-published (at-least-once,
 * docs/architecture.md §2.2) and nothing is re-published twice in the normal case.
 *
 * An outcome (or transfer step) Kafka never acknowledged, after librdkafka's
 * own retries up to message.timeout.ms, freezes its partition's published
 * offset; the pipeline then rewinds the partition's consumer to the first
 * offset whose outcome may be lost (dueRewinds), with backoff, and the
 * replayed messages publish their outcomes again as Postgres has them. The
 * partition thaws once the replay's first batch is acknowledged. Without the
 * rewind, a lost outcome or step waited for the next assignment (a restart).
 */
import type { ProducerClient } from '../../kafka/producer';
import type { Metrics } from '../../metrics';
import type { Logger } from '../../logger';

interface BatchTrack {
  /** the publisher that produced it: roles share one producer, and every listener hears every report */
  owner: OutcomePublisher;
  /** in beginBatch order */
  id: number;
  next: Map<number, number>;
  /** partition -> the batch's first offset there */
  from: ReadonlyMap<number, number>;
  remaining: number;
  ended: boolean;
  failed: boolean;
  /** the first delivery error of the batch, for the log */
  error?: { code?: number; message: string };
  /** produced before the latest assignment: its acknowledgements advance nothing (the new start covers them) */
  stale: boolean;
  /** performance.now() when the batch's outcomes were handed over, and how many */
  since: number;
  outcomes: number;
}

/** A partition with an outcome Kafka never acknowledged, at offset `from` or above. */
interface Frozen {
  /** every outcome below it was acknowledged: the replay starts here */
  from: number;
  /** failure episodes and rewinds in a row, for the backoff */
  failures: number;
  /** when the partition is to be rewound (performance.now()) */
  dueAt: number;
  /**
   * Set when the consumer is rewound to `from` (beginRewind): batches begun after track `afterTrack` were
   * consumed after the seek (consumption was held and drained first), so the first of them acknowledged on
   * this partition starts the replay, at `from` or at the next offset that holds a message: it thaws the
   * partition. A batch begun before it may hold offsets above a gap (the replay not yet done): never.
   */
  rewound: { afterTrack: number; at: number } | null;
}

/** Backoff between rewinds of a partition whose outcomes keep failing: 1 s, doubling, at most a minute. */
const rewindBackoffMs = (failures: number) => Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6));

export class OutcomePublisher {
  private readonly inOrder: BatchTrack[] = [];
  private readonly published = new Map<number, number>();
  /**
   * Partitions with an outcome Kafka never acknowledged (delivery failed after
   * librdkafka's own retries): their published offset stays below it until
   * the rewound replay is acknowledged, or the partition is assigned again (the
   * next owner, or this process after a restart, re-publishes from the stored
   * published offset). Other partitions go on advancing.
   */
  private readonly frozen = new Map<number, Frozen>();
  private began = 0;
  private waiters: Array<() => void> = [];

  /** a rewound partition not thawed within this is rewound again: the producer's message.timeout.ms and a minute */
  private readonly thawWithinMs: number;

  constructor(private readonly producer: ProducerClient, private readonly topic: string, private readonly metrics: Metrics, private readonly log: Logger, private readonly pipeline = 'commands', messageTimeoutMs = 300_000) {
    this.thawWithinMs = messageTimeoutMs + 60_000;
    producer.raw.on('delivery-report', (err, report) => {
      const t = report.opaque as BatchTrack | undefined;
      if (t?.owner !== this) return;
      if (err) {
        // logged once per failure episode and partition (freeze), not per message
        t.error ??= { code: err.code, message: err.message };
        t.failed = true;
      } else this.metrics.outcomesPublished.inc();
      t.remaining--;
      this.settle();
    });
  }

  /** A committed batch's outcomes follow; `from` and `next`: its first offset and the offset after its last, per partition. */
  beginBatch(next: Map<number, number>, from: ReadonlyMap<number, number>) {
    const t: BatchTrack = { owner: this, id: ++this.began, next, from, remaining: 0, ended: false, failed: false, stale: false, since: performance.now(), outcomes: 0 };
    this.inOrder.push(t);
    return {
      /** An outcome, or (with `topic`) a transfer step: the published offset passes the batch once all are acknowledged. */
      add: (key: Buffer | null, value: Buffer | null, topic = this.topic) => {
        t.remaining++;
        t.outcomes++;
        this.produce(topic, key, value, t);
      },
      end: () => {
        t.ended = true;
        this.settle();
      },
    };
  }

  private produce(topic: string, key: Buffer | null, value: Buffer | null, t: BatchTrack): void {
    for (let i = 0; ; i++) {
      try {
        this.producer.raw.produce(topic, null, value, key ?? undefined, Date.now(), t);
        return;
      } catch (e) {
        // local queue full: serve delivery reports and try again (the queue bound keeps memory bounded)
        if (i > 10000) throw e;
        this.producer.raw.poll();
        const until = Date.now() + 1;
        while (Date.now() < until) { /* spin 1 ms while librdkafka drains */ }
      }
    }
  }

  private settle(): void {
    while (this.inOrder.length && this.inOrder[0].ended && this.inOrder[0].remaining === 0) {
      const t = this.inOrder.shift()!;
      if (t.outcomes > 0 && !t.failed) this.metrics.stage.observe({ pipeline: this.pipeline, stage: 'publish' }, (performance.now() - t.since) / 1000);
      if (t.stale) continue;
      if (t.failed) {
        for (const p of t.next.keys()) this.freeze(p, t.from.get(p) ?? 0, t.error);
        continue;
      }
      for (const [p, n] of t.next) {
        const f = this.frozen.get(p);
        // acknowledged while frozen: it thaws only with the replay's first batch (every outcome from f.from on is then acknowledged)
        if (f !== undefined && !(f.rewound !== null && t.id > f.rewound.afterTrack)) continue;
        if (f !== undefined) {
          this.frozen.delete(p);
          this.metrics.outcomePartitionsFrozen.set({ pipeline: this.pipeline }, this.frozen.size);
          this.log.info({ partition: p, pipeline: this.pipeline }, 'outcomes that had failed to reach Kafka were published again; the partition\'s published offset moves on');
        }
        this.published.set(p, Math.max(n, this.published.get(p) ?? 0));
      }
    }
    if (this.inOrder.length === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  /**
   * A batch with outcomes from `from` on failed on `partition`. A failure episode starts (logged once) when the
   * partition was not frozen, or again when the replay after a rewind failed too (backed off further); more
   * failed batches of the same episode only lower `from`.
   */
  private freeze(partition: number, from: number, error?: { code?: number; message: string }): void {
    const f = this.frozen.get(partition);
    if (f !== undefined && f.rewound === null) {
      f.from = Math.min(f.from, from);
      return;
    }
    const failures = (f?.failures ?? 0) + 1;
    const next: Frozen = { from: Math.min(from, f?.from ?? from), failures, dueAt: performance.now() + rewindBackoffMs(failures), rewound: null };
    this.frozen.set(partition, next);
    this.metrics.outcomePartitionsFrozen.set({ pipeline: this.pipeline }, this.frozen.size);
    this.log.error({ partition, pipeline: this.pipeline, from: next.from, failures, rewindInMs: rewindBackoffMs(failures), kafkaError: error },
      'outcome delivery failed (Kafka did not acknowledge it, after its own retries up to KAFKA_MESSAGE_TIMEOUT_MS); the partition is consumed again from the first lost outcome to publish it again');
  }

  /**
   * The frozen partitions to rewind now, with the offset to rewind to: due after their backoff, or rewound
   * and still not thawed a minute after the replay's outcomes could have timed out (the seek did not take).
   * The caller holds consumption, lets what was consumed commit, then calls beginRewind() and seeks the
   * consumer (or calls rewindFailed). A batch handed over before beginRewind that fails later starts a new
   * episode (the rewind under way no longer thaws the partition; another follows from the lower offset).
   */
  dueRewinds(now = performance.now()): Array<{ partition: number; offset: number }> {
    const due: Array<{ partition: number; offset: number }> = [];
    for (const [partition, f] of this.frozen) {
      if (f.rewound === null ? f.dueAt <= now : now - f.rewound.at > this.thawWithinMs) due.push({ partition, offset: f.from });
    }
    return due;
  }

  /**
   * The consumer is about to be rewound: to the first lost outcome, or to `logStart` if Kafka no longer holds
   * the commands below it (their outcomes cannot be published again). Every batch begun from now on was
   * consumed after the seek. Undefined: the partition is no longer frozen (assigned again meanwhile).
   */
  beginRewind(partition: number, logStart: number): number | undefined {
    const f = this.frozen.get(partition);
    if (f === undefined) return undefined;
    if (logStart > f.from) {
      this.log.error({ partition, pipeline: this.pipeline, from: f.from, logStart },
        'outcomes of commands Kafka no longer holds (retention) never reached Kafka and cannot be published again; consuming the partition again from the log start');
      f.from = logStart;
    }
    f.rewound = { afterTrack: this.began, at: performance.now() };
    return f.from;
  }

  /** The consumer could not be rewound: try again after the backoff. */
  rewindFailed(partition: number): void {
    const f = this.frozen.get(partition);
    if (f === undefined) return;
    f.failures++;
    f.dueAt = performance.now() + rewindBackoffMs(f.failures);
    f.rewound = null;
  }

  publishedOffsets(): Map<number, number> {
    return new Map(this.published);
  }

  /**
   * The consumer now owns exactly these partitions, starting from the
   * published offsets Postgres stores: everything above them is re-published.
   * What this process knew of partitions it no longer owns is forgotten, and
   * batches still in flight from before advance nothing: one of them could
   * otherwise be acknowledged after a failed one whose freeze this lifts.
   */
  assigned(partitions: Iterable<number>): void {
    const owned = new Set(partitions);
    for (const t of this.inOrder) t.stale = true;
    for (const p of [...this.published.keys()]) if (!owned.has(p)) this.published.delete(p);
    this.frozen.clear(); // the new start is the stored published offset, below any failed outcome
    this.metrics.outcomePartitionsFrozen.set({ pipeline: this.pipeline }, 0);
  }

  /** Resolves when every outcome handed over so far was acknowledged, or after timeoutMs in all. */
  async flushed(timeoutMs: number): Promise<void> {
    if (this.inOrder.length === 0) return;
    const deadline = Date.now() + timeoutMs;
    await this.producer.flush(timeoutMs).catch(() => undefined);
    const left = deadline - Date.now();
    if (this.inOrder.length === 0 || left <= 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, left);
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }
}
