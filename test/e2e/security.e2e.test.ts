/**
 * Security surface of a running daemon (docs/reliability.md §8):
 *   - secrets never reach a log line: the daemon runs at debug level with a
 *     password in DATABASE_URL, REDIS_URL (a Redis that has no password, so
 *     AUTH fails and ioredis reports errors) and KAFKA_SASL_PASSWORD, and
 *     processes a command; again with SASL switched on against the mock
 *     cluster (which may refuse it), and against a Postgres port where nothing
 *     listens (connection errors quote URLs); `banking-es config` prints none;
 *   - METRICS_HOST is honoured: with 127.0.0.1 the server listens on that
 *     address only (checked in /proc/net/tcp*), and it answers there.
 * (SQL parameterization is test/db/sql-safety.unit.test.ts; npm audit is
 * recorded in the doc.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { freePort } from '../../dev/stack/ports';
import { cmd, PipelineFixture } from '../helpers/pipeline';
import { Daemon } from '../helpers/daemon';
import { spawnCli, testStack, waitForExit } from '../helpers/stack';
import { sleep } from '../helpers/reliability';

const SASL_PW = `kafka-sasl-${randomUUID()}`;
const REDIS_PW = `redis-pw-${randomUUID().slice(0, 12)}`;
const SSL_KEY_PW = `ssl-key-${randomUUID().slice(0, 12)}`;
const PG_FAKE_PW = `pg-pw-${randomUUID().slice(0, 12)}`;

let f: PipelineFixture | undefined;
const extra: Daemon[] = [];

test.after(async () => {
  for (const d of extra) await d.kill();
  await f?.release();
});

function leaks(output: string, secrets: string[]): string[] {
  return secrets.filter((s) => output.includes(s) || output.includes(encodeURIComponent(s)));
}

test('secrets never appear in the logs of a working daemon (debug level)', async () => {
  const s = testStack();
  const redisPort = s.redis?.port ?? (await freePort());
  f = await PipelineFixture.create('security', {
    LOG_LEVEL: 'debug',
    REDIS_URL: `redis://default:${REDIS_PW}@127.0.0.1:${redisPort}`,
    KAFKA_SASL_USERNAME: 'banking',
    KAFKA_SASL_PASSWORD: SASL_PW,
    KAFKA_SSL_KEY_PASSWORD: SSL_KEY_PW,
  });
  const pgPw = new URL(f.db.url).password;
  assert.ok(pgPw.length >= 8, 'the test database URL carries a password');
  const d = await f.start();
  const a = randomUUID();
  const cs = [cmd.open(a, '5.00'), cmd.deposit(a, '1.00')];
  await f.sendAll(cs);
  const os = await f.outcomeFor(cs, 30000);
  assert.equal(os.map((o) => o.status), ['accepted', 'accepted']);
  await sleep(3000); // let Redis AUTH failures and retries be logged
  await d.get('/readyz');
  await f.stop();
  const out = d.output();
  assert.ok(out.split('\n').length > 10, 'the daemon logged something');
  assert.equal(leaks(out, [pgPw, REDIS_PW, SASL_PW, SSL_KEY_PW]), [], 'a secret reached the logs');
  console.log(`${out.split('\n').length} log lines at debug level, no secret among them`);
});

test('secrets stay out of the logs when SASL is on and when Postgres refuses connections', async () => {
  const fx = f!;
  const pgPw = new URL(fx.db.url).password;
  // SASL against the mock cluster: it may connect or fail; either way nothing leaks
  const sasl = Daemon.start({
    BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR, DATABASE_URL: fx.db.url, ROLES: 'commands', METRICS_PORT: '0', LOG_LEVEL: 'debug',
    KAFKA_TOPIC_COMMANDS: fx.topics.commands, KAFKA_TOPIC_RESULTS: fx.topics.results, KAFKA_TOPIC_COMMANDS_DLQ: fx.topics.dlq, KAFKA_GROUP_ID: `sec-${randomUUID().slice(0, 8)}`,
    KAFKA_SECURITY_PROTOCOL: 'sasl_plaintext', KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256', KAFKA_SASL_USERNAME: 'banking', KAFKA_SASL_PASSWORD: SASL_PW,
  });
  extra.push(sasl);
  // nothing listens on this Postgres port: connection errors are logged and retried
  const closed = await freePort();
  const noPg = Daemon.start({
    BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR, DATABASE_URL: `postgres://banking:${PG_FAKE_PW}@127.0.0.1:${closed}/banking`, ROLES: 'commands', METRICS_PORT: '0', LOG_LEVEL: 'debug',
    REDIS_URL: `redis://:${REDIS_PW}@127.0.0.1:${await freePort()}`, KAFKA_SASL_PASSWORD: SASL_PW,
  });
  extra.push(noPg);
  await sleep(8000);
  for (const d of [sasl, noPg]) { if (d.alive) await d.stop(15000).catch(() => d.kill()); }
  const saslOut = sasl.output();
  const noPgOut = noPg.output();
  assert.ok(/postgres not reachable yet/.test(noPgOut), `the Postgres failure was logged:\n${noPgOut.slice(0, 2000)}`);
  assert.equal(leaks(saslOut, [pgPw, SASL_PW]), [], 'a secret reached the logs (SASL run)');
  assert.equal(leaks(noPgOut, [PG_FAKE_PW, REDIS_PW, SASL_PW]), [], 'a secret reached the logs (no Postgres)');
  const saslStarted = /banking-es started/.test(saslOut);
  console.log(`SASL (SCRAM) against the mock cluster: ${saslStarted ? 'started' : 'did not start'}; ${saslOut.split('\n').length + noPgOut.split('\n').length} lines checked`);
});

test('`banking-es config` prints no secret', async () => {
  const env = {
    DATABASE_URL: `postgres://banking:${PG_FAKE_PW}@db.example:5432/banking`,
    REDIS_URL: `redis://:${REDIS_PW}@redis.example:6379`,
    KAFKA_SASL_PASSWORD: SASL_PW,
    KAFKA_SSL_KEY_PASSWORD: SSL_KEY_PW,
    BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR,
  };
  const c = spawnCli(['config'], env);
  const r = await waitForExit(c, 20000);
  assert.is(r.code, 0, c.output());
  assert.ok(c.output().includes('db.example') || c.output().includes('"db"'), `config printed: ${c.output().slice(0, 500)}`);
  assert.equal(leaks(c.output(), [PG_FAKE_PW, REDIS_PW, SASL_PW, SSL_KEY_PW]), [], `a secret was printed:\n${c.output()}`);
});

/** Local addresses (hex as in /proc/net/tcp) listening on `port`. */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '0A') continue; // LISTEN
      const [addr, p] = cols[1].split(':');
      if (p === hexPort) out.push(addr);
    }
  }
  return out;
}

test('METRICS_HOST=127.0.0.1: the metrics server listens on loopback only', async () => {
  const fx = f!;
  const d = await fx.start({ METRICS_HOST: '127.0.0.1' });
  const line = d.logs().find((l) => l.msg === 'metrics and health server listening');
  assert.is(line?.host, '127.0.0.1');
  const port = d.metricsPort();
  assert.equal(listeners(port), ['0100007F'], `listening sockets on ${port}`);
  assert.is((await d.get('/healthz')).status, 200);
  await fx.stop();

  // and a different bind address is honoured too (the default is loopback as well)
  const any = await fx.start({ METRICS_HOST: '0.0.0.0' });
  const anyPort = any.metricsPort();
  assert.equal(listeners(anyPort), ['00000000'], `listening sockets on ${anyPort}`);
  await fx.stop();
});

test.run();
