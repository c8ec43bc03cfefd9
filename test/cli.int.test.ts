/**
 * A safe command line (#16 item 2): `--help` on every subcommand prints its
 * usage and does nothing else (no migration, no rebuild, no stack status, no
 * send); a usage mistake is one line on stderr and exit 2, never a stack
 * trace; a destructive command says what it will do and, off a terminal,
 * needs --yes; a broken config file is named.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { COMMANDS } from '../src/cli';
import { createTestDatabase, spawnCli, waitForExit, type TestDb } from './helpers/stack';

let db: TestDb;
let pg: Client;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-cli-test-'));

test.before(async () => {
  db = await createTestDatabase('cli');
  pg = new Client({ connectionString: db.url });
  await pg.connect();
});

test.after(async () => {
  await pg?.end();
  await db?.drop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** Runs the CLI against the test database, an empty stack directory and no terminal; its exit and output. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, { DATABASE_URL: db.url, BANKING_ES_STACK_DIR: path.join(scratch, 'no-stack'), KAFKA_BROKERS: '127.0.0.1:1', LOG_LEVEL: 'warn', ...env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  const { code } = await waitForExit(child, 30000);
  return { code, stdout, stderr };
}

const tableExists = async (name: string) => (await pg.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name])).rows[0].t !== null;

test('--help on every subcommand prints its usage, exits 0 and does nothing else', async () => {
  assert.ok(Object.keys(COMMANDS).length >= 8);
  for (const cmd of Object.keys(COMMANDS)) {
    for (const flag of ['--help', '-h']) {
      const r = await cli([cmd, flag]);
      assert.is(r.code, 0, `${cmd} ${flag}: ${r.stderr}`);
      assert.ok(r.stdout.startsWith(`usage: banking-es ${cmd}`), `${cmd} ${flag} printed:\n${r.stdout}`);
      assert.is(r.stderr, '', `${cmd} ${flag} wrote to stderr`);
    }
  }
  // a --help after other arguments is still only help
  assert.is((await cli(['send', 'OpenAccount', '--owner', 'Ann', '--help'])).code, 0);
  assert.not.ok(await tableExists('events'), 'migrate --help migrated');
  const stack = await cli(['stack', '--help']);
  assert.not.match(stack.stdout, /stack is not up|127\.0\.0\.1|pid /, 'stack --help printed a status');
  const top = await cli(['--help']);
  for (const cmd of Object.keys(COMMANDS)) assert.ok(top.stdout.includes(`  ${cmd}`), `banking-es --help lists ${cmd}`);
});

test('usage mistakes: one line on stderr, exit 2, no stack trace, nothing sent', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['send', 'Deposit', '--amount', '1'], /--account <uuid> is required/],
    [['send', 'Deposit', '--account', '3f0c1d52-6f1e-4d7e-9a57-0b6f4c1e2a10'], /--amount <decimal> is required/],
    [['send', 'Transfer', '--account', 'x', '--amount', '1'], /--to <uuid> \(the destination account\) is required/],
    [['send', 'Refund', '--account', 'x'], /unknown command type "Refund"/],
    [['send'], /missing argument/],
    [['send', 'Deposit', '--bogus', '1'], /unknown option --bogus/],
    [['send', 'Deposit', '--timeout', 'soon'], /--timeout must be a whole number/],
    [['account'], /missing argument/],
    [['account', 'a', 'b'], /unexpected argument "b"/],
    [['account', 'x', '--limit'], /--limit needs a value/],
    [['stack', 'sideways'], /"sideways" is not up, down or status/],
    [['demo', '--keep-stack=yes'], /--keep-stack takes no value/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['constructor'], /unknown command "constructor"/],
    [['frobnicate', '--help'], /unknown command "frobnicate"/],
    [['send', 'Deposit', '--account', '--amount', '5'], /--account needs a value/],
    [['rebuild-projections', '--account', 'x; DROP TABLE events'], /--account "x; DROP TABLE events" is not a UUID/],
    [['rebuild-projections', '--since', 'last tuesday'], /neither an ISO time nor a duration/],
    [['rebuild-projections', '--since', '1'], /neither an ISO time nor a duration/],
    [['rebuild-projections', '--account', ','], /--account names no account/],
    [['rebuild-projections', '--batch-size', '0'], /--batch-size must be at least 1/],
    [['account', 'x', '--limit', '99999999999999999999'], /--limit must be a whole number/],
  ];
  for (const [args, want] of cases) {
    const r = await cli(args);
    assert.is(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.is(lines.length, 1, `${args.join(' ')}: one line, got:\n${r.stderr}`);
    assert.match(lines[0], /^banking-es: /);
    assert.match(lines[0], want);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('a broken config file is named; a missing one too', async () => {
  const broken = path.join(scratch, 'broken.json');
  fs.writeFileSync(broken, '{ "kafka": ');
  let r = await cli(['config', '--config', broken]);
  assert.is(r.code, 2);
  assert.match(r.stderr, new RegExp(`^banking-es: config file ${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} could not be read as JSON`));
  const unknownKey = path.join(scratch, 'typo.json');
  fs.writeFileSync(unknownKey, JSON.stringify({ kafka: { brokerz: '127.0.0.1:9092' } }));
  r = await cli(['config', '--config', unknownKey]);
  assert.is(r.code, 2);
  assert.ok(r.stderr.includes(unknownKey) && r.stderr.includes('kafka.brokerz'), r.stderr);
  r = await cli(['config', '--config', path.join(scratch, 'absent.json')]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /absent\.json does not exist/);
});

test('rebuild-projections off a terminal says what it would do and needs --yes; with it, it runs', async () => {
  assert.is((await cli(['migrate'])).code, 0);
  const id = '3f0c1d52-6f1e-4d7e-9a57-0b6f4c1e2a10';
  await pg.query(`INSERT INTO account_projections (account_id, owner_name, currency, balance, status, version, opened_at, updated_at)
                  VALUES ($1, 'keep me', 'USD', 1, 'open', 1, now(), now())`, [id]);
  const refused = await cli(['rebuild-projections']);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /empties every row of account_projections and transaction_projections/);
  assert.match(refused.stderr, /not on a terminal; pass --yes/);
  assert.not.match(refused.stderr, /\n\s+at /);
  assert.is((await pg.query('SELECT 1 FROM account_projections WHERE account_id = $1', [id])).rowCount, 1, 'nothing was emptied');
  const done = await cli(['rebuild-projections', '--yes']);
  assert.is(done.code, 0, done.stderr);
  assert.match(done.stderr, /rebuild completed/);
  assert.is((await pg.query('SELECT 1 FROM account_projections WHERE account_id = $1', [id])).rowCount, 0, 'rebuilt from an empty event store');
});

test.run();
