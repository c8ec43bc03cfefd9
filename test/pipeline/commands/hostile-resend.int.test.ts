/**
 * One bad message must never stop the ledger (docs/architecture.md §4), tried the way a
 * hostile or buggy producer does it: every hostile shape is sent twice and
 * three times (a producer retry), interleaved with valid commands on the same
 * accounts and partitions, then again after a restart. Valid commands keep
 * getting exactly one outcome and one effect; every hostile copy reaches the
 * DLQ exactly once (or, where it is a readable command, its answer); the
 * pipeline is never stalled and stays ready.
 *
 * The four shapes that once halted every partition for good (ids that broke a
 * Postgres array literal assembled from strings) are here, and so are
 * messages the decoder accepts but Postgres refuses at COPY (a NUL in a text
 * field): those are isolated by splitting the batch and dead-lettered as
 * POISON with their SQLSTATE, while the rest of their batch commits.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture, type Cmd } from '../../helpers/pipeline';
import type { Delivered } from '../../helpers/kafka';

const MAX = 65536;
let f: PipelineFixture | undefined;

let failed = true;

test.after(async () => {
  if (failed) console.log(f?.daemon?.logs().filter((l) => (l.level ?? 0) >= 40).map((l) => JSON.stringify(l).slice(0, 600)).slice(-30).join('\n'));
  await f?.release();
});

interface Hostile { name: string; key: string | Buffer | null; value: string | Buffer; dlq: string }

/** Each shape with the error.code its dead letter must carry. Fresh commandIds per call, so a round is not a re-send of the last. */
function shapes(a: string): Hostile[] {
  const id = () => randomUUID();
  const fresh = randomUUID();
  const deposit = (commandId: string, accountId: string) => `{"commandId":"${commandId}","type":"Deposit","accountId":"${accountId}","amount":"1.00"}`;
  return [
    { name: 'key and accountId not-a-uuid', key: 'not-a-uuid', value: deposit(id(), 'not-a-uuid'), dlq: 'NO_ACCOUNT_ID' },
    { name: 'commandId of z', key: a, value: deposit('zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz', a), dlq: 'NO_COMMAND_ID' },
    { name: 'commandId with a comma', key: a, value: deposit('aaaaaaaa,bbbb-cccc-dddd-eeeeeeeeeeee', a), dlq: 'NO_COMMAND_ID' },
    { name: 'key a}b"c', key: 'a}b"c', value: deposit(id(), a), dlq: 'KEY_MISMATCH' },
    { name: 'key with a backslash and non-ASCII bytes', key: Buffer.from([0x5c, 0xc3, 0xa9, 0x2c, 0x7d, 0xff]), value: deposit(id(), a), dlq: 'KEY_MISMATCH' },
    { name: 'commandId with a quote, no key', key: null, value: `{"commandId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeee\\"e","type":"Deposit","accountId":"${a}","amount":"1.00"}`, dlq: 'NO_COMMAND_ID' },
    { name: 'accountId with a brace, no key', key: null, value: deposit(id(), `${a.slice(0, 35)}}`), dlq: 'NO_ACCOUNT_ID' },
    { name: 'huge value', key: a, value: `{"commandId":"${id()}","type":"Deposit","accountId":"${a}","amount":"1.00","pad":"${'x'.repeat(MAX)}"}`, dlq: 'TOO_LARGE' },
    // readable, but Postgres refuses the bytes at COPY: isolated by splitting the batch
    { name: 'NUL in an unknown type (rejection row)', key: a, value: `{"commandId":"${id()}","type":"Dep\\u0000osit","accountId":"${a}","amount":"1.00"}`, dlq: 'POISON' },
    { name: 'NUL in ownerName (event payload)', key: fresh, value: `{"commandId":"${id()}","type":"OpenAccount","accountId":"${fresh}","ownerName":"a\\u0000b"}`, dlq: 'POISON' },
  ];
}

/** `copies` copies of every shape, each after a valid deposit on every account (all four partitions get both). */
function round(accounts: string[], copies: number): { items: Array<Cmd | Hostile>; valid: Cmd[]; hostile: Hostile[] } {
  const items: Array<Cmd | Hostile> = [];
  const valid: Cmd[] = [];
  const hostile: Hostile[] = [];
  for (let c = 0; c < copies; c++) {
    const batch = shapes(accounts[0]);
    for (const h of batch) {
      for (const acct of accounts) {
        const d = cmd.deposit(acct, '0.01');
        items.push(d);
        valid.push(d);
      }
      // a producer retry: the very same bytes again, right away
      for (let k = 0; k <= c; k++) { items.push(h); hostile.push(h); }
    }
  }
  // the key differs from accountId only in case: a valid command, accepted
  const upper = { ...cmd.deposit(accounts[1], '0.01') };
  items.push({ name: 'key in upper case', key: accounts[1].toUpperCase(), value: JSON.stringify(upper), dlq: '' });
  valid.push(upper);
  return { items, valid, hostile };
}

async function sendRound(fx: PipelineFixture, items: Array<Cmd | Hostile>): Promise<Map<Hostile, Delivered[]>> {
  const placed = new Map<Hostile, Delivered[]>();
  const sends = items.map((it) => ('commandId' in it ? fx.send(it as Cmd) : fx.send({ key: it.key, value: it.value })));
  const delivered = await Promise.all(sends);
  items.forEach((it, i) => {
    if ('commandId' in it) return;
    const h = it as Hostile;
    if (!h.dlq) return;
    placed.set(h, [...(placed.get(h) ?? []), delivered[i]]);
  });
  return placed;
}

async function checkRound(fx: PipelineFixture, label: string, r: ReturnType<typeof round>, placed: Map<Hostile, Delivered[]>, dlqBefore: number): Promise<number> {
  const outs = await fx.outcomeFor(r.valid, 60000);
  const bad = outs.map((o, i) => (o.status === 'accepted' ? '' : `${r.valid[i].commandId}: ${JSON.stringify(o)}`)).filter(Boolean);
  assert.equal(bad, [], `${label}: every valid command is accepted`);
  const extra = r.valid.filter((c) => fx.outcomesOf(c.commandId).length !== 1).map((c) => `${c.commandId}: ${fx.outcomesOf(c.commandId).length} outcomes`);
  assert.equal(extra, [], `${label}: exactly one outcome per valid command`);
  const want = [...placed.values()].reduce((s, d) => s + d.length, 0);
  await fx.dlq.waitFor((m) => m.length >= dlqBefore + want, 60000, `${want} dead letters`);
  const problems: string[] = [];
  for (const [h, places] of placed) {
    for (const at of places) {
      const letters = fx.dlqMessages().filter((x) => x.headers['source.offset'] === String(at.offset) && x.headers['source.partition'] === String(at.partition));
      if (letters.length !== 1) { problems.push(`${h.name} at ${at.partition}:${at.offset}: ${letters.length} dead letters`); continue; }
      const m = letters[0];
      if (m.headers['error.code'] !== h.dlq) problems.push(`${h.name}: error.code ${m.headers['error.code']}, want ${h.dlq}`);
      if (m.headers['error.class'] !== 'poison') problems.push(`${h.name}: error.class ${m.headers['error.class']}`);
      if (h.dlq === 'POISON' && !/^22/.test(m.headers['error.sqlstate'] ?? '')) problems.push(`${h.name}: error.sqlstate ${m.headers['error.sqlstate']}, want a data exception (22xxx)`);
      const wantValue = Buffer.isBuffer(h.value) ? h.value : Buffer.from(h.value);
      if (!m.raw?.equals(wantValue)) problems.push(`${h.name}: value not preserved`);
    }
  }
  assert.equal(problems, [], `${label}: every hostile copy is dead-lettered once, as itself`);
  assert.is(fx.dlqMessages().length, dlqBefore + want, `${label}: nothing else is dead-lettered`);
  const d = fx.daemon!;
  const ready = await d.get('/readyz');
  assert.is(ready.status, 200, `${label}: ready: ${ready.body}`);
  const stalled = (await d.get('/metrics')).body.split('\n').find((l) => l.startsWith('banking_es_pipeline_stalled{pipeline="commands"}'));
  assert.is(stalled, 'banking_es_pipeline_stalled{pipeline="commands"} 0', `${label}: not stalled`);
  console.log(`${label}: ${r.valid.length} valid commands accepted, ${want} hostile copies dead-lettered once each`);
  return want;
}

test('hostile messages sent twice and three times, interleaved with valid traffic and across a restart, never stop the pipeline', async () => {
  f = await PipelineFixture.create('resend', { LIMITS_MAX_MESSAGE_BYTES: String(MAX) });
  const fx = f;
  await fx.start();
  // eight accounts: the valid traffic covers every partition the hostile keys land on
  const accounts = Array.from({ length: 8 }, () => randomUUID());
  const opens = accounts.map((a) => cmd.open(a, '10.00'));
  await fx.sendAll(opens);
  await fx.outcomeFor(opens, 30000);

  let dlq = 0;
  const r1 = round(accounts, 2);
  dlq += await checkRound(fx, 'round 1 (each shape once and twice)', r1, await sendRound(fx, r1.items), dlq);
  const r2 = round(accounts, 3);
  dlq += await checkRound(fx, 'round 2 (once, twice, three times)', r2, await sendRound(fx, r2.items), dlq);

  await fx.restart();
  const r3 = round(accounts, 3);
  dlq += await checkRound(fx, 'after a restart', r3, await sendRound(fx, r3.items), dlq);

  // sent while the daemon is down, read on start: the first batch after a restart holds them all
  await fx.stop();
  const r4 = round(accounts, 2);
  const placed4 = await sendRound(fx, r4.items);
  await fx.start();
  await checkRound(fx, 'sent while stopped', r4, placed4, dlq);

  // every valid deposit is one event: 1 open + N deposits per account, balances exact
  const deposits = new Map<string, number>();
  for (const c of [...r1.valid, ...r2.valid, ...r3.valid, ...r4.valid]) deposits.set(c.accountId, (deposits.get(c.accountId) ?? 0) + 1);
  for (const a of accounts) {
    const ev = await fx.events(a);
    assert.is(ev.length, 1 + (deposits.get(a) ?? 0), `${a}: one event per valid command`);
    assert.is(ev[ev.length - 1].payload.data.balanceAfter, String(1000 + (deposits.get(a) ?? 0)), `${a}: balance`);
  }
  const errors = fx.daemon!.logs().filter((l) => (l.level ?? 0) >= 50 && l.msg !== 'poison message isolated: its content fails the commit; dead-lettered, the partition goes on');
  assert.equal(errors, [], 'no error-level log lines but the poison reports');
  failed = false;
});

test('a message at the broker\'s size limit, sent twice: dead-lettered without its value (it no longer fits with the headers), the partition goes on', async () => {
  failed = true;
  const fx = f!;
  const a = randomUUID();
  const open = cmd.open(a, '1.00');
  await fx.send(open);
  await fx.outcomeFor([open], 30000);
  const dlqBefore = fx.dlqMessages().length;
  const big = `{"commandId":"${randomUUID()}","type":"Deposit","accountId":"${a}","amount":"1.00","pad":"${'x'.repeat(999_780)}"}`;
  const copies = [await fx.send({ key: a, value: big }), await fx.send({ key: a, value: big })];
  const after = cmd.deposit(a, '2.00');
  await fx.send(after);
  const [o] = await fx.outcomeFor([after], 60000);
  assert.equal([o.status, o.balance], ['accepted', '3.00']);
  await fx.dlq.waitFor((m) => m.length >= dlqBefore + 2, 30000, 'two dead letters');
  for (const at of copies) {
    const letters = fx.dlqMessages().filter((x) => x.headers['source.offset'] === String(at.offset) && x.headers['source.partition'] === String(at.partition));
    assert.is(letters.length, 1);
    assert.is(letters[0].headers['error.code'], 'TOO_LARGE');
    assert.is(letters[0].headers['error.value.bytes'], String(Buffer.byteLength(big)));
    assert.ok(letters[0].raw === null || letters[0].raw.length === 0, 'the value is dropped, the original stays at its source offset');
  }
  assert.is((await fx.daemon!.get('/readyz')).status, 200);
  await fx.stop();
  failed = false;
});

test.run();
