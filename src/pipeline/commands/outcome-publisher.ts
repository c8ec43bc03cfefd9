/**
 * Publishes a committed batch's outcomes to bank.command-results and tracks,
 * per partition, the offset below which every outcome was acknowledged by
 * Kafka ("published"). That offset is stored with the next batch's commit, so
 * after a crash only the unacknowledged tail is re-published (at-least-once,
 * docs/architecture.md §2.2) and nothing is re-published twice in the normal case.
 */
import type { ProducerClient } from '../../kafka/producer';
import type { Metrics } from '../../metrics';
import type { Logger } from '../../logger';

interface BatchTrack {
  /** the publisher that produced it: roles share one producer, and every listener hears every report */
  owner: OutcomePublisher;
  next: Map<number, number>;
  remaining: number;
  ended: boolean;
  failed: boolean;
  /** produced before the latest assignment: its acknowledgements advance nothing (the new start covers them) */
  stale: boolean;
  /** performance.now() when the batch's outcomes were handed over, and how many */
  since: number;
  outcomes: number;
}

export class OutcomePublisher {
  private readonly inOrder: BatchTrack[] = [];
  private readonly published = new Map<number, number>();
  /**
   * Partitions with an outcome Kafka never acknowledged (delivery failed after
   * librdkafka's own retries): their published offset stays below it until the
   * partition is assigned again, so the next owner (or this process after a
   * restart) re-publishes from there. Other partitions go on advancing.
   */
  private readonly frozen = new Set<number>();
  private waiters: Array<() => void> = [];

  constructor(private readonly producer: ProducerClient, private readonly topic: string, private readonly metrics: Metrics, private readonly log: Logger, private readonly pipeline = 'commands') {
    producer.raw.on('delivery-report', (err, report) => {
      const t = report.opaque as BatchTrack | undefined;
      if (t?.owner !== this) return;
      if (err) {
        t.failed = true;
        this.log.error({ err }, 'outcome delivery failed; it is re-published after restart');
      } else this.metrics.outcomesPublished.inc();
      t.remaining--;
      this.settle();
    });
  }

  beginBatch(next: Map<number, number>) {
    const t: BatchTrack = { owner: this, next, remaining: 0, ended: false, failed: false, stale: false, since: performance.now(), outcomes: 0 };
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
      if (t.failed) for (const p of t.next.keys()) this.frozen.add(p);
      for (const [p, n] of t.next) if (!this.frozen.has(p)) this.published.set(p, Math.max(n, this.published.get(p) ?? 0));
    }
    if (this.inOrder.length === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
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
