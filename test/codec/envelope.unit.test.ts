import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEnvelope, newEventId, parseEnvelope, type EventEnvelope } from '../../src/codec/envelope';
import { isUuid } from '../../src/codec/command';

const env: EventEnvelope = {
  eventId: '7d4a1d5e-3b7e-4f5a-9d2c-1e2f3a4b5c6d',
  accountId: '0b6f6c1e-8a5d-4c55-9a8e-5a7f4f0f7a11',
  version: 2,
  type: 'MoneyDeposited',
  data: { amount: '10.50', currency: 'USD', balanceAfter: '1150' },
  commandId: '5f0c6b1e-2a3d-4c55-9a8e-5a7f4f0f7a22',
  recordedAt: '2024-05-01T12:00:00.123Z',
  schemaVersion: 2,
};
const json = encodeEnvelope(env);

// The events row as Debezium's Postgres connector renders it (uuid as string,
// jsonb as io.debezium.data.Json string, timestamptz as ZonedTimestamp).
const row = {
  account_id: env.accountId,
  version: env.version,
  event_id: env.eventId,
  event_type: env.type,
  payload: json,
  command_id: env.commandId,
  recorded_at: '2024-05-01T12:00:00.123000Z',
};
const source = {
  version: '2.7.0.Final', connector: 'postgresql', name: 'banking', ts_ms: 1714564800123, snapshot: 'false',
  db: 'banking', sequence: '["24023928","24023928"]', schema: 'public', table: 'events', txId: 555, lsn: 24023928, xmin: null,
};
const change = { before: null, after: row, source, op: 'c', ts_ms: 1714564800200, transaction: null };
const schema = { type: 'struct', optional: false, name: 'banking.public.events.Envelope', version: 1, fields: [] };

test('encodeEnvelope writes the fields in contract order', () => {
  assert.equal(Object.keys(JSON.parse(json)), ['eventId', 'accountId', 'version', 'type', 'data', 'commandId', 'recordedAt', 'schemaVersion']);
  assert.equal(JSON.parse(json), env);
});

test('round trip from string and Buffer', () => {
  assert.equal(parseEnvelope(json), env);
  assert.equal(parseEnvelope(Buffer.from(json)), env);
  assert.is(encodeEnvelope(parseEnvelope(json) as EventEnvelope), json);
});

test('outbox router output: the payload as a JSON-encoded string', () => {
  assert.equal(parseEnvelope(JSON.stringify(json)), env);
  assert.equal(parseEnvelope(JSON.stringify({ schema: { type: 'string', optional: false }, payload: json })), env);
  assert.equal(parseEnvelope(JSON.stringify({ schema: { type: 'struct', fields: [] }, payload: env })), env);
});

test('Debezium change event with the schema wrapper', () => {
  assert.equal(parseEnvelope(JSON.stringify({ schema, payload: change })), env);
});

test('Debezium change event without the schema wrapper', () => {
  assert.equal(parseEnvelope(JSON.stringify(change)), env);
  assert.equal(parseEnvelope(JSON.stringify({ ...change, op: 'r' })), env); // snapshot read
  assert.equal(parseEnvelope(JSON.stringify({ ...change, after: { ...row, payload: env } })), env); // expanded jsonb
});

test('Debezium delete and truncate are DELETE', () => {
  const del = { before: row, after: null, source, op: 'd', ts_ms: 1 };
  assert.equal(parseEnvelope(JSON.stringify(del)), { error: 'DELETE' });
  assert.equal(parseEnvelope(JSON.stringify({ schema, payload: del })), { error: 'DELETE' });
  assert.equal(parseEnvelope(JSON.stringify({ before: null, after: null, source, op: 't', ts_ms: 1 })), { error: 'DELETE' });
});

test('Debezium row and payload must agree', () => {
  const other = { ...change, after: { ...row, version: 3 } };
  assert.ok('error' in parseEnvelope(JSON.stringify(other)));
  const upper = { ...change, after: { ...row, account_id: env.accountId.toUpperCase() } };
  assert.equal(parseEnvelope(JSON.stringify(upper)), env);
  const badPayload = { ...change, after: { ...row, payload: '{not json' } };
  assert.match((parseEnvelope(JSON.stringify(badPayload)) as { error: string }).error, /payload/);
});

test('UUIDs are normalized to lowercase', () => {
  const upper = { ...env, accountId: env.accountId.toUpperCase(), eventId: env.eventId.toUpperCase() };
  assert.equal(parseEnvelope(JSON.stringify(upper)), env);
});

test('shape errors name the field', () => {
  const cases: [unknown, RegExp][] = [
    [{ ...env, eventId: 'x' }, /eventId/],
    [{ ...env, accountId: undefined }, /accountId/],
    [{ ...env, version: 0 }, /version/],
    [{ ...env, version: '2' }, /version/],
    [{ ...env, version: 1.5 }, /version/],
    [{ ...env, type: 'MoneyStolen' }, /type/],
    [{ ...env, data: null }, /data/],
    [{ ...env, data: [1] }, /data/],
    [{ ...env, commandId: 5 }, /commandId/],
    [{ ...env, recordedAt: 'yesterday' }, /recordedAt/],
    [{ ...env, recordedAt: 1714564800000 }, /recordedAt/],
  ];
  for (const [v, re] of cases) {
    const r = parseEnvelope(JSON.stringify(v));
    assert.ok('error' in r, JSON.stringify(v));
    assert.match((r as { error: string }).error, re);
  }
});

test('unreadable values are errors, not exceptions', () => {
  for (const v of ['', '{', '[]', 'null', '42', '"not json inside"', JSON.stringify({ schema, payload: 5 })]) {
    assert.ok('error' in parseEnvelope(v), v);
  }
  assert.ok('error' in parseEnvelope(Buffer.from([0xff, 0xfe])));
  assert.ok('error' in parseEnvelope(Buffer.alloc(0)));
});

test('__proto__ in an envelope has no effect', () => {
  const raw = json.replace('{', '{"__proto__":{"polluted":1},');
  const r = parseEnvelope(raw) as EventEnvelope;
  assert.equal(r, env);
  assert.is(Object.getPrototypeOf(r), Object.prototype);
  assert.is(({} as Record<string, unknown>).polluted, undefined);
});

test('newEventId returns distinct UUIDs', () => {
  const a = newEventId();
  const b = newEventId();
  assert.ok(isUuid(a));
  assert.ok(a !== b);
});

test.run();
