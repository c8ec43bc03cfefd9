/**
 * Config is validated once, strictly, and a bad value names its key and the
 * rule it broke; the `config` command never prints a secret.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../src/config';
import { ConfigError } from '../src/errors';
import { packageRoot } from '../src/paths';

const cli = path.join(packageRoot(), 'dist', 'src', 'cli.js');

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-config-test-'));
}

/** Runs the CLI with only the env we give it (plus PATH), no stack file, NODE_ENV=test. */
function runCli(args: string[], env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const dir = tempDir();
  try {
    const res = spawnSync(process.execPath, [cli, ...args], {
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', BANKING_ES_STACK_DIR: dir, ...env },
      encoding: 'utf8',
      timeout: 30000,
    });
    return { status: res.status, stdout: res.stdout, stderr: res.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function expectConfigError(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, 'expected loadConfig to throw');
  assert.instance(caught, ConfigError);
  const msg = (caught as Error).message;
  for (const f of fragments) assert.ok(msg.includes(f), `message ${JSON.stringify(msg)} should include ${JSON.stringify(f)}`);
}

const defaults = suite('config defaults');

defaults('the defaults validate', () => {
  const { config, sources } = loadConfig({ env: {}, ignoreStack: true });
  assert.equal(config.roles, ['commands', 'transfers', 'projections', 'relay']);
  assert.is(config.kafka.brokers, '127.0.0.1:9092');
  assert.is(config.pipeline.batchSize, 5000);
  assert.is(config.cdc.mode, 'relay');
  assert.is(config.redis.url, '');
  assert.ok(sources.every((s) => !s.endsWith(path.join('stack', 'config.json'))), 'ignoreStack must not load the stack file');
});

defaults.run();

const invalid = suite('config rejects bad values, naming key and rule');

const cases: Array<[string, string, string, string]> = [
  ['KAFKA_BROKERS', 'nope', 'kafka.brokers', 'is not host:port'],
  ['DATABASE_URL', 'mysql://x', 'db.url', 'must be a postgres:// URL'],
  ['REDIS_URL', 'http://x', 'redis.url', 'redis:// or rediss:// URL'],
  ['METRICS_PORT', '70000', 'metrics.port', '65535'],
  ['PIPELINE_BATCH_SIZE', '0', 'pipeline.batchSize', 'must be an integer >= 1'],
  ['ROLES', 'commands,bogus', 'roles', 'unknown role "bogus"'],
  ['CDC_MODE', 'kafka', 'cdc.mode', 'must be one of the possible values'],
];

for (const [envKey, value, key, rule] of cases) {
  invalid(`${envKey}=${value} fails naming ${key}`, () => {
    expectConfigError(() => loadConfig({ env: { [envKey]: value }, ignoreStack: true }), `${key}:`, rule);
  });
}

invalid('an unknown key in a config file is rejected by name', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'extra.json');
    fs.writeFileSync(file, JSON.stringify({ kafka: { brokerz: 'x' } }));
    expectConfigError(() => loadConfig({ env: {}, ignoreStack: true, files: [file] }), 'kafka.brokerz');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

invalid('a missing config file is an error, not silently skipped', () => {
  expectConfigError(() => loadConfig({ env: {}, ignoreStack: true, files: [path.join(os.tmpdir(), 'banking-es-no-such-file.json')] }), 'does not exist');
});

invalid.run();

const precedence = suite('config precedence');

precedence('environment variables override config files; file values apply otherwise', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'override.json');
    fs.writeFileSync(file, JSON.stringify({ kafka: { brokers: 'file-host:1111' }, pipeline: { batchSize: 7 } }));
    const fromFile = loadConfig({ env: {}, ignoreStack: true, files: [file] });
    assert.is(fromFile.config.kafka.brokers, 'file-host:1111');
    assert.is(fromFile.config.pipeline.batchSize, 7);
    assert.ok(fromFile.sources.includes(file));

    const withEnv = loadConfig({ env: { KAFKA_BROKERS: 'env-host:2222' }, ignoreStack: true, files: [file] });
    assert.is(withEnv.config.kafka.brokers, 'env-host:2222');
    assert.is(withEnv.config.pipeline.batchSize, 7);

    const viaEnvVar = loadConfig({ env: { BANKING_ES_CONFIG: file, PIPELINE_BATCH_SIZE: '9' }, ignoreStack: true });
    assert.is(viaEnvVar.config.kafka.brokers, 'file-host:1111');
    assert.is(viaEnvVar.config.pipeline.batchSize, 9);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

precedence('config/test.json applies under NODE_ENV=test', () => {
  const { config } = loadConfig({ env: { NODE_ENV: 'test' }, ignoreStack: true });
  assert.is(config.env, 'test');
  assert.is(config.metrics.port, 0);
});

precedence.run();

const command = suite('banking-es config / bad config on the command line');

command('`config` prints the effective configuration without secrets', () => {
  const dbPassword = 'pgS3cretValue';
  const saslPassword = 'saslS3cretValue';
  const res = runCli(['config'], {
    DATABASE_URL: `postgres://alice:${dbPassword}@db.example:5432/bank`,
    KAFKA_SASL_USERNAME: 'kafkauser',
    KAFKA_SASL_PASSWORD: saslPassword,
    KAFKA_BROKERS: 'broker-one:9092',
  });
  assert.is(res.status, 0, res.stderr);
  assert.ok(res.stdout.includes('broker-one:9092'), `non-secret values are printed:\n${res.stdout}`);
  assert.ok(res.stdout.includes('kafkauser'));
  assert.not.ok(res.stdout.includes(dbPassword), 'the database password leaked');
  assert.not.ok(res.stdout.includes(saslPassword), 'the SASL password leaked');
  assert.not.ok(res.stderr.includes(dbPassword) || res.stderr.includes(saslPassword), 'a secret leaked on stderr');
  JSON.parse(res.stdout); // it is JSON
});

command('a bad value exits 2 and stderr names the key', () => {
  const res = runCli(['config'], { PIPELINE_BATCH_SIZE: '0' });
  assert.is(res.status, 2, `stdout: ${res.stdout}\nstderr: ${res.stderr}`);
  assert.match(res.stderr, /^banking-es: invalid configuration: pipeline\.batchSize: must be an integer >= 1/m);
  assert.is(res.stdout, '');
});

command('a bad value fails `start` the same way, before anything starts', () => {
  const res = runCli(['start'], { KAFKA_BROKERS: 'nope' });
  assert.is(res.status, 2, `stdout: ${res.stdout}\nstderr: ${res.stderr}`);
  assert.match(res.stderr, /banking-es: invalid configuration: kafka\.brokers: /);
});

command.run();
