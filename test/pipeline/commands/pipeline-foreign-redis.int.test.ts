/**
 * A Redis holding account states Postgres never held (docs/reliability.md §3):
 * a Redis shared by two deployments, or one that outlived a restore of
 * Postgres. The daemon runs with a private redis-server; between restarts
 * (each starts with an empty in-process cache, so it reads Redis) the test
 * writes there, for accounts the daemon has opened, states newer than
 * Postgres, at Postgres's version with another balance, a closed account
 * shown open, and one in another currency. Every command is still decided
 * on what Postgres holds: outcomes as Postgres says, versions without gaps,
 * and the forged states dropped from Redis or replaced by committed ones;
 * genuine states (an open and a closed account never forged) are not
 * counted. Three rounds. A second case forges a refund's source for a
 * separate transfer-role process: nothing is dead-lettered.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { cmd, PipelineFixture } from '../../helpers/pipeline';
import { releasePrivateRedis, startPrivateRedis, type PrivateRedis } from '../../helpers/faults';

let redis: PrivateRedis | undefined;
let client: Redis | undefined;
let f: PipelineFixture | undefined;

test.before(async () => {
  redis = await startPrivateRedis();
  if (!redis) throw new Error('redis-server is not installed (apt-get install redis-server)');
  client = new Redis(redis.state.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  f = await PipelineFixture.create('foreignredis', { REDIS_URL: redis.state.url });
});

test.after(async () => {
  await f?.release();
  client?.disconnect();
  await releasePrivateRedis(redis);
});

type Cached = { accountId: string; version: number; balance: number; currency: string; status: string; ownerName: string };
const cached = async (id: string): Promise<Cached | null> => {
  const v = await client!.get(`bes:acct:${id}`);
  return v === null ? null : (JSON.parse(v) as Cached);
};
const forge = (id: string, version: number, balance: number, currency = 'USD') =>
  client!.set(`bes:acct:${id}`, JSON.stringify({ accountId: id, version, balance, currency, status: 'open', ownerName: 'Someone Else' }), 'PX', 3_600_000);

test('states Postgres never held are caught at commit: decided again on Postgres, no gap, no wrong balance', async () => {
  const fx = f!;
  const newer = randomUUID(), sameVersion = randomUUID(), refusedOn = randomUUID(), bystander = randomUUID(), closed = randomUUID(), otherCurrency = randomUUID();
  const reallyClosed = randomUUID(); // closed, and never forged: its genuine state in Redis passes the check
  const opens = [cmd.open(newer, '10.00'), cmd.open(sameVersion, '10.00'), cmd.open(refusedOn, '10.00'), cmd.open(bystander, '0'),
    cmd.open(closed, '0'), cmd.close(closed), cmd.open(otherCurrency, '10.00'), cmd.open(reallyClosed, '0'), cmd.close(reallyClosed)];
  let d = await fx.start();
  await fx.sendAll(opens);
  await fx.outcomeFor(opens, 45000);
  let otherCurrencyVersion = 1, otherCurrencyBalance = 1000;
  assert.is(await d.metric('banking_es_state_cache_unknown_total'), 0, 'states the daemon wrote itself are known');
  // expected balances (cents) and versions, as Postgres holds them
  const expect = { newer: { v: 1, b: 1000 }, sameVersion: { v: 1, b: 1000 }, refusedOn: { v: 1, b: 1000 } };

  for (let round = 1; round <= 3; round++) {
    await fx.stop();
    if (round === 1) assert.is((await cached(sameVersion))?.version, 1, 'the daemon writes its states through to Redis');
    assert.equal([(await cached(reallyClosed))?.status, (await cached(reallyClosed))?.version], ['closed', 2], `round ${round}: the closed account's own state`);
    await forge(newer, expect.newer.v + 5 * round, 500_000); // newer than Postgres: its next event would leave a gap
    await forge(sameVersion, expect.sameVersion.v, 100_000_000); // Postgres's version, another ledger's balance
    await forge(refusedOn, expect.refusedOn.v + 3, 0); // newer and empty: a withdrawal would be refused on it
    await forge(closed, 2, 0); // Postgres's version and balance, but open: a deposit would reopen it
    await forge(otherCurrency, otherCurrencyVersion, otherCurrencyBalance, 'BHD'); // three decimals: 5.00 would be 5000 minor units
    d = await fx.start();

    const cs = [
      cmd.deposit(bystander, '1.00'),
      cmd.deposit(newer, '0.05'),
      cmd.withdraw(sameVersion, '500.00'),
      cmd.deposit(bystander, '1.00'),
      cmd.withdraw(refusedOn, '1.00'),
      cmd.deposit(bystander, '1.00'),
      cmd.deposit(closed, '5.00'),
      cmd.deposit(otherCurrency, '5.00'),
      cmd.deposit(reallyClosed, '1.00'),
    ];
    await fx.sendAll(cs);
    const os = await fx.outcomeFor(cs, 45000);
    expect.newer = { v: expect.newer.v + 1, b: expect.newer.b + 5 };
    expect.refusedOn = { v: expect.refusedOn.v + 1, b: expect.refusedOn.b - 100 };
    const money = (c: number) => (c / 100).toFixed(2);
    assert.equal(os.map((o) => [o.status, o.reason ?? o.balance, o.version ?? null]), [
      ['accepted', money(round * 300 - 200), 3 * round - 1],
      ['accepted', money(expect.newer.b), expect.newer.v],
      ['rejected', 'INSUFFICIENT_FUNDS', null],
      ['accepted', money(round * 300 - 100), 3 * round],
      ['accepted', money(expect.refusedOn.b), expect.refusedOn.v],
      ['accepted', money(round * 300), 3 * round + 1],
      ['rejected', 'ACCOUNT_CLOSED', null],
      ['accepted', money(otherCurrencyBalance + 500), otherCurrencyVersion + 1],
      ['rejected', 'ACCOUNT_CLOSED', null],
    ], `round ${round}`);
    otherCurrencyVersion++;
    otherCurrencyBalance += 500;
    assert.equal((await fx.events(closed)).map((x) => x.event_type), ['AccountCreated', 'AccountClosed'], `round ${round}: the closed account stays closed`);
    assert.equal((await fx.events(otherCurrency)).map((x) => x.payload.data.currency), Array.from({ length: otherCurrencyVersion }, () => 'USD'), `round ${round}: and in its currency`);
    for (const [id, e] of [[newer, expect.newer], [sameVersion, expect.sameVersion], [refusedOn, expect.refusedOn]] as const) {
      const events = await fx.events(id);
      assert.equal(events.map((x) => x.version), Array.from({ length: e.v }, (_, i) => i + 1), `round ${round}: versions without a gap`);
      assert.is(events.at(-1)?.payload.data.balanceAfter, String(e.b), `round ${round}: the balance Postgres says`);
    }
    // each forged state counted once; the genuine ones (the bystander's, the closed account's) never
    assert.is(await d.metric('banking_es_state_cache_unknown_total'), 5, `round ${round}: counted`);
    // committed states replace the forged ones; a state only refused on is dropped
    assert.equal([(await cached(newer))?.version, (await cached(refusedOn))?.version], [expect.newer.v, expect.refusedOn.v], `round ${round}`);
    const same = await cached(sameVersion);
    assert.ok(same === null || same.balance === expect.sameVersion.b, `round ${round}: the other ledger's state is gone from Redis: ${JSON.stringify(same)}`);
    assert.ok(d.logs().some((l) => (l.level ?? 0) === 40 && /not one Postgres holds/.test(String(l.msg))), `round ${round}: a warning says so`);
  }
});

test('a refund is never dead-lettered on a state from Redis: the transfer role decides it on Postgres first', async () => {
  const fx = f!;
  await fx.stop();
  const d = await fx.start(); // the command role alone: the transfer steps wait in their topic
  const source = randomUUID(), closedDestination = randomUUID();
  const setup = [cmd.open(source, '100.00'), cmd.open(closedDestination, '0'), cmd.close(closedDestination)];
  await fx.sendAll(setup);
  await fx.outcomeFor(setup, 45000);
  const transfer = { commandId: randomUUID(), type: 'Transfer', accountId: source, toAccountId: closedDestination, amount: '10.00' };
  await fx.send(transfer as never);
  await d.until(async () => (await fx.events(source)).length === 2, 30000, 'the debit');
  // the daemon writes its state through after the commit: forge only once that write has landed
  await d.until(async () => (await cached(source))?.version === 2, 10000, 'the debited state in Redis');
  // the source as another ledger has it: at the debit's version, with a balance no refund fits into
  await forge(source, 2, Number.MAX_SAFE_INTEGER);
  const steps = fx.join({ ROLES: 'transfers' }); // its own process: its in-process cache is empty, so it reads Redis
  await steps.assigned(4, 30000, 'transfers');
  const [o] = await fx.outcomeFor([transfer as never], 45000);
  assert.equal([o.status, o.reason, o.balance], ['rejected', 'DESTINATION_CLOSED', '100.00']);
  const events = await fx.events(source);
  assert.equal(events.map((e) => [e.event_type, e.payload.data.balanceAfter]), [['AccountCreated', '10000'], ['TransferDebited', '9000'], ['TransferRefunded', '10000']]);
  assert.is(await steps.metric(`banking_es_dlq_messages_total{topic="${fx.topics.commands}.transfers-dlq",reason="REFUND_IMPOSSIBLE"}`) ?? 0, 0, 'no refund dead-lettered');
});

test.run();
