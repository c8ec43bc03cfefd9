import type { Connection, PoolClient, Submittable } from 'pg';
import { PGCOPY_HEADER, PGCOPY_TRAILER } from '../../codec/pgcopy';

/**
 * Copies pre-encoded binary COPY rows (from several shards) into `table (columns)`,
 * framed by one header and trailer. Inside BEGIN … COMMIT it is all-or-nothing.
 *
 * The COPY statement, its data and CopyDone leave in ONE socket write: the
 * rows are all in memory already, so waiting for Postgres's CopyInResponse
 * before sending them (as a streaming COPY must) only costs a round trip and
 * two more writes per COPY, and a socket write is not cheap (about a third of
 * the command role's main-thread CPU at 1,000 commands/s went to them). The
 * protocol allows it: the backend reads the data once it is in copy mode, and
 * when the statement fails before that, it ignores CopyData and CopyDone
 * outside copy mode ("Accept but ignore these messages", postgres.c).
 * The write is not throttled (the rows are in memory already; one writev
 * takes them). node-postgres refuses a submittable on a client in its
 * pipeline mode, which the daemon does not use.
 */
export function copyIn(client: PoolClient, table: string, columns: string, rowChunks: Uint8Array[]): Promise<void> {
  const copy = new CopyInOneWrite(`COPY ${table} (${columns}) FROM STDIN (FORMAT binary)`, [PGCOPY_HEADER, ...rowChunks.filter((c) => c.byteLength > 0), PGCOPY_TRAILER]);
  client.query(copy);
  return copy.done;
}

/**
 * A node-postgres submittable (the interface pg-copy-streams implements): pg
 * calls submit() when the connection is free, then the handlers as the
 * backend answers. It settles on ReadyForQuery, or on the first error.
 */
class CopyInOneWrite implements Submittable {
  readonly done: Promise<void>;
  private settle!: (e?: Error) => void;

  constructor(private readonly text: string, private chunks: Uint8Array[]) {
    this.done = new Promise<void>((resolve, reject) => {
      let settled = false;
      this.settle = (e) => {
        if (settled) return;
        settled = true;
        this.callback(e ?? null); // pg wraps it to clear its query_timeout timer, when one is configured
        if (e) reject(e); else resolve();
      };
    });
  }

  submit(connection: Connection): void {
    const text = Buffer.from(this.text, 'utf8');
    const query = Buffer.alloc(1 + 4 + text.length + 1);
    query[0] = 0x51; // 'Q'
    query.writeUInt32BE(4 + text.length + 1, 1);
    text.copy(query, 5);
    const stream = connection.stream as NodeJS.WritableStream & { cork(): void; uncork(): void };
    stream.cork();
    stream.write(query);
    for (const c of this.chunks) {
      const head = Buffer.allocUnsafe(5);
      head[0] = 0x64; // 'd' CopyData
      head.writeUInt32BE(4 + c.byteLength, 1);
      stream.write(head);
      stream.write(c);
    }
    stream.write(COPY_DONE);
    stream.uncork();
    this.chunks = []; // written: the socket holds them now
  }

  /** pg replaces this to learn the query ended (its query_timeout); the promise is what callers await. */
  callback(_err: Error | null): void { /* nothing of our own */ }

  handleCopyInResponse(): void { /* the data is on its way already */ }
  handleCommandComplete(): void { /* "COPY n": ReadyForQuery follows */ }
  handleError(e: Error): void { this.settle(e); }
  handleReadyForQuery(): void { this.settle(); }
}

const COPY_DONE = Buffer.from([0x63, 0, 0, 0, 4]); // 'c' CopyDone
