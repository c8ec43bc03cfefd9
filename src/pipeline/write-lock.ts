/**
 * The write lock of the pipelines that append to accounts in one process
 * (commands, transfers; DaemonContext.accountWrites). A batch redone
 * carefully holds it exclusively from reading Postgres to its commit, so
 * no commit of the other pipeline in this process overtakes it: without it
 * two writers redid each other's batches over and over (docs/transfers.md,
 * "What it costs today"). Every other commit holds it shared: commits of
 * both pipelines run side by side, and one blocked in Postgres (a held row,
 * up to statement_timeout) holds up only the other's careful redos.
 *
 * First come, first served: a request waits for every request before it
 * that it conflicts with, so a waiting careful redo is not starved by a
 * stream of shared commits.
 */
type Release = () => void;

interface Request { exclusive: boolean; grant: (release: Release) => void }

export class WriteLock {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Request[] = [];

  /** Resolves, once no holder conflicts and no earlier request waits, with this holder's release (idempotent). */
  acquire(mode: 'shared' | 'exclusive' = 'exclusive'): Promise<Release> {
    return new Promise((grant) => {
      this.queue.push({ exclusive: mode === 'exclusive', grant });
      this.pump();
    });
  }

  /** Requests waiting now (not counting the holders). */
  get queued(): number {
    return this.queue.length;
  }

  private pump(): void {
    for (;;) {
      const next = this.queue[0];
      if (!next || this.exclusive || (next.exclusive && this.shared > 0)) return;
      this.queue.shift();
      if (next.exclusive) this.exclusive = true;
      else this.shared++;
      let done = false;
      next.grant(() => {
        if (done) return;
        done = true;
        if (next.exclusive) this.exclusive = false;
        else this.shared--;
        this.pump();
      });
    }
  }
}
