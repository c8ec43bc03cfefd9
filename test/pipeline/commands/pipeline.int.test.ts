/**
 * The command pipeline end to end (docs/architecture.md §2, §4): `banking-es start` with
 * the commands role as a child process, commands produced to its own topics,
 * outcomes and dead letters read back from Kafka, effects checked in its own
 * Postgres database. One daemon for the file, restarted where a test needs
 * it; every test uses its own accounts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture, type Cmd, type Outcome } from '../../helpers/pipeline';
import { violations } from '../../helpers/contracts';
import type { Delivered } from '../../helpers/kafka';
import { promtoolCheck } from '../../helpers/promtool';
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import { cliPath, waitForExit } from '../../helpers/stack';

/** `banking-es send …` against the fixture's topics, `stdin` fed to it; its exit code and stdout lines as JSON. */
function sendCli(args: string[], stdin = ''): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath(), 'send', ...args], { env: { ...process.env, NODE_ENV: 'test', ...f.env, LOG_LEVEL: 'warn' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`send did not exit:\n${out}${err}`)); }, 60000);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stderr: err, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) });
    });
    child.stdin.end(stdin);
  });
}

const WAIT_MS = 45000;
let f: PipelineFixture;

test.before(async () => {
  f = await PipelineFixture.create('pipeline', { LIMITS_MAX_MESSAGE_BYTES: '2048' });
  await f.start();
});

test.after(async () => {
  await f?.release();
});

const pick = (o: Outcome) => ({ status: o.status, reason: o.reason, version: o.version, balance: o.balance, originalStatus: o.originalStatus });

test('per-account order: 50 withdrawals of 7.00 in one burst after opening with 100.00', async () => {
  const a = randomUUID();
  const open = cmd.open(a, '100.00');
  const ws = Array.from({ length: 50 }, () => cmd.withdraw(a, '7.00'));
  await f.sendAll([open, ...ws]);
  const [o0, ...os] = await f.outcomeFor([open, ...ws], WAIT_MS);
  assert.equal(pick(o0), { status: 'accepted', reason: undefined, version: 1, balance: '100.00', originalStatus: undefined });
  const accepted = os.filter((o) => o.status === 'accepted');
  const rejected = os.filter((o) => o.status === 'rejected');
  assert.is(accepted.length, 14, `accepted: ${accepted.length}`);
  assert.is(rejected.length, 36);
  // decided in offset order: the first 14 pass, then every one is short of funds
  os.forEach((o, i) => {
    if (i < 14) assert.equal(pick(o), { status: 'accepted', reason: undefined, version: i + 2, balance: (100 - 7 * (i + 1)).toFixed(2), originalStatus: undefined }, `withdrawal ${i}`);
    else assert.equal([o.status, o.reason], ['rejected', 'INSUFFICIENT_FUNDS'], `withdrawal ${i}`);
  });
  assert.is(accepted[accepted.length - 1].balance, '2.00');
  assert.match(rejected[0].detail ?? '', /2\.00/);
  // outcomes of one account are published in command order
  const order = f.outcomes.messages.filter((m) => m.value?.accountId === a).map((m) => m.value.commandId);
  assert.equal(order, [open, ...ws].map((c) => c.commandId));
  const evs = await f.events(a);
  assert.equal(evs.map((e) => e.version), Array.from({ length: 15 }, (_, i) => i + 1));
  assert.equal(evs.map((e) => e.command_id), [open, ...ws.slice(0, 14)].map((c) => c.commandId));
  assert.equal(evs.map((e) => e.event_type), ['AccountCreated', ...Array(14).fill('MoneyWithdrawn')]);
  assert.is(evs[14].payload.data.balanceAfter, '200');
  const { rows } = await f.pg.query("SELECT count(*)::int AS n FROM command_rejections WHERE account_id = $1 AND reason = 'INSUFFICIENT_FUNDS'", [a]);
  assert.is(rows[0].n, 36);
});

test('fractional amounts are exact; JPY has no minor unit', async () => {
  const u = randomUUID();
  const usd = [cmd.open(u, '0'), cmd.deposit(u, '0.01'), cmd.deposit(u, '1000.10'), cmd.deposit(u, '0.29'), cmd.withdraw(u, '0.39'), cmd.deposit(u, '1.001'), cmd.deposit(u, '1e3')];
  const j = randomUUID();
  const jpy = [cmd.open(j, '1000', { currency: 'JPY' }), cmd.deposit(j, '1.5'), cmd.deposit(j, '5'), cmd.withdraw(j, '0.5')];
  await f.sendAll([...usd, ...jpy]);
  const ou = await f.outcomeFor(usd, WAIT_MS);
  assert.equal(ou.slice(0, 5).map((o) => [o.status, o.version, o.balance]), [
    ['accepted', 1, '0.00'], ['accepted', 2, '0.01'], ['accepted', 3, '1000.11'], ['accepted', 4, '1000.40'], ['accepted', 5, '1000.01'],
  ]);
  assert.equal(ou.slice(5).map((o) => [o.status, o.reason]), [['rejected', 'INVALID_COMMAND'], ['rejected', 'INVALID_COMMAND']]);
  const ev = await f.events(u);
  assert.equal(ev.map((e) => e.payload.data.balanceAfter), ['0', '1', '100011', '100040', '100001']);
  assert.equal(ev.map((e) => e.payload.data.amount ?? e.payload.data.initialBalance), ['0.00', '0.01', '1000.10', '0.29', '0.39']);

  const oj = await f.outcomeFor(jpy, WAIT_MS);
  assert.equal(pick(oj[0]), { status: 'accepted', reason: undefined, version: 1, balance: '1000', originalStatus: undefined });
  assert.equal([oj[1].status, oj[1].reason], ['rejected', 'INVALID_COMMAND']);
  assert.match(oj[1].detail ?? '', /JPY/);
  assert.equal(pick(oj[2]), { status: 'accepted', reason: undefined, version: 2, balance: '1005', originalStatus: undefined });
  assert.equal([oj[3].status, oj[3].reason], ['rejected', 'INVALID_COMMAND']);
  assert.equal((await f.events(j)).map((e) => e.payload.data.balanceAfter), ['1000', '1005']);
});

test('duplicates get the original outcome and no second effect, also after a restart', async () => {
  const d = randomUUID();
  const open = cmd.open(d, '50.00');
  const tooMuch = cmd.withdraw(d, '80.00');
  const dep = cmd.deposit(d, '10.00');
  const twice = cmd.deposit(d, '1.00');
  await f.sendAll([open, tooMuch, dep, twice, twice]); // the same command twice in one burst
  await f.outcomeFor([open, tooMuch, dep], WAIT_MS);
  await f.outcomeFor([twice], WAIT_MS, 2);
  assert.equal([f.outcomesOf(tooMuch.commandId)[0].status, f.outcomesOf(tooMuch.commandId)[0].reason], ['rejected', 'INSUFFICIENT_FUNDS']);
  assert.equal(pick(f.outcomesOf(dep.commandId)[0]), { status: 'accepted', reason: undefined, version: 2, balance: '60.00', originalStatus: undefined });
  assert.equal(f.outcomesOf(twice.commandId).map(pick), [
    { status: 'accepted', reason: undefined, version: 3, balance: '61.00', originalStatus: undefined },
    { status: 'duplicate', reason: undefined, version: 3, balance: '61.00', originalStatus: 'accepted' },
  ]);
  const later = cmd.deposit(d, '5.00');
  await f.sendAll([later]);
  await f.outcomeFor([later], WAIT_MS);

  const expectDuplicates = async (n: number) => {
    await f.sendAll([dep, tooMuch]);
    const [od, ot] = await f.outcomeFor([dep, tooMuch], WAIT_MS, n);
    // the original outcome, not the account's current version (4) or balance (66.00)
    assert.equal(pick(od), { status: 'duplicate', reason: undefined, version: 2, balance: '60.00', originalStatus: 'accepted' });
    assert.is(od.type, 'Deposit');
    assert.equal(pick(ot), { status: 'duplicate', reason: 'INSUFFICIENT_FUNDS', version: undefined, balance: undefined, originalStatus: 'rejected' });
    assert.is(ot.type, 'Withdraw');
    const evs = await f.events(d);
    assert.equal(evs.map((e) => e.command_id), [open, dep, twice, later].map((c) => c.commandId));
    const { rows } = await f.pg.query('SELECT command_id::text AS id FROM command_rejections WHERE account_id = $1', [d]);
    assert.equal(rows.map((r: { id: string }) => r.id), [tooMuch.commandId]);
  };
  await expectDuplicates(2);
  await f.restart();
  await expectDuplicates(3);
  assert.is(f.outcomesOf(dep.commandId).length, 3, 'one outcome per delivery: nothing re-published by the restart');
});

test('expectedVersion: a mismatch is VERSION_CONFLICT, a match is accepted', async () => {
  const e = randomUUID();
  const cs = [
    cmd.open(e, '10.00', { expectedVersion: 0 }),
    cmd.deposit(e, '1.00', { expectedVersion: 0 }),
    cmd.deposit(e, '1.00', { expectedVersion: 5 }),
    cmd.deposit(e, '2.00', { expectedVersion: 1 }),
    cmd.withdraw(e, '3.00', { expectedVersion: 2 }),
    cmd.withdraw(e, '3.00', { expectedVersion: 2 }),
  ];
  await f.sendAll(cs);
  const os = await f.outcomeFor(cs, WAIT_MS);
  assert.equal(os.map((o) => [o.status, o.reason ?? o.version]), [
    ['accepted', 1], ['rejected', 'VERSION_CONFLICT'], ['rejected', 'VERSION_CONFLICT'], ['accepted', 2], ['accepted', 3], ['rejected', 'VERSION_CONFLICT'],
  ]);
  assert.match(os[2].detail ?? '', /expected version 5, account is at 1/);
  assert.is(os[4].balance, '9.00');
  assert.equal((await f.events(e)).map((x) => x.version), [1, 2, 3]);
});

test('poison messages go to the DLQ with their source; bad fields get INVALID_COMMAND; the partition keeps flowing', async () => {
  const p = randomUUID();
  const open = cmd.open(p, '20.00');
  const [openAt] = await f.sendAll([open]);
  await f.outcomeFor([open], WAIT_MS);

  const deposit = (extra: Record<string, unknown>) => ({ commandId: randomUUID(), type: 'Deposit', accountId: p, amount: '1.00', ...extra });
  const poison: Array<{ code: string; key: string | null; value: Buffer | null }> = [
    { code: 'NOT_JSON', key: p, value: Buffer.from('{"commandId": not json') },
    { code: 'NOT_OBJECT', key: p, value: Buffer.from(JSON.stringify([deposit({})])) },
    { code: 'EMPTY_VALUE', key: p, value: null },
    { code: 'NOT_UTF8', key: p, value: Buffer.concat([Buffer.from('{"commandId":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]) },
    { code: 'TOO_LARGE', key: p, value: Buffer.from(JSON.stringify(deposit({ note: 'x'.repeat(3000) }))) },
    { code: 'NO_COMMAND_ID', key: p, value: Buffer.from(JSON.stringify({ ...deposit({}), commandId: undefined })) },
    { code: 'KEY_MISMATCH', key: p, value: Buffer.from(JSON.stringify(deposit({ accountId: randomUUID() }))) },
    { code: 'NO_ACCOUNT_ID', key: null, value: Buffer.from(JSON.stringify(deposit({ accountId: 'not-a-uuid' }))) },
  ];
  const invalid: Array<{ c: Cmd; detail: RegExp; type: string }> = [
    { c: deposit({ amount: 5 }) as Cmd, detail: /amount/, type: 'Deposit' },
    { c: deposit({ type: 'Teleport' }) as Cmd, detail: /type must be one of/, type: 'Teleport' },
    { c: deposit({ type: 'Transfer' }) as Cmd, detail: /toAccountId/, type: 'Transfer' },
    { c: { commandId: randomUUID(), type: 'OpenAccount', accountId: p, currency: 'USD' }, detail: /ownerName/, type: 'OpenAccount' },
    { c: deposit({ expectedVersion: -1 }) as Cmd, detail: /expectedVersion/, type: 'Deposit' },
  ];
  const noAccountField = deposit({ accountId: undefined }) as Cmd; // the key names the account
  const sent: Delivered[] = [];
  for (const [i, m] of poison.entries()) sent.push(await f.send({ key: m.key, value: m.value, headers: { 'x-test-case': m.code, 'x-index': String(i) } }));
  for (const x of invalid) await f.send(x.c);
  await f.send({ key: p, value: JSON.stringify(noAccountField) });
  const valid = cmd.deposit(p, '2.50');
  const validAt = await f.send(valid);
  assert.is(validAt.partition, openAt.partition);
  assert.ok(sent.filter((_, i) => poison[i].key !== null).every((s) => s.partition === openAt.partition));

  const [ov] = await f.outcomeFor([valid], WAIT_MS);
  assert.equal(pick(ov), { status: 'accepted', reason: undefined, version: 2, balance: '22.50', originalStatus: undefined });

  await f.dlq.waitFor((ms) => poison.every((m) => ms.some((x) => x.headers['x-test-case'] === m.code)), WAIT_MS, 'every poison message dead-lettered');
  for (const [i, m] of poison.entries()) {
    const got = f.dlqMessages().filter((x) => x.headers['x-test-case'] === m.code);
    assert.is(got.length, 1, `${m.code}: one dead letter`);
    const d = got[0];
    assert.is(d.headers['error.code'], m.code, `${m.code}: ${JSON.stringify(d.headers)}`);
    assert.ok((d.headers['error.message'] ?? '').length > 0, `${m.code}: error.message`);
    assert.is(d.headers['source.topic'], f.topics.commands);
    assert.is(d.headers['source.partition'], String(sent[i].partition), `${m.code}: source.partition`);
    assert.is(d.headers['source.offset'], String(sent[i].offset), `${m.code}: source.offset`);
    assert.is(d.headers['x-index'], String(i), `${m.code}: original headers kept`);
    assert.is(d.key, m.key, `${m.code}: original key`);
    if (m.value === null) assert.ok(d.raw === null || d.raw.length === 0, 'tombstone stays empty');
    else assert.ok(d.raw !== null && d.raw.equals(m.value), `${m.code}: original value bytes`);
  }
  assert.is(f.dlqMessages().length, poison.length, 'nothing else dead-lettered');

  const oi = await f.outcomeFor(invalid.map((x) => x.c), WAIT_MS);
  invalid.forEach((x, i) => {
    assert.equal([oi[i].status, oi[i].reason, oi[i].type], ['rejected', 'INVALID_COMMAND', x.type], JSON.stringify(oi[i]));
    assert.match(oi[i].detail ?? '', x.detail);
  });
  const [ona] = await f.outcomeFor([noAccountField], WAIT_MS);
  assert.equal([ona.status, ona.reason, ona.accountId], ['rejected', 'INVALID_COMMAND', p]);

  assert.equal((await f.events(p)).map((e) => e.command_id), [open.commandId, valid.commandId]);
  const { rows } = await f.pg.query('SELECT count(*)::int AS n FROM command_rejections WHERE account_id = $1 AND reason = $2', [p, 'INVALID_COMMAND']);
  assert.is(rows[0].n, invalid.length + 1);
  assert.ok(f.daemon?.alive, 'bad input never crashes the daemon');
});

/** Opens fresh accounts until every partition of the command topic got one; resolves when all are processed. */
async function markEveryPartition(): Promise<Cmd[]> {
  const marks: Cmd[] = [];
  const seen = new Set<number>();
  while (seen.size < 4) {
    const m = cmd.open(randomUUID(), '1.00');
    marks.push(m);
    seen.add((await f.send(m)).partition);
  }
  await f.outcomeFor(marks, WAIT_MS);
  return marks;
}

test('the running daemon\'s whole /metrics, after traffic, rejections and dead letters, passes promtool check metrics with no allow list', async () => {
  const d = f.daemon;
  assert.ok(d);
  const { status, body } = await d.get('/metrics');
  assert.is(status, 200);
  assert.ok(body.includes('banking_es_dlq_messages_total{'), 'the dead-letter series are in the text checked');
  const { code, output } = await promtoolCheck(body);
  assert.is(code, 0, `promtool check metrics exit ${code}:\n${output}`);
  // where account states came from: new accounts from Postgres, later commands from memory
  assert.ok((await d.metric('banking_es_state_lookups_total{answered="postgres"}'))! > 0, 'state lookups answered by Postgres');
  assert.ok((await d.metric('banking_es_state_lookups_total{answered="memory"}'))! > 0, 'state lookups answered from memory');
  assert.ok((await d.metric('banking_es_state_cache_accounts'))! > 0);
});

test('send: a dead-lettered command is reported as such; bad NDJSON lines are named and the good ones sent', async () => {
  const dead = await sendCli(['Deposit', '--account', 'not-a-uuid', '--amount', '1', '--timeout', '30000']);
  assert.is(dead.code, 1, dead.stderr);
  assert.is(dead.lines.length, 1);
  assert.is(dead.lines[0].status, 'dead-lettered');
  assert.equal(dead.lines[0].error, { code: 'NO_ACCOUNT_ID', message: 'accountId must be a UUID string' });

  const a = randomUUID();
  const open = cmd.open(a, '3.00');
  const deposit = JSON.stringify(cmd.deposit(a, '2.00'));
  const upper = cmd.deposit(a.toUpperCase(), '0.50');
  upper.commandId = upper.commandId.toUpperCase(); // the daemon answers in lower case
  const huge = JSON.stringify({ ...cmd.deposit(a, '9.00'), note: 'x'.repeat(1_100_000) }); // over librdkafka's message.max.bytes
  const ndjson = [JSON.stringify(open), '{ "type": "Deposit", ', '[1, 2]', '', deposit, JSON.stringify({ type: 'Deposit', accountId: a, amount: '1' }), deposit, huge, JSON.stringify(upper)].join('\n') + '\n';
  const r = await sendCli(['-', '--timeout', '30000'], ndjson);
  assert.is(r.code, 1, 'not everything went through');
  const by = (pred: (l: Record<string, unknown>) => boolean) => r.lines.filter(pred);
  assert.equal(by((l) => l.line !== undefined && l.status === undefined).map((l) => l.line), [2, 3, 8], 'the bad lines and the one too large to send, by number');
  assert.match(String(by((l) => l.line === 8)[0].error), /^not sent: /);
  assert.is(by((l) => l.status === 'accepted').length, 3, 'the good commands were sent and answered, the upper-case commandId too');
  assert.is(by((l) => l.commandId === upper.commandId.toLowerCase()).length, 1);
  assert.is(by((l) => l.status === 'duplicate').length, 1, 'the deposit sent twice got its second answer too');
  const noId = by((l) => l.status === 'dead-lettered');
  assert.is(noId.length, 1, 'the command without a commandId is reported dead-lettered, not as "undefined"');
  assert.is(noId[0].commandId, null);
  assert.is(noId[0].line, 6, 'and which line it was');
  assert.not.ok(r.lines.some((l) => 'error' in l && String(l.error).startsWith('no outcome')), 'nothing timed out');
});

test('send: on a timeout it names the command to re-send; re-sending it answers duplicate, never a second account', async () => {
  const first = await sendCli(['OpenAccount', '--owner', 'Ann', '--timeout', '0']);
  assert.is(first.code, 1);
  const timedOut = first.lines.find((l) => typeof l.error === 'string' && l.error.startsWith('no outcome'));
  assert.ok(timedOut, JSON.stringify(first.lines));
  const resend = timedOut.resend as Array<{ commandId: string; accountId: string }>;
  assert.is(resend.length, 1);
  const again = await sendCli(['-', '--timeout', '30000'], resend.map((c) => JSON.stringify(c)).join('\n'));
  assert.is(again.code, 0, again.stderr);
  assert.is(again.lines[0].commandId, resend[0].commandId);
  // the first copy was produced before send gave up, on the same partition: it was decided first
  assert.is(again.lines[0].status, 'duplicate', JSON.stringify(again.lines[0]));
  assert.is(again.lines[0].originalStatus, 'accepted');
  const events = await f.events(resend[0].accountId);
  assert.is(events.length, 1, 'one account opened');
});

test('restart without new input re-processes nothing; stored offsets decide where each partition resumes', async () => {
  const n = async (sql: string, args: unknown[] = []) => (await f.pg.query(sql, args)).rows[0].n as number;
  await markEveryPartition(); // everything sent before is processed
  await f.stop();
  const offsets = await f.pg.query('SELECT partition, next_offset::int AS next, published_offset::int AS published FROM consumer_offsets WHERE consumer = $1 AND topic = $2 ORDER BY partition', [f.group, f.topics.commands]);
  assert.is(offsets.rows.length, 4, 'one stored offset per partition');
  for (const r of offsets.rows as Array<{ partition: number; next: number; published: number }>) {
    assert.is(r.published, r.next, `partition ${r.partition}: a graceful stop records every outcome as published`);
  }
  const events0 = await n('SELECT count(*)::int AS n FROM events');
  const rejections0 = await n('SELECT count(*)::int AS n FROM command_rejections');
  const seenIds = new Set(f.outcomes.messages.map((m) => m.value?.commandId));
  const outcomes0 = f.outcomes.messages.length;

  await f.start();
  const marks = await markEveryPartition();
  await new Promise((r) => setTimeout(r, 1000)); // outcomes of other result partitions may trail the marks a little
  const fresh = f.outcomes.messages.slice(outcomes0).map((m) => m.value);
  const republished = fresh.filter((o) => !marks.some((m) => m.commandId === o.commandId));
  assert.ok(republished.every((o) => seenIds.has(o.commandId)), 'any re-published outcome is for a command seen before');
  assert.is(republished.length, 0, `nothing re-published after a graceful stop: ${JSON.stringify(republished.slice(0, 3))}`);
  assert.is(await n('SELECT count(*)::int AS n FROM events'), events0 + marks.length, 'no event but the marks');
  assert.is(await n('SELECT count(*)::int AS n FROM command_rejections'), rejections0);

  // while the daemon is down: three deposits on k, then skip partition P past the first two by hand
  const k = randomUUID();
  const openK = cmd.open(k, '10.00');
  const [kAt] = await f.sendAll([openK]);
  await f.outcomeFor([openK], WAIT_MS);
  await f.stop();
  const skipped = [cmd.deposit(k, '1.00'), cmd.deposit(k, '2.00')];
  const kept = cmd.deposit(k, '4.00');
  const at = await f.sendAll([...skipped, kept]);
  assert.ok(at.every((x) => x.partition === kAt.partition));
  const upd = await f.pg.query('UPDATE consumer_offsets SET next_offset = $4, published_offset = $4 WHERE consumer = $1 AND topic = $2 AND partition = $3', [f.group, f.topics.commands, kAt.partition, at[2].offset]);
  assert.is(upd.rowCount, 1);
  // and commands for another account produced while down, after those
  const w = randomUUID();
  const whileDown = [cmd.open(w, '3.00'), cmd.deposit(w, '0.50'), cmd.withdraw(w, '1.25')];
  await f.sendAll(whileDown);

  await f.start();
  const [ok] = await f.outcomeFor([kept], WAIT_MS);
  assert.equal(pick(ok), { status: 'accepted', reason: undefined, version: 2, balance: '14.00', originalStatus: undefined });
  const ow = await f.outcomeFor(whileDown, WAIT_MS);
  assert.equal(ow.map((o) => [o.status, o.version, o.balance]), [['accepted', 1, '3.00'], ['accepted', 2, '3.50'], ['accepted', 3, '2.25']]);
  await markEveryPartition();
  for (const s of skipped) assert.is(f.outcomesOf(s.commandId).length, 0, 'offsets below the stored one are never read');
  assert.equal((await f.events(k)).map((e) => e.command_id), [openK.commandId, kept.commandId]);
});

test('SIGTERM under load: exit 0, what was consumed is committed and published, the rest follows after restart', async () => {
  const accts = Array.from({ length: 50 }, () => randomUUID());
  const burst: Cmd[] = accts.map((a) => cmd.open(a, '0'));
  for (let i = 0; i < 4950; i++) burst.push(cmd.deposit(accts[i % 50], '0.10'));
  const first = f.outcomes.messages.length;
  const sending = f.sendAll(burst);
  await f.outcomes.waitFor((m) => m.length > first, WAIT_MS, 'first outcome of the burst');
  // readiness through the stop: a daemon draining after SIGTERM is not ready, from the first answer on
  const d = f.daemon!;
  assert.is((await d.get('/readyz')).status, 200, 'ready under load');
  const port = d.metricsPort();
  d.child.kill('SIGTERM');
  const seen: number[] = [];
  for (;;) {
    const r = await new Promise<number | null>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/readyz', timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode ?? null); });
      req.on('error', () => resolve(null));
      req.on('timeout', () => req.destroy());
    });
    if (r === null) break; // the server closed, last of all
    seen.push(r);
  }
  // the signal is handled asynchronously: a request that raced it may still see 200, none after the first 503
  const from = seen.indexOf(503);
  assert.ok(from >= 0 && from <= 1, `/readyz while stopping: ${seen.join(',')}`);
  assert.ok(seen.slice(from).every((x) => x === 503), `/readyz while stopping: ${seen.join(',')}`);
  await waitForExit(d.child, 30000);
  await f.stop(); // asserts exit code 0
  await sending;
  const { rows } = await f.pg.query<{ partition: number; next: number; published: number }>('SELECT partition, next_offset::int AS next, published_offset::int AS published FROM consumer_offsets WHERE consumer = $1 AND topic = $2', [f.group, f.topics.commands]);
  for (const r of rows) assert.is(r.published, r.next, `partition ${r.partition}: every committed outcome was published before exit`);
  const before = f.outcomes.messages.length - first;
  await f.start();
  await f.outcomeFor(burst, WAIT_MS);
  await new Promise((r) => setTimeout(r, 500));
  const mine = new Set(burst.map((c) => c.commandId));
  const got = f.outcomes.messages.slice(first).filter((m) => mine.has(m.value.commandId));
  console.log(`${before} outcomes before SIGTERM, ${got.length - before} after restart`);
  assert.is(got.length, burst.length, 'exactly one outcome per command');
  assert.ok(got.every((m) => m.value.status === 'accepted'));
  const { rows: bal } = await f.pg.query<{ b: string; n: number }>(
    "SELECT DISTINCT (SELECT payload->'data'->>'balanceAfter' FROM events e WHERE e.account_id = a ORDER BY version DESC LIMIT 1) AS b, (SELECT count(*)::int FROM events e WHERE e.account_id = a) AS n FROM unnest($1::uuid[]) AS a", [accts]);
  assert.equal(bal, [{ b: '990', n: 100 }]);
});

test('a stored offset past the end of the log stops that partition (never reset); the others flow', async () => {
  await f.stop();
  const { rows: [stored] } = await f.pg.query<{ partition: number; next: number }>('SELECT partition, next_offset::int AS next FROM consumer_offsets WHERE consumer = $1 AND topic = $2 ORDER BY partition LIMIT 1', [f.group, f.topics.commands]);
  const lost = stored.next + 1000; // as if Kafka had lost the tail of the partition
  await f.pg.query('UPDATE consumer_offsets SET next_offset = $4, published_offset = $4 WHERE consumer = $1 AND topic = $2 AND partition = $3', [f.group, f.topics.commands, stored.partition, lost]);
  const d = await f.start();
  const stuck: Cmd[] = [];
  const flowing: Cmd[] = [];
  while (stuck.length < 2 || flowing.length < 3) {
    const c = cmd.open(randomUUID(), '1.00');
    const at = await f.send(c);
    (at.partition === stored.partition ? stuck : flowing).push(c);
  }
  await f.outcomeFor(flowing, WAIT_MS);
  await new Promise((r) => setTimeout(r, 1500)); // a stuck partition's outcome would have come with the others
  for (const c of stuck) assert.is(f.outcomesOf(c.commandId).length, 0, 'nothing is read from a stopped partition');
  assert.ok(d.logs().some((l) => (l.level ?? 0) >= 50 && /OFFSET_OUT_OF_RANGE/.test(String(l.msg)) && l.partition === stored.partition), 'an error log names the partition');
  assert.is(await d.metric(`banking_es_partitions_stopped{topic="${f.topics.commands}"}`), 1);
  const { rows: [after] } = await f.pg.query<{ next: number }>('SELECT next_offset::int AS next FROM consumer_offsets WHERE consumer = $1 AND topic = $2 AND partition = $3', [f.group, f.topics.commands, stored.partition]);
  assert.is(after.next, lost, 'the stored offset is left as it was');
  assert.ok(d.alive);
  const ready = await d.get('/readyz');
  assert.is(ready.status, 503, 'a role with a stopped partition is not ready');
  assert.match(ready.body, new RegExp(`1 of 4 partitions stopped \\(OFFSET_OUT_OF_RANGE[^"]*${f.topics.commands}/${stored.partition}`));
  assert.is((await d.get('/healthz')).status, 200, 'it is alive: restarting it would not help');

  // docs/runbook.md "Partitions stopped": move both offsets to where reading should resume, restart
  await f.stop();
  await f.pg.query('UPDATE consumer_offsets SET next_offset = $4, published_offset = $4 WHERE consumer = $1 AND topic = $2 AND partition = $3', [f.group, f.topics.commands, stored.partition, stored.next]);
  const resumed = await f.start();
  await f.outcomeFor(stuck, WAIT_MS);
  await resumed.ready();
  assert.is(await resumed.metric(`banking_es_partitions_stopped{topic="${f.topics.commands}"}`), 0);
});

test('every outcome and dead letter this file made matches contracts/ (JSON Schema)', () => {
  assert.ok(f.outcomes.messages.length > 0 && f.dlqMessages().length > 0);
  assert.equal(violations('outcome', f.outcomes.messages), []);
  assert.equal(violations('dead-letter-headers', f.dlqMessages(), 'headers'), []);
});

test.run();
