/**
 * `banking-es dlq list|show|replay` against a running daemon (#16 item 3): a
 * command sent with a misnamed commandId is dead-lettered; the letter is found by
 * its code and time, shown whole, refused to replay off a terminal without
 * --yes, then fixed and replayed: applied exactly once, even when replayed
 * twice. A letter replayed unfixed fails again, carries the replay mark, and
 * is not replayed again unless asked.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture } from '../../helpers/pipeline';
import { violations } from '../../helpers/contracts';
import { cliPath } from '../../helpers/stack';
import { TopicReader } from '../../helpers/kafka';

const WAIT_MS = 45000;
let f: PipelineFixture;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-dlq-test-'));

test.before(async () => {
  f = await PipelineFixture.create('dlq_cli');
  await f.start();
});

test.after(async () => {
  await f?.release();
  fs.rmSync(scratch, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; json: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath(), ...args], { env: { ...process.env, NODE_ENV: 'test', ...f.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${args.join(' ')} did not exit:\n${stdout}${stderr}`)); }, 60000);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr, json: stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) });
    });
  });
}

test('a dead-lettered command: listed, shown, refused without --yes, fixed and replayed, applied once', async () => {
  const started = new Date(Date.now() - 1000).toISOString();
  const a = randomUUID();
  await f.sendAll([cmd.open(a, '10.00')]);
  const c = randomUUID();
  const bad = JSON.stringify({ command_id: c, type: 'Deposit', accountId: a, amount: '5.00' }); // commandId misspelt
  const sent = await f.send({ key: a, value: bad, headers: { traceparent: '00-abc-def-01' } });
  const after = cmd.deposit(a, '1.00'); // valid traffic on the same partition keeps flowing
  await f.sendAll([after]);
  await f.outcomeFor([after], WAIT_MS);
  await f.dlq.waitFor((m) => m.some((x) => x.raw?.toString() === bad), WAIT_MS, 'the letter');
  const letter = f.dlqMessages().find((x) => x.raw?.toString() === bad)!;

  const listed = await cli(['dlq', 'list', '--code', 'NO_COMMAND_ID', '--since', started]);
  assert.is(listed.code, 0, listed.stderr);
  const mine = listed.json.filter((l) => l.offset === letter.offset && l.partition === letter.partition);
  assert.is(mine.length, 1, listed.stdout);
  assert.equal(mine[0].source, { topic: f.topics.commands, partition: sent.partition, offset: sent.offset });
  assert.is(mine[0].key, a);
  assert.is((await cli(['dlq', 'list', '--code', 'MESSAGE_TOO_LARGE', '--since', started])).json.length, 0, 'filtered by code');
  assert.is((await cli(['dlq', 'list', '--since', new Date(Date.now() + 60_000).toISOString()])).json.length, 0, 'filtered by time');

  const shown = await cli(['dlq', 'show', '--partition', String(letter.partition), '--offset', String(letter.offset)]);
  assert.is(shown.code, 0, shown.stderr);
  assert.equal(shown.json[0].value, { text: bad });
  const hs = shown.json[0].headers as Array<Record<string, string>>;
  assert.ok(hs.some((h) => h['error.code'] === 'NO_COMMAND_ID') && hs.some((h) => h.traceparent === '00-abc-def-01'), JSON.stringify(hs));

  const at = ['--partition', String(letter.partition), '--offset', String(letter.offset)];
  const refused = await cli(['dlq', 'replay', ...at]);
  assert.is(refused.code, 2);
  assert.match(refused.stderr, /dlq replay sends 1 letters from .* to .*\n.*not on a terminal; pass --yes/);

  const fixed = path.join(scratch, 'fixed.json');
  fs.writeFileSync(fixed, JSON.stringify({ commandId: c, type: 'Deposit', accountId: a, amount: '5.00' }));
  for (let i = 0; i < 2; i++) {
    const r = await cli(['dlq', 'replay', ...at, '--value-file', fixed, '--yes']);
    assert.is(r.code, 0, r.stderr);
    assert.is(r.json[0].replayed, 1);
  }
  await f.outcomeFor([{ commandId: c, accountId: a, type: 'Deposit' }], WAIT_MS, 2);
  const statuses = f.outcomesOf(c).map((o) => o.status).sort();
  assert.equal(statuses, ['accepted', 'duplicate'], 'the first replay applied it, the second was answered duplicate');
  const events = await f.events(a);
  assert.equal(events.map((e) => e.event_type), ['AccountCreated', 'MoneyDeposited', 'MoneyDeposited'], 'opened, the valid deposit, the replayed one: once');
  assert.is(events.filter((e) => e.command_id === c).length, 1);
});

test('a letter replayed unfixed fails again, marked, and is not replayed again unless asked', async () => {
  const a = randomUUID();
  const bad = JSON.stringify({ command_id: randomUUID(), type: 'Deposit', accountId: a, amount: '1.00' });
  await f.send({ key: a, value: bad });
  await f.dlq.waitFor((m) => m.some((x) => x.raw?.toString() === bad), WAIT_MS, 'the letter');
  const first = f.dlqMessages().find((x) => x.raw?.toString() === bad)!;
  const r = await cli(['dlq', 'replay', '--partition', String(first.partition), '--offset', String(first.offset), '--yes']);
  assert.is(r.code, 0, r.stderr);
  const again = await f.dlq.waitFor((m) => m.filter((x) => x.raw?.toString() === bad).length === 2, WAIT_MS, 'the replayed letter dead-lettered again');
  const second = again.filter((x) => x.raw?.toString() === bad)[1];
  assert.is(second.headers['banking-es.replayed-from'], `${f.topics.dlq}/${first.partition}/${first.offset}`);

  const skipped = await cli(['dlq', 'replay', '--partition', String(second.partition), '--offset', String(second.offset), '--yes']);
  assert.is(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stderr, /nothing to replay .* 1 letters that were replayed before and failed again are left out/);
  const forced = await cli(['dlq', 'replay', '--partition', String(second.partition), '--offset', String(second.offset), '--again', '--yes']);
  assert.is(forced.json[0].replayed, 1);
  await f.dlq.waitFor((m) => m.filter((x) => x.raw?.toString() === bad).length === 3, WAIT_MS, 'replayed once more on request');
  await new Promise((res) => setTimeout(res, 1500));
  assert.is(f.dlqMessages().filter((x) => x.raw?.toString() === bad).length, 3, 'nothing replays by itself');
});

test('usage: show needs a letter, replay needs a selection, --value-file one letter; --limit stops the listing', async () => {
  const all = await cli(['dlq', 'list', '--code', 'NO_COMMAND_ID']);
  assert.ok(all.json.length >= 3, `letters from the tests before: ${all.json.length}`);
  const one = await cli(['dlq', 'list', '--code', 'NO_COMMAND_ID', '--limit', '1']);
  assert.is(one.json.length, 1);
  const fixed = path.join(scratch, 'any.json');
  fs.writeFileSync(fixed, '{}');
  // a letter whose source.topic header was forged to name the outcome topic
  const forged = await f.producer.send(f.topics.dlq, randomUUID(), '{"status":"accepted"}', { 'error.code': 'FORGED', 'error.class': 'poison', 'error.message': 'x', 'source.topic': f.topics.results, 'source.partition': '0', 'source.offset': '0' });
  const refusedForged = await cli(['dlq', 'replay', '--partition', String(forged.partition), '--offset', String(forged.offset), '--yes']);
  assert.is(refusedForged.code, 2);
  assert.match(refusedForged.stderr, /name a source topic other than .* only commands \(from .*\) and transfer steps \(from .*\) are replayed/);
  for (const [args, want] of [
    [['dlq', 'replay', '--code', 'NO_COMMAND_ID', '--value-file', fixed, '--again', '--yes'], /--value-file replaces one letter's value; \d+ are selected/],
    [['dlq', 'show'], /--partition and --offset name the letter/],
    [['dlq', 'replay', '--yes'], /select the letters/],
    [['dlq', 'list', '--offset', '3'], /--offset needs --partition/],
    [['dlq', 'purge'], /"purge" is not list, show or replay/],
    [['dlq', 'list', '--since', 'yesterday-ish'], /neither an ISO time nor a duration/],
  ] as Array<[string[], RegExp]>) {
    const r = await cli(args);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
  }
});

test('a dead-lettered transfer step is replayed from its own dead-letter topic to bank.transfers, and only there', async () => {
  const steps = f.env.KAFKA_TOPIC_TRANSFERS!, stepsDlq = f.env.KAFKA_TOPIC_TRANSFERS_DLQ!;
  const key = randomUUID(), value = JSON.stringify({ commandId: randomUUID(), type: 'CreditTransfer', marker: randomUUID() });
  const letter = (source: string) => ({ 'error.code': 'STEP_UNBACKED', 'error.class': 'poison', 'error.message': 'x', 'source.topic': source, 'source.partition': '0', 'source.offset': '0' });
  const good = await f.producer.send(stepsDlq, key, value, letter(steps));
  const r = await cli(['dlq', 'replay', '--topic', stepsDlq, '--partition', String(good.partition), '--offset', String(good.offset), '--yes']);
  assert.is(r.code, 0, r.stderr);
  const reader = await TopicReader.open(f.brokers, steps);
  try {
    await reader.waitFor((m) => m.some((x) => x.raw?.toString() === value), WAIT_MS, 'the step back on bank.transfers');
  } finally {
    await reader.close();
  }
  // a letter in the steps' dead-letter topic that names the command topic is not sent there
  const wrong = await f.producer.send(stepsDlq, key, value, letter(f.topics.commands));
  const refused = await cli(['dlq', 'replay', '--topic', stepsDlq, '--partition', String(wrong.partition), '--offset', String(wrong.offset), '--yes']);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, new RegExp(`name a source topic other than ${steps.replace(/\./g, '\\.')}`));
});

test('every outcome and dead letter this file made matches contracts/ (JSON Schema)', () => {
  assert.ok(f.outcomes.messages.length > 0 && f.dlqMessages().length > 0);
  assert.equal(violations('outcome', f.outcomes.messages), []);
  assert.equal(violations('dead-letter-headers', f.dlqMessages(), 'headers'), []);
});

test.run();
