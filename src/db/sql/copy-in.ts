import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import type { PoolClient } from 'pg';
import { PGCOPY_HEADER, PGCOPY_TRAILER } from '../../codec/pgcopy';

/**
 * Streams pre-encoded binary COPY rows (from several shards) into `table (columns)`,
 * framed by one header and trailer. Inside BEGIN … COMMIT it is all-or-nothing.
 */
export async function copyIn(client: PoolClient, table: string, columns: string, rowChunks: Uint8Array[]): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${table} (${columns}) FROM STDIN (FORMAT binary)`));
  await pipeline(Readable.from([PGCOPY_HEADER, ...rowChunks.filter((c) => c.byteLength > 0), PGCOPY_TRAILER], { objectMode: false }), stream);
}
