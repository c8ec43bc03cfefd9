/**
 * Decides which LSN the logical-replication relay may confirm to Postgres:
 * never one past an event that Kafka has not acknowledged (docs/architecture.md §3).
 *
 * pgoutput sends each committed transaction whole, in commit order:
 * Begin, its changes, Commit (whose end LSN is what the slot must be told).
 * Entries queue in arrival order; an entry is settled when its Commit arrived
 * and every event it holds is acknowledged. The confirmable LSN is the end LSN
 * of the newest entry in the settled prefix of the queue, so an acknowledged
 * later transaction never confirms an earlier one still in flight.
 *
 * A primary keepalive carries the walsender's sent position: every
 * transaction that commits before it has already reached us. Outside a
 * transaction it becomes a settled entry of its own, which lets the slot move
 * past WAL that holds no events (writes to other tables) once everything
 * before it is acknowledged. Inside a transaction it is ignored: that
 * transaction's Commit is not here yet.
 *
 * Pure bookkeeping: no I/O, no timers.
 */
export interface TxEntry {
  endLsn: bigint;
  outstanding: number;
  committed: boolean;
}

export class CommitTracker {
  private readonly queue: TxEntry[] = [];
  private open: TxEntry | undefined;
  private unacked = 0;

  /** @param confirmedLsn the slot's confirmed_flush_lsn when streaming started */
  constructor(private confirmedLsn: bigint) {}

  /** The newest LSN safe to confirm. */
  get confirmed(): bigint { return this.confirmedLsn; }
  /** Events sent to Kafka and not yet acknowledged. */
  get inFlight(): number { return this.unacked; }
  get inTransaction(): boolean { return this.open !== undefined; }
  /** Transactions (and keepalive marks) not yet settled. */
  get pending(): number { return this.queue.length; }

  begin(): void {
    if (this.open) throw new Error('pgoutput protocol: Begin inside an open transaction');
    this.open = { endLsn: 0n, outstanding: 0, committed: false };
    this.queue.push(this.open);
  }

  /** Counts one event of the open transaction; pass the handle to `delivered` once Kafka acknowledged it. */
  event(): TxEntry {
    if (!this.open) throw new Error('pgoutput protocol: change outside a transaction');
    this.open.outstanding++;
    this.unacked++;
    return this.open;
  }

  /** Returns true when the confirmable LSN moved. */
  delivered(tx: TxEntry): boolean {
    tx.outstanding--;
    this.unacked--;
    return this.advance();
  }

  /** Returns true when the confirmable LSN moved. */
  commit(endLsn: bigint): boolean {
    const tx = this.open;
    if (!tx) throw new Error('pgoutput protocol: Commit without Begin');
    tx.endLsn = endLsn;
    tx.committed = true;
    this.open = undefined;
    return this.advance();
  }

  /** Returns true when the confirmable LSN moved. */
  keepalive(sentLsn: bigint): boolean {
    if (this.open) return false;
    this.queue.push({ endLsn: sentLsn, outstanding: 0, committed: true });
    return this.advance();
  }

  private advance(): boolean {
    let moved = false;
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (!head.committed || head.outstanding > 0) break;
      this.queue.shift();
      if (head.endLsn > this.confirmedLsn) {
        this.confirmedLsn = head.endLsn;
        moved = true;
      }
    }
    return moved;
  }
}
