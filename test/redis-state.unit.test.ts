/**
 * A cached account state is read only with the fields a decision reads, each
 * of its type, and only for the account it is stored under (src/redis.ts);
 * anything else is a miss and Postgres is read. Redis may be shared, or
 * written by something other than banking-es.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cachedState } from '../src/redis';

const A = '0a000000-0000-4000-8000-0000000000aa';
const good = { accountId: A, version: 3, balance: 1005, currency: 'USD', status: 'open', ownerName: 'Ada' };
const as = (o: Record<string, unknown>) => cachedState(JSON.stringify(o), A);

test('a state banking-es wrote reads back as it was, with only the fields a decision reads', () => {
  assert.equal(as(good), good);
  assert.equal(as({ ...good, transfersPending: 0, extra: 'x' }), good, 'transfersPending is counted from Postgres, never taken from a cache');
  assert.equal(as({ ...good, ownerName: undefined }), { ...good, ownerName: '' });
  assert.equal(as({ ...good, status: 'closed', balance: 0 }), { ...good, status: 'closed', balance: 0 });
});

test('anything else is a miss', () => {
  const bad: Array<[string, Record<string, unknown>]> = [
    ['balance as a string (it would be concatenated, not added)', { ...good, balance: '1005' }],
    ['a negative balance', { ...good, balance: -1 }],
    ['a fractional balance', { ...good, balance: 10.5 }],
    ['a balance past 2^53', { ...good, balance: 2 ** 53 }],
    ['version 0', { ...good, version: 0 }],
    ['a version as a string', { ...good, version: '3' }],
    ['a fractional version', { ...good, version: 2.5 }],
    ['another account', { ...good, accountId: '0b000000-0000-4000-8000-0000000000bb' }],
    ['no account', { ...good, accountId: undefined }],
    ['a lower-case currency', { ...good, currency: 'usd' }],
    ['no currency', { ...good, currency: undefined }],
    ['an unknown status', { ...good, status: 'frozen' }],
    ['an unknown currency (amounts could not be read in it)', { ...good, currency: 'QQQ' }],
    ['closed with money (an account is closed only at zero)', { ...good, status: 'closed', balance: 5 }],
  ];
  for (const [why, o] of bad) assert.is(as(o), null, why);
  for (const raw of ['not json', '', 'null', '42', '"a string"', '[1,2]']) assert.is(cachedState(raw, A), null, raw);
});

test.run();
