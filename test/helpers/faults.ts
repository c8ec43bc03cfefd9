/**
 * Private dependencies a fault-injection test may stop and start without
 * disturbing the shared test stack: a Postgres (stopped by PID, restarted on
 * the same data directory and port), a redis-server, and a mock Kafka cluster
 * host. Each has a release function; PIDs are ours, never matched by name.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { distDir } from '../../src/paths';
import { freePort } from '../../dev/stack/ports';
import { isAlive, spawnDetached, stopPid } from '../../dev/stack/process';
import { removePostgresData, startPostgres, type PgState } from '../../dev/stack/postgres';
import { startRedis, type RedisState } from '../../dev/stack/redis';
import { sleep } from './reliability';

export interface PrivatePostgres { state: PgState; stateDir: string }

export async function startPrivatePostgres(database = 'banking'): Promise<PrivatePostgres> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-privpg-'));
  try {
    return { state: await startPostgres({ stateDir, port: await freePort(), database }), stateDir };
  } catch (e) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw e;
  }
}

/** Fast shutdown (SIGINT to the postmaster), as an operator or a failover would. */
export async function stopPrivatePostgres(pg: PrivatePostgres): Promise<void> {
  const r = await stopPid(pg.state.pid, 'SIGINT', 20000);
  if (r === 'killed') console.warn('postgres needed SIGKILL');
}

/** postmaster.opts holds the postgres binary and the arguments of the last start, quoted: "arg" "arg" … */
function lastStartCommand(dataDir: string): { bin: string; args: string[] } {
  const text = fs.readFileSync(path.join(dataDir, 'postmaster.opts'), 'utf8').trim();
  const bin = text.split(' ')[0];
  const args = [...text.slice(bin.length).matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\(.)/g, '$1'));
  return { bin, args };
}

/** Starts the stopped Postgres again on the same data directory and port, as the data directory's owner; waits until it accepts queries. */
export async function restartPrivatePostgres(pg: PrivatePostgres, timeoutMs = 60000): Promise<void> {
  if (isAlive(pg.state.pid)) throw new Error(`postgres ${pg.state.pid} is still running`);
  const { bin, args } = lastStartCommand(pg.state.dataDir);
  const st = fs.statSync(pg.state.dataDir);
  const who = process.getuid?.() === 0 ? { uid: st.uid, gid: st.gid } : {};
  const pid = spawnDetached(bin, args, path.join(pg.state.baseDir, 'postgres.log'), { ...who, env: { ...process.env, LC_ALL: 'C' } });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = new Client({ connectionString: pg.state.adminUrl, connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      break;
    } catch (e) {
      await c.end().catch(() => undefined);
      if (!isAlive(pid)) throw new Error(`postgres exited on restart; see ${path.join(pg.state.baseDir, 'postgres.log')}`);
      if (Date.now() > deadline) throw new Error(`postgres did not accept queries within ${timeoutMs} ms after restart: ${(e as Error).message}`);
      await sleep(100);
    }
  }
  pg.state.pid = pid;
}

export async function releasePrivatePostgres(pg: PrivatePostgres | undefined): Promise<void> {
  if (!pg) return;
  if (isAlive(pg.state.pid)) await stopPid(pg.state.pid, 'SIGINT', 20000);
  removePostgresData(pg.state);
  fs.rmSync(pg.stateDir, { recursive: true, force: true });
}

/** Terminates every backend of `database` opened by the daemon (application_name banking-es); returns how many. */
export async function terminateBackends(admin: Client, database: string, applicationName = 'banking-es'): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    'SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()',
    [database, applicationName],
  );
  return rows[0].n;
}

export interface PrivateRedis { state: RedisState; logFile: string }

export async function startPrivateRedis(port?: number): Promise<PrivateRedis | undefined> {
  const logFile = path.join(os.tmpdir(), `banking-es-redis-${process.pid}-${Date.now()}.log`);
  const state = await startRedis({ port: port ?? (await freePort()), logFile });
  return state ? { state, logFile } : undefined;
}

export async function stopPrivateRedis(r: PrivateRedis): Promise<void> {
  await stopPid(r.state.pid, 'SIGTERM', 5000);
}

/** A new redis-server on the same port (empty: the test Redis keeps no data). */
export async function restartPrivateRedis(r: PrivateRedis): Promise<void> {
  const again = await startRedis({ port: r.state.port, logFile: r.logFile });
  if (!again) throw new Error('redis-server vanished from PATH');
  r.state = again;
}

export async function releasePrivateRedis(r: PrivateRedis | undefined): Promise<void> {
  if (!r) return;
  await stopPid(r.state.pid, 'SIGTERM', 5000);
  fs.rmSync(r.logFile, { force: true });
}

export interface MockKafka { pid: number; brokers: string; logFile: string }

/** A private librdkafka mock cluster (3 brokers) in its own process, like `banking-es stack up` starts. */
export async function startMockKafka(): Promise<MockKafka> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-mockkafka-'));
  const file = path.join(dir, 'brokers');
  const logFile = path.join(dir, 'kafka-mock.log');
  const pid = spawnDetached(process.execPath, [path.join(distDir(), 'dev', 'stack', 'kafka-mock-host.js'), file, '3'], logFile);
  const deadline = Date.now() + 20000;
  while (!fs.existsSync(file)) {
    if (!isAlive(pid)) throw new Error(`the mock Kafka host exited: ${fs.readFileSync(logFile, 'utf8')}`);
    if (Date.now() > deadline) { await stopPid(pid, 'SIGKILL', 1000); throw new Error('the mock Kafka cluster did not come up within 20 s'); }
    await sleep(50);
  }
  return { pid, brokers: fs.readFileSync(file, 'utf8').trim(), logFile };
}

export async function releaseMockKafka(k: MockKafka | undefined): Promise<void> {
  if (!k) return;
  if (isAlive(k.pid)) await stopPid(k.pid, 'SIGTERM', 5000);
  fs.rmSync(path.dirname(k.logFile), { recursive: true, force: true });
}
