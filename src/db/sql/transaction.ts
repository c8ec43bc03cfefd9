import type { PoolClient } from 'pg';

/** Transaction control on one checked-out client (the callers decide what goes between). */
export async function begin(client: PoolClient): Promise<void> {
  await client.query('BEGIN');
}

export async function commit(client: PoolClient): Promise<void> {
  await client.query('COMMIT');
}

/** Rolls back; a failure is swallowed (the connection is then released broken, or the server already ended the transaction). */
export async function rollback(client: PoolClient): Promise<void> {
  await client.query('ROLLBACK').catch(() => undefined);
}

/** Runs `fn` in a transaction on `client`: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(client: PoolClient, fn: () => Promise<T>): Promise<T> {
  await begin(client);
  try {
    const r = await fn();
    await commit(client);
    return r;
  } catch (e) {
    await rollback(client);
    throw e;
  }
}
