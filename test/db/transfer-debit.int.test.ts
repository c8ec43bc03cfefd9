/**
 * A Transfer's debit against real Postgres (docs/transfers.md, #17): the
 * worker's TransferDebited row goes into `events`, and what findKnownOutcomes
 * then reads back is enough to publish the very same credit step again, the
 * way a replay after a crash or a producer's re-send does.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pool } from 'pg';
import { copyIn } from '../../src/db/sql/copy-in';
import { findKnownOutcomes } from '../../src/db/sql/find-known-outcomes';
import { loadLatestStates } from '../../src/db/sql/load-latest-states';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { EVENT_COLUMNS } from '../../src/codec/rows';
import { decideShard, type KnownOutcome } from '../../src/pipeline/commands/decide-shard';
import { forEachRecord, Packer } from '../../src/pipeline/pack';
import { createTestDatabase, type TestDb } from '../helpers/stack';

let db: TestDb;
let pool: Pool;

test.before(async () => {
  db = await createTestDatabase('transfer_debit');
  pool = createPool({ url: db.url, max: 2 }, createLogger({ level: 'silent' }));
  await migrate(pool);
});

test.after(async () => {
  await pool?.end();
  await db?.drop();
});

const A = '0a000000-0000-4000-8000-0000000000aa', B = '0b000000-0000-4000-8000-0000000000bb';
const T = '71000000-0000-4000-8000-000000000001';

function decideOne(known: Map<string, KnownOutcome> | null, replayBelow: Map<number, number> | null) {
  const p = new Packer(1024);
  p.message(3, 42, A, Buffer.from(JSON.stringify({ commandId: T, type: 'Transfer', accountId: A, toAccountId: B, amount: '12.34' })));
  const r = decideShard({
    msgs: p.finish(), states: [{ accountId: A, version: 5, balance: 5000, currency: 'EUR', status: 'open', ownerName: '' }],
    known, replayBelow, maxMessageBytes: 65536, nowMs: Date.now(), transfers: true,
  });
  const steps: string[] = [];
  forEachRecord(r.steps, (k, v) => steps.push(`${k!.toString()} ${v!.toString()}`));
  return { r, steps };
}

test('a debit stored by the worker brings back the same credit step, and restores the source', async () => {
  const first = decideOne(null, null);
  assert.is(first.steps.length, 1);
  const client = await pool.connect();
  try {
    await copyIn(client, 'events', EVENT_COLUMNS, [first.r.events]);
  } finally {
    client.release();
  }
  const known = await findKnownOutcomes(pool, [A], [T]);
  assert.equal(known.get(`${A}/${T}`), {
    status: 'accepted', type: 'Transfer', version: 6, balance: '37.66', sourcePartition: 3, sourceOffset: 42,
    transfer: { toAccountId: B, amount: '12.34', currency: 'EUR' },
  });
  const again = decideOne(known, new Map([[3, 100]]));
  assert.equal(again.steps, first.steps, 'byte for byte');
  assert.equal([again.r.eventCount, again.r.republished], [0, 1]);
  // the latest event alone restores the source: balance after the debit, still open
  const states = await loadLatestStates(pool, [A]);
  assert.equal(states.get(A), { accountId: A, version: 6, balance: 3766, currency: 'EUR', status: 'open', ownerName: '' });
});

test.run();
