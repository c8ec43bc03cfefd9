/**
 * A corpus of hostile messages through a running daemon (docs/reliability.md
 * §6, docs/architecture.md §2.3): each one is dead-lettered with its key, value and headers
 * plus the error.* and source.* headers, or answered rejected/INVALID_COMMAND,
 * or (extra fields only) processed normally. The daemon never crashes, nothing
 * reaches Object.prototype, and the partitions keep flowing: a valid command
 * after the corpus, on the same keys, is processed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { decodeCommand } from '../../../src/codec/command';
import { cmd, PipelineFixture, type Cmd } from '../../helpers/pipeline';
import type { Delivered, Headers } from '../../helpers/kafka';

type Expect = { dlq: string | string[] } | { rejected: 'INVALID_COMMAND' } | { accepted: true };
interface Hostile { name: string; key: string | Buffer | null; value: string | Buffer | null; headers?: Headers; expect: Expect; commandId?: string }

const MAX = 65536;
let f: PipelineFixture | undefined;

test.after(async () => {
  await f?.release();
});

function corpus(a: string, b: string): Hostile[] {
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

test('hostile messages are dead-lettered or rejected; the daemon and its partitions keep going', async () => {
  f = await PipelineFixture.create('hostile', { LIMITS_MAX_MESSAGE_BYTES: String(MAX) });
  const fx = f;
  await fx.start();
  const a = randomUUID();
  const b = randomUUID();
  const opens: Cmd[] = [cmd.open(a, '100.00'), cmd.open(b, '1.00')];
  await fx.sendAll(opens);
  await fx.outcomeFor(opens, 30000);

  const items = corpus(a, b);
  // the expectations agree with the decoder itself (a change to either shows up here)
  for (const h of items) {
    const k = h.key === null ? null : Buffer.isBuffer(h.key) ? h.key : Buffer.from(h.key);
    const v = h.value === null ? null : Buffer.isBuffer(h.value) ? h.value : Buffer.from(h.value);
    const d = decodeCommand(k, v, MAX);
    if ('dlq' in h.expect) assert.ok(d.kind === 'dlq' && [h.expect.dlq].flat().includes(d.code), `${h.name}: decoder says ${JSON.stringify(d)}`);
  }
  const delivered: Delivered[] = [];
  for (const h of items) delivered.push(await fx.send({ key: h.key, value: h.value, headers: h.headers }));
  // a valid command after them on every key used
  const after = [cmd.deposit(a, '0.50'), cmd.deposit(b, '0.25')];
  await fx.sendAll(after);
  const [afterA, afterB] = await fx.outcomeFor(after, 30000);
  assert.is(afterA.status, 'accepted');
  assert.is(afterA.balance, '104.50', 'a: 100.00 + 1.00 (nested) + 2.00 (constructor) + 1.00 (__proto__) + 0.50');
  assert.is(afterB.status, 'accepted');
  assert.is(afterB.balance, '1.25');

  const answered = items.filter((h) => h.commandId);
  const outcomes = await fx.outcomeFor(answered.map((h) => ({ commandId: h.commandId!, accountId: a, type: '' })), 30000);
  const dlqWanted = items.filter((h) => 'dlq' in h.expect).length;
  await fx.dlq.waitFor((m) => m.length >= dlqWanted, 30000, `${dlqWanted} dead letters`);

  const problems: string[] = [];
  items.forEach((h, i) => {
    const at = delivered[i];
    if ('dlq' in h.expect) {
      const m = fx.dlqMessages().find((x) => x.headers['source.offset'] === String(at.offset) && x.headers['source.partition'] === String(at.partition));
      if (!m) return problems.push(`${h.name}: not dead-lettered`);
      const codes = [h.expect.dlq].flat();
      if (!codes.includes(m.headers['error.code'])) problems.push(`${h.name}: error.code ${m.headers['error.code']}, want ${codes.join('|')}`);
      if (!m.headers['error.message']) problems.push(`${h.name}: no error.message header`);
      if (m.headers['source.topic'] !== fx.topics.commands) problems.push(`${h.name}: source.topic ${m.headers['source.topic']}`);
      for (const [k, v] of Object.entries(h.headers ?? {})) if (m.headers[k] !== v) problems.push(`${h.name}: original header ${k} lost`);
      const wantKey = h.key === null ? null : Buffer.isBuffer(h.key) ? h.key.toString() : h.key;
      if (m.key !== wantKey) problems.push(`${h.name}: key ${m.key}, want ${wantKey}`);
      const wantValue = h.value === null ? null : Buffer.isBuffer(h.value) ? h.value : Buffer.from(h.value);
      if (wantValue === null || wantValue.length === 0 ? (m.raw !== null && m.raw.length !== 0) : !(m.raw && m.raw.equals(wantValue))) problems.push(`${h.name}: value not preserved`);
    } else {
      const o = outcomes[answered.indexOf(h)];
      if ('rejected' in h.expect && (o.status !== 'rejected' || o.reason !== 'INVALID_COMMAND')) problems.push(`${h.name}: ${JSON.stringify(o)}`);
      if ('accepted' in h.expect && o.status !== 'accepted') problems.push(`${h.name}: ${JSON.stringify(o)}`);
    }
  });
  assert.equal(problems, []);
  assert.is(fx.dlqMessages().length, dlqWanted, 'nothing else was dead-lettered');
  const { rows } = await fx.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM command_rejections WHERE reason = $1', ['INVALID_COMMAND']);
  assert.is(rows[0].n, items.filter((h) => 'rejected' in h.expect).length, 'every INVALID_COMMAND is recorded, so a re-send gets the same answer');
  const d = fx.daemon!;
  assert.ok(d.alive, 'the daemon is still running');
  const dlqMetric = (await d.get('/metrics')).body.split('\n').filter((l) => l.startsWith('banking_es_dlq_messages_total{')).reduce((s, l) => s + Number(l.split(' ').pop()), 0);
  assert.is(dlqMetric, dlqWanted, 'banking_es_dlq_messages_total counts them');
  assert.equal(d.logs().filter((l) => (l.level ?? 0) >= 50), [], 'no error-level log lines');
  console.log(`${items.length} hostile messages: ${dlqWanted} dead-lettered, ${answered.length} answered`);
  await fx.stop();
});

test.run();
