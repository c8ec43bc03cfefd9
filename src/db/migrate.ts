/**
 * Applies src/db/migrations/NNNN_name.sql in order, each in its own
 * transaction, recorded in schema_migrations. A session advisory lock makes
 * concurrent runs safe: the second waits, then finds nothing left to do.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { BankingError } from '../errors';
import { packageRoot } from '../paths';

const LOCK_KEY = 7_403_112_001; // arbitrary, constant: "banking-es migrate"

export interface Migration {
  id: number;
  name: string;
  sql: string;
  checksum: string;
}

export function migrationsDir(): string {
  return path.join(packageRoot(), 'src', 'db', 'migrations');
}

export function readMigrations(dir = migrationsDir()): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = fs.readFileSync(path.join(dir, f), 'utf8');
      return { id: Number(f.slice(0, 4)), name: f.slice(5, -4), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/**
 * Returns the names of the migrations applied by this call (empty when up to date). A migration's
 * RAISE WARNING (e.g. 0006 when the role may not create a publication) goes to `warn`, not only to
 * the server's log.
 */
export async function migrate(pool: Pool, dir?: string, warn?: (message: string) => void): Promise<string[]> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  const applied: string[] = [];
  const onNotice = (n: { severity?: string; message?: string }) => { if (n.severity === 'WARNING' && n.message) warn?.(n.message); };
  client.on('notice', onNotice);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        id integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ id: number; checksum: string; name: string }>('SELECT id, name, checksum FROM schema_migrations');
      const done = new Map(rows.map((r) => [r.id, r]));
      for (const m of migrations) {
        const prev = done.get(m.id);
        if (prev) {
          if (prev.checksum !== m.checksum) {
            throw new BankingError('MIGRATION_FAILED', `migration ${m.id}_${m.name} was changed after it was applied (checksum differs); add a new migration instead`);
          }
          continue;
        }
        try {
          await client.query('BEGIN');
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (id, name, checksum) VALUES ($1, $2, $3)', [m.id, m.name, m.checksum]);
          await client.query('COMMIT');
        } catch (e) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw new BankingError('MIGRATION_FAILED', `migration ${m.id}_${m.name} failed: ${(e as Error).message}`, e);
        }
        applied.push(`${String(m.id).padStart(4, '0')}_${m.name}`);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    client.off('notice', onNotice);
    client.release();
  }
  return applied;
}
