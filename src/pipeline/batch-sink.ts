/**
 * The RxJS side of a pipeline: messages are buffered by time and count
 * (bufferTime with a max size), empty buffers dropped, and batches handled
 * one at a time. While a batch is being committed, the batches that arrive
 * meanwhile are coalesced up to the size bound, so a slow commit is followed
 * by one bigger batch instead of a queue of small ones.
 *
 * Items may carry a weight (the projector pushes one packed chunk per consume
 * call, weighing its message count): a batch then holds at most `maxSize` of
 * weight, or one item if that alone is heavier.
 */
import { Subject, bufferTime, filter, type Subscription } from 'rxjs';

export class BatchSink<T> {
  private readonly input = new Subject<T>();
  private readonly sub: Subscription;
  private readonly queue: Array<{ items: T[]; weight: number }> = [];
  private busy = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    timeMs: number,
    private readonly maxSize: number,
    private readonly handle: (batch: T[]) => Promise<void>,
    private readonly weight: (item: T) => number = () => 1,
  ) {
    this.sub = this.input
      .pipe(bufferTime(timeMs, null, maxSize), filter((b) => b.length > 0))
      .subscribe((b) => this.enqueue(b));
  }

  push(item: T): void {
    this.input.next(item);
  }

  private enqueue(b: T[]): void {
    for (const x of b) {
      const w = this.weight(x);
      const last = this.queue[this.queue.length - 1];
      if (last && last.weight + w <= this.maxSize) {
        last.items.push(x);
        last.weight += w;
      } else this.queue.push({ items: [x], weight: w });
    }
    if (!this.busy) void this.drain();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length) {
      const b = this.queue.shift()!;
      await this.handle(b.items);
    }
    this.busy = false;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Resolves once everything pushed so far has been handled (bufferTime flushes within its time bound). */
  async idle(timeMs: number): Promise<void> {
    await new Promise((r) => setTimeout(r, timeMs + 1));
    if (!this.busy && this.queue.length === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  close(): void {
    this.input.complete();
    this.sub.unsubscribe();
  }
}
