/**
 * contracts/ (#16 item 5): the AsyncAPI 3 document is valid AsyncAPI 3.0.0 and
 * names the daemon's topics; its JSON Schemas (2020-12) compile; the events
 * the decider and encoder make satisfy the event schema; the hostile command
 * corpus is refused by the command schema wherever banking-es refuses it, but
 * for the differences listed below with their reasons; docs/message-contracts.md
 * is checked against the schemas (its examples validate, its lists are the
 * schemas' enums). What the running daemon produces is checked in the
 * integration tests (pipeline.int, hostile-input.int, dlq-cli.int).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { parse } from 'yaml';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import specs from '@asyncapi/specs';
import { configSchema } from '../src/config';
import { packageRoot } from '../src/paths';
import { CONTRACTS, violation, type SchemaName } from './helpers/contracts';
import { hostileCorpus } from './helpers/hostile-corpus';
import { generateHistory } from './helpers/event-history';
import { encodeEnvelope } from '../src/codec/envelope';
import { decideCredit, decideRefund, decideTransfer, transferStepId, DESTINATION_REASONS, type TransferEvent } from '../src/domain/transfer';
import { creditStepJson, decodeStep, refundStepJson } from '../src/codec/transfer-step';

const doc = parse(fs.readFileSync(path.join(CONTRACTS, 'asyncapi.yaml'), 'utf8')) as {
  channels: Record<string, { address: string; messages: Record<string, { $ref: string }> }>;
  components: { messages: Record<string, { payload?: { schema: { $ref: string } }; headers?: { schema: { $ref: string } } }> };
};

test('contracts/asyncapi.yaml is a valid AsyncAPI 3.0.0 document', () => {
  const schema = JSON.parse(JSON.stringify(specs.schemas['3.0.0'])) as { definitions: Record<string, { $id?: string }> };
  // the specs bundle carries its own copy of the draft-07 meta-schema, which Ajv already has
  for (const [k, v] of Object.entries(schema.definitions)) if (v.$id === 'http://json-schema.org/draft-07/schema') delete schema.definitions[k];
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  assert.ok(validate(doc), JSON.stringify(validate.errors?.slice(0, 5), null, 1));
});

test('its channels are every topic of the daemon, by default name, and every schema it names exists', () => {
  const topics = configSchema.kafka.topics;
  const want = Object.values(topics).map((t) => t.default).sort();
  assert.is(want.length, 7);
  assert.equal(Object.values(doc.channels).map((c) => c.address).sort(), want);
  const refs = Object.values(doc.components.messages).flatMap((m) => [m.payload?.schema.$ref, m.headers?.schema.$ref]).filter((r): r is string => r !== undefined);
  assert.is(refs.length, 7);
  for (const r of refs) assert.ok(fs.existsSync(path.join(CONTRACTS, r)), `${r} exists`);
});

test('the events the decider and the encoder make satisfy event.json', () => {
  const h = generateHistory({ accounts: 50, commands: 3000, seed: 5 });
  const types = new Set(h.map((e) => e.envelope.type));
  assert.equal([...types].sort(), ['AccountClosed', 'AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn']);
  const bad = h.map((e) => violation('event', JSON.parse(e.json))).filter(Boolean);
  assert.equal(bad.slice(0, 3), []);
  assert.ok(violation('event', { ...JSON.parse(h[0].json), version: 0 }), 'the schema can fail');
});

test('envelopes written before the schema version existed (version 1) satisfy event.json', () => {
  const lines = fs.readFileSync(path.join(packageRoot(), 'test', 'fixtures', 'events-v1.ndjson'), 'utf8').split('\n').filter(Boolean);
  assert.equal(lines.map((l) => violation('event', JSON.parse(l))).filter(Boolean).slice(0, 3), []);
});

test('the events of the transfer deciders satisfy event.json, and need schemaVersion 2', () => {
  const A = randomUUID(), B = randomUUID();
  const open = (accountId: string, balance: number) => ({ accountId, version: 1, balance, currency: 'EUR', status: 'open' as const, ownerName: '' });
  const debit = decideTransfer(open(A, 1000), { type: 'Transfer', commandId: randomUUID(), accountId: A, toAccountId: B, amount: '2.50' });
  if (!debit.accepted) throw new Error(debit.rejected);
  const d = debit.event.data;
  const credit = decideCredit(open(B, 0), { type: 'CreditTransfer', commandId: transferStepId(A, d.transferId, 'credit'), transferId: d.transferId, accountId: B, fromAccountId: A, amount: d.amount, currency: d.currency });
  if (!credit.accepted) throw new Error(credit.rejected);
  const refund = decideRefund(debit.state, { type: 'RefundTransfer', commandId: transferStepId(A, d.transferId, 'refund'), transferId: d.transferId, accountId: A, toAccountId: B, amount: d.amount, currency: d.currency, reason: 'CURRENCY_MISMATCH' });
  const envelope = (e: TransferEvent) => JSON.parse(encodeEnvelope({ eventId: randomUUID(), accountId: e.accountId, version: e.version, type: e.type, data: e.data as unknown as Record<string, unknown>, commandId: e.commandId, recordedAt: new Date().toISOString() })) as Record<string, unknown>;
  for (const e of [debit.event, credit.event, refund.event]) {
    assert.is(violation('event', envelope(e)), null, e.type);
    const { schemaVersion: _, ...v1 } = envelope(e);
    assert.ok(violation('event', v1), `${e.type} without schemaVersion`);
  }
});

/** Where the command schema and banking-es part ways on the hostile corpus, and why. */
const LISTED_DIFFERENCES: Record<string, string> = {
  'huge JSON (over limits.maxMessageBytes)': 'the size limit is configuration (limits.maxMessageBytes), not part of the message\'s shape',
  'key does not match accountId': 'the Kafka key is not in the JSON value; the AsyncAPI key binding says it is the accountId',
  '3 decimals for USD': 'an amount\'s fraction digits depend on the account\'s currency, which only the decider knows',
  'unknown currency': 'the schema checks the form of a currency code (three upper-case letters), not ISO 4217 membership',
};

test('the command schema refuses the hostile corpus wherever banking-es does, but for the listed differences', () => {
  const items = hostileCorpus(randomUUID(), randomUUID());
  const differ: string[] = [];
  for (const h of items) {
    let parsed: unknown;
    let schemaSays: 'valid' | 'invalid';
    try {
      parsed = h.value === null ? undefined : JSON.parse(Buffer.isBuffer(h.value) ? h.value.toString('utf8') : h.value);
      schemaSays = parsed === undefined || violation('command', parsed) ? 'invalid' : 'valid';
    } catch {
      schemaSays = 'invalid'; // not JSON: no schema accepts it
    }
    const daemonSays = 'accepted' in h.expect ? 'valid' : 'invalid';
    if (schemaSays !== daemonSays) differ.push(h.name);
  }
  assert.ok(items.length > 30);
  assert.equal(differ.sort(), Object.keys(LISTED_DIFFERENCES).sort(), 'a new difference must be fixed in the schema or listed with its reason');
});

/** The ```json blocks of one section of docs/message-contracts.md, one value per line. */
function examples(section: string): unknown[] {
  const md = fs.readFileSync(path.join(packageRoot(), 'docs', 'message-contracts.md'), 'utf8');
  const part = md.split(/^## /m).find((s) => s.startsWith(section));
  assert.ok(part, `a "## ${section}" section`);
  const blocks = [...part!.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length > 0, `${section} has an example`);
  // an example may span lines; each value starts at a line beginning with {
  return blocks.flatMap((b) => b.split(/\n(?=\{)/).map((t) => JSON.parse(t) as unknown));
}

test('docs/message-contracts.md: its examples validate, and its lists are the schemas\' enums', () => {
  const sections: Array<[string, SchemaName]> = [['Command', 'command'], ['Outcome', 'outcome'], ['Event', 'event'], ['Transfer steps', 'transfer-step']];
  for (const [section, schema] of sections) for (const e of examples(section)) assert.is(violation(schema, e), null, `${section} example ${JSON.stringify(e)}`);
  const md = fs.readFileSync(path.join(packageRoot(), 'docs', 'message-contracts.md'), 'utf8');
  const outcome = JSON.parse(fs.readFileSync(path.join(CONTRACTS, 'schemas', 'outcome.json'), 'utf8')) as { properties: { reason: { enum: string[] } } };
  const reasons = /^Reasons: ([\s\S]*?)\.$/m.exec(md)?.[1].match(/`([A-Z_]+)`/g)?.map((r) => r.slice(1, -1)) ?? [];
  assert.equal(reasons.sort(), [...outcome.properties.reason.enum].sort(), 'the documented reasons');
  const command = JSON.parse(fs.readFileSync(path.join(CONTRACTS, 'schemas', 'command.json'), 'utf8')) as { properties: Record<string, unknown>; allOf: Array<{ then: { properties: Record<string, unknown> } }> };
  const fields = [...Object.keys(command.properties), ...command.allOf.flatMap((a) => Object.keys(a.then.properties))];
  for (const field of fields) assert.match(md, new RegExp(`^\\| ${field} \\|`, 'm'), `the command table documents ${field}`);
  assert.match(md, /contracts\/asyncapi\.yaml/, 'the page points at the machine-readable contract');
});

test('the steps banking-es writes on bank.transfers satisfy transfer-step.json; these malformed steps are refused by both the schema and the reader', () => {
  const A = randomUUID(), B = randomUUID(), T = randomUUID();
  const credit = JSON.parse(creditStepJson({ type: 'CreditTransfer', commandId: transferStepId(A, T, 'credit'), transferId: T, accountId: B, fromAccountId: A, amount: '2.50', currency: 'EUR', sourceVersion: 7, sourceBalance: '10.5' })) as Record<string, unknown>;
  assert.is(violation('transfer-step', credit), null);
  const refundOf = (reason: (typeof DESTINATION_REASONS)[number]) => JSON.parse(refundStepJson({ type: 'RefundTransfer', commandId: transferStepId(A, T, 'refund'), transferId: T, accountId: A, toAccountId: B, amount: '2.50', currency: 'EUR', reason })) as Record<string, unknown>;
  for (const reason of DESTINATION_REASONS) assert.is(violation('transfer-step', refundOf(reason)), null, reason);
  const schema = JSON.parse(fs.readFileSync(path.join(CONTRACTS, 'schemas', 'transfer-step.json'), 'utf8')) as { allOf: Array<{ then: { properties: { reason?: { enum: string[] } } } }> };
  assert.equal(schema.allOf[1].then.properties.reason?.enum, [...DESTINATION_REASONS], 'the reasons are the decider\'s');
  const bad: Array<[string, Record<string, unknown>]> = [
    ['another type', { ...credit, type: 'Transfer' }],
    ['no sourceVersion', { ...credit, sourceVersion: undefined }],
    ['a sourceVersion below 2', { ...credit, sourceVersion: 1 }],
    ['a zero amount', { ...credit, amount: '0.00' }],
    ['a signed amount', { ...credit, amount: '-1.00' }],
    ['a lower-case currency', { ...credit, currency: 'eur' }],
    ['a transferId that is no UUID', { ...credit, transferId: 'x' }],
    ['a sourceBalance with five fraction digits', { ...credit, sourceBalance: '10.50000' }],
    ['a refund reason from the source', { ...refundOf('DESTINATION_CLOSED'), reason: 'INSUFFICIENT_FUNDS' }],
  ];
  assert.is(decodeStep(Buffer.from(A), Buffer.from(JSON.stringify(refundOf('DESTINATION_CLOSED')))).kind, 'ok', 'the refund the last case changes is well-formed');
  for (const e of examples('Transfer steps') as Array<{ accountId: string }>) {
    assert.is(decodeStep(Buffer.from(e.accountId), Buffer.from(JSON.stringify(e))).kind, 'ok', `the page's example is a step the reader takes: ${JSON.stringify(e)}`);
  }
  for (const [what, v] of bad) {
    const value = JSON.parse(JSON.stringify(v)) as Record<string, unknown>;
    assert.ok(violation('transfer-step', value), `the schema refuses ${what}`);
    assert.is(decodeStep(Buffer.from(String(value.accountId)), Buffer.from(JSON.stringify(value))).kind, 'dlq', `the reader refuses ${what}`);
  }
});

test.run();
