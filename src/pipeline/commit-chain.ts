/**
 * Two stages for a pipeline's batches (commands and projections alike):
 * batch N+1 is prepared while batch N commits, and batches commit strictly in
 * order. A batch is prepared on what its predecessor was prepared into, so it
 * may commit only if the predecessor committed exactly that; otherwise its
 * pending state is abandoned and it is prepared again, at once, on what was
 * committed: no later batch has been prepared yet, so that preparation is
 * one the next batch can build on, and one redone batch does not make every
 * later one redo its preparation too.
 */
export class CommitChain<P> {
  private seq = 0;
  private tail: Promise<boolean> = Promise.resolve(true);

  /** @param abandon drops what batch `seq` and every later batch were prepared with */
  constructor(private readonly abandon: (seq: number) => void) {}

  /**
   * Prepares the next batch now, then chains its commit after the previous one; resolves once it is chained.
   * @param prepare prepares the batch as number `seq` (may fail: the commit stage prepares again)
   * @param commit commits it from `first` (or prepares it again when undefined); resolves true when it
   *   committed `first` as prepared. It must never reject.
   */
  async next(prepare: (seq: number) => Promise<P>, commit: (seq: number, first: P | undefined) => Promise<boolean>): Promise<void> {
    const seq = ++this.seq;
    const attempt = async () => {
      try {
        return await prepare(seq);
      } catch {
        return undefined; // e.g. Postgres unreachable while loading state: the commit stage retries with backoff
      }
    };
    let prepared = await attempt();
    if (!(await this.tail)) {
      this.abandon(seq);
      prepared = await attempt();
    }
    this.tail = commit(seq, prepared);
  }
}
