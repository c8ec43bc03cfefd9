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
import type { Delivered } from '../../helpers/kafka';
import { hostileCorpus, MAX } from '../../helpers/hostile-corpus';
import { violations } from '../../helpers/contracts';

let f: PipelineFixture | undefined;

test.after(async () => {
  await f?.release();
});

test('hostile messages are dead-lettered or rejected; the daemon and its partitions keep going', async () => {
  f = await PipelineFixture.create('hostile', { LIMITS_MAX_MESSAGE_BYTES: String(MAX) });
  const fx = f;
  await fx.start();
  const a = randomUUID();
  const b = randomUUID();
  const opens: Cmd[] = [cmd.open(a, '100.00'), cmd.open(b, '1.00')];
  await fx.sendAll(opens);
  await fx.outcomeFor(opens, 30000);

  const items = hostileCorpus(a, b);
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
  // what the daemon produced for them keeps to contracts/: every outcome, every letter's headers
  assert.equal(violations('outcome', fx.outcomes.messages), [], 'outcomes match contracts/schemas/outcome.json');
  assert.equal(violations('dead-letter-headers', fx.dlqMessages(), 'headers'), [], 'dead-letter headers match contracts/schemas/dead-letter-headers.json');
  await fx.stop();
});

test.run();
