/**
 * Secrets never reach the log output, wherever they hide: in the message, in
 * a string field, under a known secret key, in an Error, or under
 * librdkafka's dotted option names. What is not secret (user, host) stays.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Writable } from 'node:stream';
import { createLogger, redactUrl } from '../src/logger';

function capture() {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger({ level: 'info', destination });
  return {
    log,
    /** Every line written so far, after pending writes have drained. */
    async lines(): Promise<Array<Record<string, unknown>>> {
      await new Promise((r) => setImmediate(r));
      return chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async text(): Promise<string> {
      await new Promise((r) => setImmediate(r));
      return chunks.join('');
    },
  };
}

function assertNoSecret(out: string, ...secrets: string[]): void {
  for (const s of secrets) assert.not.ok(out.includes(s), `secret ${JSON.stringify(s)} leaked into:\n${out}`);
}

const redaction = suite('logger redaction');

redaction('a URL password in the message string is masked; user and host stay', async () => {
  const c = capture();
  c.log.info('connecting to postgres://u:s3cret@h/db now');
  const out = await c.text();
  assertNoSecret(out, 's3cret');
  const [line] = await c.lines();
  assert.is(line.msg, 'connecting to postgres://u:***@h/db now');
});

redaction('a URL password in a printf-style argument is masked', async () => {
  const c = capture();
  c.log.info('connecting to %s', 'postgres://u:argS3cret@arghost/db');
  const out = await c.text();
  assertNoSecret(out, 'argS3cret');
  assert.ok(out.includes('u:***@arghost/db'), out);
});

redaction('a redis URL with a password in any object field is masked', async () => {
  const c = capture();
  c.log.info({ target: 'redis://ruser:r3disPw@redis-host:6379/0', nested: { list: ['rediss://:onlyPw@cache-host:6380'] } }, 'redis');
  const out = await c.text();
  assertNoSecret(out, 'r3disPw', 'onlyPw');
  const [line] = await c.lines();
  assert.is(line.target, 'redis://ruser:***@redis-host:6379/0');
  assert.equal((line.nested as { list: string[] }).list, ['rediss://:***@cache-host:6380']);
});

redaction('the config object: db url and SASL password never appear', async () => {
  const c = capture();
  const url = 'postgres://dbuser:dbS3cret@dbhost:5432/bank';
  c.log.info({ config: { db: { url }, kafka: { brokers: 'kafka-host:9092', sasl: { username: 'kuser', password: 'saslpw' } } } }, 'configuration');
  const out = await c.text();
  assertNoSecret(out, 'dbS3cret', 'saslpw');
  const [line] = await c.lines();
  const config = line.config as { db: { url: string }; kafka: { brokers: string; sasl: { username: string } } };
  // either masked whole (by path) or with only its password masked
  assert.ok(config.db.url === '***' || config.db.url === 'postgres://dbuser:***@dbhost:5432/bank', config.db.url);
  assert.is(config.kafka.brokers, 'kafka-host:9092');
  assert.is(config.kafka.sasl.username, 'kuser');
});

redaction('an Error whose message quotes a URL password is masked (err field and bare Error)', async () => {
  const c = capture();
  const err = new Error('connect ECONNREFUSED postgres://erruser:errPw1@errhost:5432/bank');
  c.log.error({ err }, 'start-up failed');
  c.log.error(new Error('redis://ruser:errPw2@redishost:6379 unreachable'));
  c.log.warn({ component: 'x', cause: new Error('via postgres://u3:errPw3@host3/db') }, 'nested error');
  const out = await c.text();
  assertNoSecret(out, 'errPw1', 'errPw2', 'errPw3');
  const lines = await c.lines();
  assert.is(lines.length, 3);
  const e1 = lines[0].err as { message: string; stack: string };
  assert.is(e1.message, 'connect ECONNREFUSED postgres://erruser:***@errhost:5432/bank');
  assert.ok(e1.stack.includes('erruser:***@errhost'), 'the stack is kept, masked');
  assert.ok(out.includes('ruser:***@redishost:6379'), out);
  assert.ok(out.includes('u3:***@host3/db'), out);
});

redaction("librdkafka's dotted option names ('sasl.password') are masked", async () => {
  const c = capture();
  c.log.info({ 'sasl.username': 'rdkuser', 'sasl.password': 'rdkS3cret', 'ssl.key.password': 'keyS3cret' }, 'kafka client config');
  c.log.info({ rdkafka: { 'bootstrap.servers': 'kafka-host:9092', 'sasl.password': 'rdkNested' } }, 'nested kafka client config');
  const out = await c.text();
  assertNoSecret(out, 'rdkS3cret', 'keyS3cret', 'rdkNested');
  assert.ok(out.includes('rdkuser'));
  assert.ok(out.includes('kafka-host:9092'));
});

redaction('plain password fields are masked', async () => {
  const c = capture();
  c.log.info({ password: 'topPw', user: { name: 'bob', password: 'userPw' } }, 'credentials');
  const out = await c.text();
  assertNoSecret(out, 'topPw', 'userPw');
  assert.ok(out.includes('bob'));
});

redaction('the caller\'s objects are not mutated by scrubbing', async () => {
  const c = capture();
  const fields = { target: 'redis://ruser:keepMe@h:6379' };
  c.log.info(fields, 'x');
  await c.text();
  assert.is(fields.target, 'redis://ruser:keepMe@h:6379');
});

redaction.run();

const urls = suite('redactUrl');

urls('masks the password of every URL, keeping scheme, user, host, path', () => {
  assert.is(redactUrl('postgres://u:s3cret@h/db'), 'postgres://u:***@h/db');
  assert.is(redactUrl('postgresql://user:p%40ss@db.example:5432/bank?sslmode=require'), 'postgresql://user:***@db.example:5432/bank?sslmode=require');
  assert.is(redactUrl('redis://:pw@cache:6379'), 'redis://:***@cache:6379');
  assert.is(redactUrl('a postgres://a:1@x/y and redis://b:2@z:6379 both'), 'a postgres://a:***@x/y and redis://b:***@z:6379 both');
});

urls('leaves URLs without a password alone', () => {
  for (const s of ['postgres://h/db', 'postgres://user@h/db', 'redis://cache:6379', 'no url here', 'mail me at bob@example.com']) {
    assert.is(redactUrl(s), s);
  }
});

urls.run();
