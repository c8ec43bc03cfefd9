/**
 * A first-come, first-served lock for async work in one process. The
 * pipelines that append to accounts (commands, transfers) share one
 * (DaemonContext.accountWrites), so a batch redone carefully from Postgres
 * is not overtaken, between reading the accounts and committing, by the other
 * pipeline's commit to the same accounts: without it two writers redid each
 * other's batches over and over (docs/transfers.md, "What it costs").
 */
export class ExclusiveLock {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  /** Resolves, once every earlier holder has released, with this holder's release (idempotent). */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const before = this.tail;
    this.tail = before.then(() => held);
    this.waiting++;
    return before.then(() => {
      this.waiting--;
      let done = false;
      return () => { if (!done) { done = true; release(); } };
    });
  }

  /** Holders waiting for the lock now (not counting the one holding it). */
  get queued(): number {
    return this.waiting;
  }
}
