/**
 * The one transaction per batch (docs/architecture.md §4): BEGIN, the role's
 * rows, the consumer offsets up to the batch's end, COMMIT, so the rows and
 * the offsets that consumed them become visible together or not at all. A
 * dry run (the canary) rolls back instead. Never throws: the result says
 * what happened, every failure classified once (src/errors.ts).
 */
import type { Pool, PoolClient } from 'pg';
import { upsertOffsets } from '../db/sql/consumer-offsets';
import { begin, commit, rollback } from '../db/sql/transaction';
import { classifyError, type ErrorClass } from '../errors';
import type { WriteResult } from './role';

export type TransactionResult =
  /** seconds from asking the pool for a connection to the role's rows written, then the offsets and COMMIT */
  | { kind: 'committed'; writeSeconds: number; commitSeconds: number }
  /** `error`: the unique violation, when that is what asked for the redo (not the role) */
  | { kind: 'redo'; error?: unknown }
  | { kind: 'gated'; gate: string; why: string }
  | { kind: 'failed'; error: unknown; errorClass: ErrorClass };

export interface OffsetsRow { partition: number; next: number; published: number | null }

export async function inTransaction(
  pool: Pool,
  write: (client: PoolClient) => Promise<WriteResult>,
  offsets: { group: string; topic: string; rows: OffsetsRow[] },
  dryRun = false,
): Promise<TransactionResult> {
  const t0 = performance.now();
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    return { kind: 'failed', error, errorClass: classifyError(error) };
  }
  let result: TransactionResult;
  try {
    await begin(client);
    const written = await write(client);
    if (written === 'written') {
      const t1 = performance.now();
      await upsertOffsets(client, offsets.group, offsets.topic, offsets.rows);
      if (dryRun) await rollback(client);
      else await commit(client);
      client.release();
      return { kind: 'committed', writeSeconds: (t1 - t0) / 1000, commitSeconds: (performance.now() - t1) / 1000 };
    }
    result = written === 'redo' ? { kind: 'redo' } : { kind: 'gated', gate: written.gated, why: written.why };
  } catch (error) {
    const errorClass = classifyError(error);
    result = errorClass === 'conflict' ? { kind: 'redo', error } : { kind: 'failed', error, errorClass };
  }
  await rollback(client);
  // a connection that failed transiently may be broken: destroyed rather than pooled again
  client.release(result.kind === 'failed' && result.errorClass === 'transient' ? coerce(result.error) : undefined);
  return result;
}

const coerce = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));
