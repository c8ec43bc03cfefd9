/**
 * The in-process account-state cache's counters (#16 item 7): lookups by
 * where they were answered, evictions once it holds its size, its size.
 * Postgres lookups are counted against a running daemon in pipeline.int.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Registry } from 'prom-client';
import type { Pool } from 'pg';
import { AccountStates, StateCache } from '../../../src/pipeline/commands/account-states';
import { createLogger } from '../../../src/logger';
import { createMetrics } from '../../../src/metrics';
import type { AccountState } from '../../../src/domain/types';

const state = (accountId: string, version: number): AccountState => ({ accountId, version, balance: 100n, currency: 'USD', status: 'open', ownerName: 'A' } as unknown as AccountState);
const noDb = { query: () => { throw new Error('every state is cached: Postgres must not be asked'); } } as unknown as Pool;

async function value(m: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}): Promise<number> {
  const v = (await m.registry.getSingleMetric(name)!.get()).values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

test('memory hits, evictions past the size, and the size', async () => {
  const m = createMetrics(new Registry(), { defaultMetrics: false });
  const s = new AccountStates(new StateCache(2, m), createLogger({ level: 'silent' }), undefined, 1000, m);
  s.committed(1, [state('a', 1), state('b', 1)]);
  assert.is(await value(m, 'banking_es_state_cache_accounts'), 2);
  const got = await s.load(noDb, ['a', 'b'], 2);
  assert.is(got.states.size, 2);
  assert.is(got.fromRedis.size, 0, 'in-process states need no check at commit');
  assert.is(await value(m, 'banking_es_state_lookups_total', { answered: 'memory' }), 2);
  s.committed(2, [state('c', 1)]);
  assert.is(await value(m, 'banking_es_state_cache_evictions_total'), 1, 'a, the oldest, made room for c');
  assert.is(await value(m, 'banking_es_state_cache_accounts'), 2);
  s.prepared(3, [state('a', 2)]);
  assert.is((await s.load(noDb, ['a'], 4)).states.get('a')!.version, 2, 'a batch still committing answers from memory');
  assert.is(await value(m, 'banking_es_state_lookups_total', { answered: 'memory' }), 3);
});

test('two pipelines share the committed states: what one committed, the other decides on; never an older one', async () => {
  const m = createMetrics(new Registry(), { defaultMetrics: false });
  const log = createLogger({ level: 'silent' });
  const shared = new StateCache(10, m);
  const commands = new AccountStates(shared, log, undefined, 1000, m);
  const transfers = new AccountStates(shared, log, undefined, 1000, m);
  commands.committed(1, [state('a', 3)]);
  transfers.committed(7, [state('a', 4)]); // a credit
  assert.is((await commands.load(noDb, ['a'], 2)).states.get('a')!.version, 4, 'the credit the transfer pipeline committed');
  commands.committed(2, [state('a', 3)]); // reported late: an older state
  assert.is((await transfers.load(noDb, ['a'], 8)).states.get('a')!.version, 4, 'a late report never moves a state back');
  commands.prepared(3, [state('a', 5)]);
  assert.is((await transfers.load(noDb, ['a'], 9)).states.get('a')!.version, 4, 'what one pipeline prepared stays its own until it commits');
  assert.is((await commands.load(noDb, ['a'], 4)).states.get('a')!.version, 5);
});

test.run();
