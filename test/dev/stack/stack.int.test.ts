/**
 * `stack up` / `stack down` in a private directory (never the runner's):
 * up starts live processes and writes the connection file, a second up is a
 * no-op, down stops exactly those PIDs and removes every file it made.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { readStack, stackDown, stackPaths, stackPids, stackStatus, stackUp, type StackState } from '../../../dev/stack/stack';
import { isAlive, stopPid } from '../../../dev/stack/process';
import { removePostgresData } from '../../../dev/stack/postgres';
import { spawnCli, waitForExit, withTimeout } from '../../helpers/stack';

const UP_MS = 90000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-stack-test-'));
let state: StackState | undefined;

/** Last resort when an assertion failed half-way: kill whatever this file started. */
async function forceCleanup(): Promise<void> {
  const s = state ?? readStack(dir);
  if (s) {
    for (const p of stackPids(s)) if (isAlive(p.pid)) await stopPid(p.pid, p.name === 'postgres' ? 'SIGINT' : 'SIGTERM', 20000).catch(() => undefined);
    removePostgresData(s.postgres);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

const stack = suite('embedded stack');

stack.after(forceCleanup);

stack('stack up starts live processes and writes the connection file', async () => {
  const said: string[] = [];
  state = await withTimeout(stackUp(dir, (l) => said.push(l)), UP_MS, 'stack up');
  const st = stackStatus(dir);
  assert.ok(st.up, `status: ${JSON.stringify(st.processes)}`);
  assert.ok(st.processes.length >= 2 && st.processes.length <= 3, `expected 2-3 processes, got ${st.processes.length}`);
  assert.ok(st.processes.every((p) => p.alive));
  assert.equal(st.processes.map((p) => p.name).slice(0, 2), ['postgres', 'kafka-mock']);
  assert.is(new Set(st.processes.map((p) => p.pid)).size, st.processes.length, 'distinct PIDs');
  assert.ok(said.some((l) => l.startsWith('postgres')), said.join('\n'));

  const paths = stackPaths(dir);
  assert.ok(paths.root.startsWith(dir), `state lives under our own directory, not ${paths.root}`);
  const conf = JSON.parse(fs.readFileSync(paths.config, 'utf8')) as { kafka: { brokers: string }; db: { url: string }; redis: { url: string } };
  assert.match(conf.kafka.brokers, /^[^\s:,]+:\d+(,[^\s:,]+:\d+)*$/);
  assert.is(conf.kafka.brokers, state.kafka.brokers);
  assert.is(conf.db.url, state.postgres.url);
  assert.match(conf.db.url, /^postgres:\/\//);
  assert.type(conf.redis.url, 'string');
  if (state.redis) assert.match(conf.redis.url, /^redis:\/\//);
  else assert.is(conf.redis.url, '');
  assert.is(fs.statSync(paths.config).mode & 0o077, 0, 'the connection file holds a password: owner-only');
});

stack('Postgres answers on the connection URL', async () => {
  assert.ok(state, 'stack up failed');
  const c = new Client({ connectionString: state!.postgres.url, connectionTimeoutMillis: 10000 });
  c.on('error', () => undefined);
  try {
    await withTimeout(c.connect(), 15000, 'connecting to the stack Postgres');
    const { rows } = await c.query<{ one: number; wal: string }>("SELECT 1 AS one, current_setting('wal_level') AS wal");
    assert.is(rows[0].one, 1);
    assert.is(rows[0].wal, 'logical');
  } finally {
    await c.end().catch(() => undefined);
  }
});

stack('stack up twice is idempotent (already up, same PIDs)', async () => {
  assert.ok(state, 'stack up failed');
  const said: string[] = [];
  const again = await withTimeout(stackUp(dir, (l) => said.push(l)), UP_MS, 'second stack up');
  assert.ok(said.some((l) => /already up/.test(l)), said.join('\n'));
  assert.equal(stackPids(again), stackPids(state!));

  const child = spawnCli(['stack', 'up', '--dir', dir]);
  const r = await waitForExit(child, UP_MS);
  assert.is(r.code, 0, child.output());
  assert.match(child.output(), /already up/);
  assert.equal(stackPids(readStack(dir)!), stackPids(state!));

  const status = spawnCli(['stack', 'status', '--dir', dir]);
  const rs = await waitForExit(status, 30000);
  assert.is(rs.code, 0, status.output());
  assert.match(status.output(), new RegExp(`postgres\\s+pid ${state!.postgres.pid} running`));
});

stack('stack down stops every PID and removes state, config and the Postgres data', async () => {
  assert.ok(state, 'stack up failed');
  const s = state!;
  const paths = stackPaths(dir);
  await withTimeout(stackDown(dir), UP_MS, 'stack down');
  for (const p of stackPids(s)) assert.not.ok(isAlive(p.pid), `${p.name} (pid ${p.pid}) is still alive`);
  assert.not.ok(fs.existsSync(paths.state), 'state.json remains');
  assert.not.ok(fs.existsSync(paths.config), 'config.json remains');
  assert.not.ok(fs.existsSync(s.postgres.baseDir), `the Postgres data dir ${s.postgres.baseDir} remains`);
  const st = stackStatus(dir);
  assert.not.ok(st.up);
  assert.equal(st.processes, []);
  state = undefined;
});

stack('status and down of a stack that is not up', async () => {
  const status = spawnCli(['stack', 'status', '--dir', dir]);
  const rs = await waitForExit(status, 30000);
  assert.is(rs.code, 1, status.output());
  assert.match(status.output(), /stack is not up/);
  const said: string[] = [];
  await stackDown(dir, (l) => said.push(l));
  assert.equal(said, ['stack is not up']);
});

stack.run();
