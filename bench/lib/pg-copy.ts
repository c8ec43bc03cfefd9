import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { from } from 'pg-copy-streams';
import type { Client } from 'pg';

export async function copyFrom(client: Client, sql: string, data: Buffer): Promise<void> {
  await pipeline(Readable.from([data]), client.query(from(sql)));
}
