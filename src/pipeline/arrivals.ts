/**
 * When the messages of a pipeline arrived, in arrival order, so a batch can
 * say how long its oldest message waited for it. Messages arrive in consume
 * chunks and leave in batches, both in order (the sink keeps order), so a
 * queue of (arrival time, messages left) per chunk is enough: a batch of n
 * messages takes n from the front.
 */
export class Arrivals {
  private readonly chunks: Array<{ at: number; left: number }> = [];
  private head = 0;

  /** `n` messages arrived at `at` (ms, performance.now()). */
  arrived(at: number, n: number): void {
    if (n > 0) this.chunks.push({ at, left: n });
  }

  /** Takes the oldest `n` messages; returns when the first of them arrived (undefined when none is known). */
  take(n: number): number | undefined {
    const first = this.chunks[this.head]?.at;
    while (n > 0 && this.head < this.chunks.length) {
      const c = this.chunks[this.head];
      const k = Math.min(n, c.left);
      c.left -= k;
      n -= k;
      if (c.left === 0) this.head++;
    }
    if (this.head > 1024) { this.chunks.splice(0, this.head); this.head = 0; }
    return first;
  }
}
