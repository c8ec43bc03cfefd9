/**
 * The hostile command corpus: messages a careless or malicious producer sends,
 * each with what banking-es does with it (dead-letter code, INVALID_COMMAND,
 * or accepted). Run through a daemon in hostile-input.int.test.ts and
 * against the command schema in contracts.unit.test.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Headers } from './kafka';

export type Expect = { dlq: string | string[] } | { rejected: 'INVALID_COMMAND' } | { accepted: true };
export interface Hostile { name: string; key: string | Buffer | null; value: string | Buffer | null; headers?: Headers; expect: Expect; commandId?: string }

/** limits.maxMessageBytes the corpus is written for */
export const MAX = 65536;

export function hostileCorpus(a: string, b: string): Hostile[] {
  const id = () => randomUUID();
  const dep = (extra: string, commandId = id()) => ({ commandId, json: `{"commandId":"${commandId}","type":"Deposit","accountId":"${a}"${extra}}` });
  const items: Hostile[] = [];
  const add = (name: string, key: string | Buffer | null, value: string | Buffer | null, expect: Expect, commandId?: string, headers?: Headers) => items.push({ name, key, value, expect, commandId, headers });
  add('invalid UTF-8', a, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { dlq: 'NOT_UTF8' }, undefined, { trace: 'utf8' });
  add('overlong UTF-8 encoding of "/"', a, Buffer.from([0xc0, 0xaf]), { dlq: 'NOT_UTF8' });
  add('binary garbage', a, Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) & 0xff)), { dlq: ['NOT_UTF8', 'NOT_JSON'] });
  add('null value (tombstone)', a, null, { dlq: 'EMPTY_VALUE' }, undefined, { kind: 'tombstone' });
  add('empty value', a, '', { dlq: 'EMPTY_VALUE' });
  add('not JSON', a, '{"commandId": ', { dlq: 'NOT_JSON' });
  add('JSON array', a, '[1,2,3]', { dlq: 'NOT_OBJECT' });
  add('JSON null', a, 'null', { dlq: 'NOT_OBJECT' });
  add('JSON string', a, '"Deposit"', { dlq: 'NOT_OBJECT' });
  add('deeply nested array', a, '['.repeat(30000) + ']'.repeat(30000), { dlq: ['NOT_JSON', 'NOT_OBJECT'] });
  const nested = dep(`,"amount":"1.00","x":${'{"a":'.repeat(6000)}1${'}'.repeat(6000)}`);
  add('deeply nested field in a valid deposit', a, nested.json, { accepted: true }, nested.commandId);
  const huge = dep(`,"amount":"1.00","pad":"${'x'.repeat(MAX)}"`);
  add('huge JSON (over limits.maxMessageBytes)', a, huge.json, { dlq: 'TOO_LARGE' }, undefined, { big: 'yes' });
  add('no commandId', a, `{"type":"Deposit","accountId":"${a}","amount":"1.00"}`, { dlq: 'NO_COMMAND_ID' });
  add('commandId not a UUID', a, `{"commandId":"42","type":"Deposit","accountId":"${a}","amount":"1.00"}`, { dlq: 'NO_COMMAND_ID' });
  add('commandId only in __proto__', a, `{"__proto__":{"commandId":"${id()}"},"type":"Deposit","accountId":"${a}","amount":"1.00"}`, { dlq: 'NO_COMMAND_ID' });
  const mism = id();
  add('key does not match accountId', b, `{"commandId":"${mism}","type":"Deposit","accountId":"${a}","amount":"1.00"}`, { dlq: 'KEY_MISMATCH' });
  add('no accountId and no key', null, `{"commandId":"${id()}","type":"Deposit","amount":"1.00"}`, { dlq: 'NO_ACCOUNT_ID' });
  const protoAmount = dep(',"__proto__":{"amount":"5.00"}');
  add('amount only in __proto__', a, protoAmount.json, { rejected: 'INVALID_COMMAND' }, protoAmount.commandId);
  const ctor = dep(',"amount":"2.00","constructor":{"prototype":{"polluted":true}},"prototype":{"polluted":true}');
  add('constructor/prototype keys beside a valid deposit', a, ctor.json, { accepted: true }, ctor.commandId);
  const protoType = dep(',"amount":"1.00","__proto__":{"type":"Withdraw","polluted":true}');
  add('__proto__ with a polluting payload', a, protoType.json, { accepted: true }, protoType.commandId);
  for (const [name, extra] of [
    ['number as amount', ',"amount":5'], ['float as amount', ',"amount":0.1'], ['exponent notation', ',"amount":"1e3"'],
    ['negative zero string', ',"amount":"-0"'], ['negative zero number', ',"amount":-0'], ['3 decimals for USD', ',"amount":"1.001"'],
    ['zero amount', ',"amount":"0.00"'], ['leading zeros', ',"amount":"007"'], ['amount with spaces', ',"amount":" 1.00"'],
    ['NaN amount', ',"amount":"NaN"'], ['no amount', ''], ['expectedVersion as string', ',"amount":"1.00","expectedVersion":"3"'],
    ['negative expectedVersion', ',"amount":"1.00","expectedVersion":-1'],
  ] as const) {
    const c = dep(extra);
    add(name, a, c.json, { rejected: 'INVALID_COMMAND' }, c.commandId);
  }
  const unknownType = id();
  add('unknown type', a, `{"commandId":"${unknownType}","type":"Transfer","accountId":"${a}","amount":"1.00"}`, { rejected: 'INVALID_COMMAND' }, unknownType);
  const badCurrency = id();
  const c2 = randomUUID();
  add('unknown currency', c2, `{"commandId":"${badCurrency}","type":"OpenAccount","accountId":"${c2}","ownerName":"x","currency":"XYZ"}`, { rejected: 'INVALID_COMMAND' }, badCurrency);
  const lowerCurrency = id();
  add('lower-case currency', c2, `{"commandId":"${lowerCurrency}","type":"OpenAccount","accountId":"${c2}","ownerName":"x","currency":"usd"}`, { rejected: 'INVALID_COMMAND' }, lowerCurrency);
  const noOwner = id();
  add('OpenAccount without ownerName', c2, `{"commandId":"${noOwner}","type":"OpenAccount","accountId":"${c2}"}`, { rejected: 'INVALID_COMMAND' }, noOwner);
  const badAccount = id();
  add('accountId not a UUID, key is', a, `{"commandId":"${badAccount}","type":"Deposit","accountId":"acct-1","amount":"1.00"}`, { rejected: 'INVALID_COMMAND' }, badAccount);
  return items;
}

