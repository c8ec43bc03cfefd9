/**
 * Exactly-once effects across a crash (docs/architecture.md §4): a deterministic stream of
 * ~20k commands over 200 accounts, modelled locally with the domain rules,
 * while the daemon is SIGKILLed mid-stream and started again (and killed once
 * more while it works through the backlog). Afterwards every
 * command has an outcome that agrees with the model, and Postgres holds each
 * accepted command exactly once, contiguous versions, and the model's balance.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PipelineFixture, type Cmd, type Outcome } from '../../helpers/pipeline';
import { prng } from '../../../dev/loadgen/generator';

const ACCOUNTS = 200;
const COMMANDS = 20000;
const KILL_AFTER_OUTCOMES = 5000;
const SECOND_KILL_AFTER = 4000;
const CHUNK = 250;
const CHUNK_PAUSE_MS = 40;

const rng = prng;

function uuidFrom(next: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(next() * 4)];
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

const cents = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;

type Expected = { status: 'accepted'; version: number; balance: string } | { status: 'rejected'; reason: string };
interface Planned { cmd: Cmd; expected: Expected; resend: boolean }

/** The stream and what the domain must make of it: overdrafts rejected, re-sent commands answered with their first outcome. */
function generate(seed: number) {
  const next = rng(seed);
  const accounts = Array.from({ length: ACCOUNTS }, () => ({ id: uuidFrom(next), opened: false, version: 0, balance: 0, sent: [] as Planned[] }));
  const plan: Planned[] = [];
  while (plan.length < COMMANDS) {
    const a = accounts[Math.floor(next() * ACCOUNTS)];
    const commandId = uuidFrom(next);
    let p: Planned;
    if (!a.opened) {
      const initial = Math.floor(next() * 10000);
      a.opened = true; a.version = 1; a.balance = initial;
      p = { cmd: { commandId, type: 'OpenAccount', accountId: a.id, ownerName: `owner ${a.id.slice(0, 8)}`, currency: 'USD', initialBalance: cents(initial) }, expected: { status: 'accepted', version: 1, balance: cents(initial) }, resend: false };
    } else {
      const r = next();
      if (r < 0.03 && a.sent.length > 0) {
        const orig = a.sent[Math.floor(next() * a.sent.length)];
        p = { cmd: orig.cmd, expected: orig.expected, resend: true };
      } else if (r < 0.58) {
        const amount = 1 + Math.floor(next() * 5000);
        a.balance += amount; a.version++;
        p = { cmd: { commandId, type: 'Deposit', accountId: a.id, amount: cents(amount) }, expected: { status: 'accepted', version: a.version, balance: cents(a.balance) }, resend: false };
      } else {
        const amount = 1 + Math.floor(next() * 8000);
        let expected: Expected;
        if (amount > a.balance) expected = { status: 'rejected', reason: 'INSUFFICIENT_FUNDS' };
        else { a.balance -= amount; a.version++; expected = { status: 'accepted', version: a.version, balance: cents(a.balance) }; }
        p = { cmd: { commandId, type: 'Withdraw', accountId: a.id, amount: cents(amount) }, expected, resend: false };
      }
    }
    if (!p.resend) a.sent.push(p);
    plan.push(p);
  }
  return { plan, accounts };
}

let f: PipelineFixture | undefined;

test.after(async () => {
  await f?.release();
});

test('exactly-once effects when the daemon is SIGKILLed mid-stream, then again mid-backlog', async () => {
  f = await PipelineFixture.create('crash');
  const fx = f;
  const { plan, accounts } = generate(20240611);
  const originals = plan.filter((p) => !p.resend);
  const byId = new Map(originals.map((p) => [p.cmd.commandId, p]));
  await fx.start();

  let killedAt = -1;
  let sentWhenKilled = -1;
  let sent = 0;
  const produce = (async () => {
    for (let i = 0; i < plan.length; i += CHUNK) {
      await fx.sendAll(plan.slice(i, i + CHUNK).map((p) => p.cmd));
      sent = Math.min(plan.length, i + CHUNK);
      await new Promise((r) => setTimeout(r, CHUNK_PAUSE_MS));
    }
  })();
  const crash = (async () => {
    await fx.outcomes.waitFor((m) => m.length >= KILL_AFTER_OUTCOMES, 60000, `${KILL_AFTER_OUTCOMES} outcomes before the crash`);
    killedAt = fx.outcomes.messages.length;
    sentWhenKilled = sent;
    await fx.daemon!.kill();
  })();
  await Promise.all([produce, crash]);
  assert.ok(sentWhenKilled < plan.length, `the crash came after the whole stream was sent (${sentWhenKilled}); lower KILL_AFTER_OUTCOMES`);
  const { rows: [before] } = await fx.pg.query('SELECT count(*)::int AS n FROM events');
  console.log(`killed after ${killedAt} outcomes read, ${sentWhenKilled}/${plan.length} sent, ${before.n} events stored`);

  // again, while the restarted daemon works through the backlog that piled up meanwhile
  await fx.start({}, 45000);
  const second = fx.outcomes.messages.length + SECOND_KILL_AFTER;
  await fx.outcomes.waitFor((m) => m.length >= second, 60000, `${SECOND_KILL_AFTER} more outcomes before the second crash`);
  await fx.daemon!.kill();
  const { rows: [between] } = await fx.pg.query('SELECT count(*)::int AS n FROM events');
  console.log(`killed again after ${fx.outcomes.messages.length} outcomes read, ${between.n} events stored`);
  await fx.start({}, 45000);
  const ids = new Set(originals.map((p) => p.cmd.commandId));
  const have = new Set<string>();
  let scanned = 0;
  await fx.outcomes.waitFor((msgs) => {
    for (; scanned < msgs.length; scanned++) { const id = msgs[scanned].value?.commandId; if (id) have.add(id); }
    return have.size >= ids.size;
  }, 90000, 'an outcome for every command');
  await new Promise((r) => setTimeout(r, 500)); // let trailing duplicates of the re-sends land

  // outcomes: each agrees with the model (a duplicate carries the original outcome)
  const per = new Map<string, Outcome[]>();
  for (const m of fx.outcomes.messages) {
    const o = m.value;
    assert.ok(byId.has(o.commandId), `outcome for an unknown command ${JSON.stringify(o)}`);
    const list = per.get(o.commandId) ?? [];
    list.push(o);
    per.set(o.commandId, list);
  }
  let duplicates = 0;
  let republished = 0;
  const resends = new Map<string, number>();
  for (const p of plan) if (p.resend) resends.set(p.cmd.commandId, (resends.get(p.cmd.commandId) ?? 0) + 1);
  for (const p of originals) {
    const os = per.get(p.cmd.commandId) ?? [];
    assert.ok(os.length >= 1, `no outcome for ${p.cmd.commandId}`);
    republished += Math.max(0, os.length - 1 - (resends.get(p.cmd.commandId) ?? 0));
    for (const o of os) {
      const status = o.status === 'duplicate' ? o.originalStatus : o.status;
      if (o.status === 'duplicate') duplicates++;
      const got = status === 'accepted' ? { status, version: o.version, balance: o.balance } : { status, reason: o.reason };
      assert.equal(got, p.expected, `${p.cmd.type} ${p.cmd.commandId} on ${p.cmd.accountId}: ${JSON.stringify(o)}`);
      assert.is(o.accountId, p.cmd.accountId);
      assert.is(o.type, p.cmd.type);
    }
    // the first outcome of a command that was never re-sent is its own decision, not a duplicate
    if (!resends.has(p.cmd.commandId)) assert.not.equal(os[0].status, 'duplicate', `first outcome of ${p.cmd.commandId} is a duplicate`);
  }
  console.log(`${fx.outcomes.messages.length} outcomes for ${plan.length} commands: ${duplicates} duplicates (${plan.length - originals.length} re-sends), ${republished} re-published after the crash`);

  // Postgres: each accepted command exactly once, contiguous versions, the model's balance
  const accepted = originals.filter((p) => p.expected.status === 'accepted');
  const { rows: dupRows } = await fx.pg.query('SELECT command_id::text AS id, count(*)::int AS n FROM events GROUP BY command_id HAVING count(*) > 1');
  assert.equal(dupRows, [], 'no command applied twice');
  const { rows: evIds } = await fx.pg.query<{ id: string }>('SELECT command_id::text AS id FROM events');
  assert.is(evIds.length, accepted.length, 'one event per accepted command');
  const evSet = new Set(evIds.map((r) => r.id));
  for (const p of accepted) assert.ok(evSet.has(p.cmd.commandId), `accepted ${p.cmd.commandId} has no event`);
  const { rows: rejIds } = await fx.pg.query<{ id: string; reason: string }>('SELECT command_id::text AS id, reason FROM command_rejections');
  assert.is(rejIds.length, originals.length - accepted.length, 'one rejection row per rejected command');
  for (const r of rejIds) assert.equal(byId.get(r.id)?.expected, { status: 'rejected', reason: r.reason });

  const { rows: perAccount } = await fx.pg.query<{ account_id: string; n: number; min: number; max: number; balance: string }>(
    `SELECT account_id::text, count(*)::int AS n, min(version)::int AS min, max(version)::int AS max,
            (array_agg(payload->'data'->>'balanceAfter' ORDER BY version DESC))[1] AS balance
       FROM events GROUP BY account_id`);
  assert.is(perAccount.length, accounts.filter((a) => a.opened).length);
  const model = new Map(accounts.map((a) => [a.id, a]));
  for (const r of perAccount) {
    const a = model.get(r.account_id);
    assert.ok(a, `events for an unknown account ${r.account_id}`);
    assert.equal([r.min, r.max, r.n], [1, a!.version, a!.version], `versions of ${r.account_id} are 1..${a!.version} without gaps`);
    assert.is(r.balance, String(a!.balance), `balance of ${r.account_id}`);
  }
  const { rows: versionsMatchPayload } = await fx.pg.query('SELECT count(*)::int AS n FROM events WHERE (payload->>\'version\')::bigint <> version OR (payload->>\'commandId\')::uuid <> command_id');
  assert.is(versionsMatchPayload[0].n, 0, 'the stored envelope agrees with its row');
  await fx.stop();
});

test.run();
