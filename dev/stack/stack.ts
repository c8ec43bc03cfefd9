/**
 * The embedded local stack: real Postgres, librdkafka's mock Kafka cluster
 * in a long-lived child process, and Redis when redis-server is installed.
 * `up` writes two files under <dir>/stack/: state.json (PIDs, for `down`) and
 * config.json (connection settings that loadConfig() picks up). `down` stops
 * exactly those PIDs. The stack is ephemeral: the mock cluster keeps no data,
 * so Postgres starts empty on every `up` too, keeping stored offsets and
 * topics consistent.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { distDir, packageRoot } from '../../src/paths';
import { freePort } from './ports';
import { isAlive, spawnDetached, stopPid } from './process';
import { startPostgres, removePostgresData, type PgState } from './postgres';
import { startRedis, REDIS_INSTALL_HINT, type RedisState } from './redis';

export interface StackState {
  startedAt: string;
  dir: string;
  postgres: PgState;
  kafka: { pid: number; brokers: string };
  redis: RedisState | null;
}

export function stackPaths(dir: string) {
  const root = path.join(path.resolve(packageRoot(), dir), 'stack');
  return { root, state: path.join(root, 'state.json'), config: path.join(root, 'config.json'), logs: path.join(root, 'logs') };
}

export function readStack(dir: string): StackState | undefined {
  const p = stackPaths(dir).state;
  if (!fs.existsSync(p)) return undefined;
  return JSON.parse(fs.readFileSync(p, 'utf8')) as StackState;
}

export function stackPids(s: StackState): Array<{ name: string; pid: number }> {
  const list = [{ name: 'postgres', pid: s.postgres.pid }, { name: 'kafka-mock', pid: s.kafka.pid }];
  if (s.redis) list.push({ name: 'redis', pid: s.redis.pid });
  return list;
}

async function startKafkaMock(logs: string, root: string): Promise<{ pid: number; brokers: string }> {
  const brokersFile = path.join(root, 'kafka-brokers');
  fs.rmSync(brokersFile, { force: true });
  const entry = path.join(distDir(), 'dev', 'stack', 'kafka-mock-host.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} is missing; run npm run build first`);
  const pid = spawnDetached(process.execPath, [entry, brokersFile, '3'], path.join(logs, 'kafka-mock.log'));
  const deadline = Date.now() + 20000;
  while (!fs.existsSync(brokersFile)) {
    if (!isAlive(pid)) throw new Error(`the Kafka mock host exited; see ${path.join(logs, 'kafka-mock.log')}`);
    if (Date.now() > deadline) throw new Error('the Kafka mock cluster did not come up within 20 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid, brokers: fs.readFileSync(brokersFile, 'utf8').trim() };
}

export async function stackUp(dir: string, say: (line: string) => void = () => undefined): Promise<StackState> {
  const existing = readStack(dir);
  if (existing) {
    const alive = stackPids(existing).filter((p) => isAlive(p.pid));
    if (alive.length === stackPids(existing).length) {
      say('stack is already up');
      return existing;
    }
    say('stack state is stale (some processes are gone); restarting it');
    await stackDown(dir);
  }
  const paths = stackPaths(dir);
  fs.mkdirSync(paths.logs, { recursive: true });
  const started: Array<() => Promise<unknown>> = [];
  try {
    const postgres = await startPostgres({ stateDir: paths.root, port: await freePort(), database: 'banking' });
    started.push(() => stopPid(postgres.pid, 'SIGINT', 15000));
    say(`postgres   127.0.0.1:${postgres.port} (pid ${postgres.pid}, wal_level=logical)`);
    const kafka = await startKafkaMock(paths.logs, paths.root);
    started.push(() => stopPid(kafka.pid, 'SIGTERM', 5000));
    say(`kafka mock ${kafka.brokers} (pid ${kafka.pid})`);
    const redis = (await startRedis({ port: await freePort(), logFile: path.join(paths.logs, 'redis.log') })) ?? null;
    if (redis) say(`redis      127.0.0.1:${redis.port} (pid ${redis.pid})`);
    else say(REDIS_INSTALL_HINT);
    const state: StackState = { startedAt: new Date().toISOString(), dir: paths.root, postgres, kafka, redis };
    fs.writeFileSync(paths.state, JSON.stringify(state, null, 2), { mode: 0o600 });
    // the mock cluster does not answer CreateTopics, and creates a topic when asked for its metadata:
    // don't wait long for the first before the second
    const config = { kafka: { brokers: kafka.brokers, createTopics: true, adminTimeoutMs: 500 }, db: { url: postgres.url }, redis: { url: redis?.url ?? '' } };
    fs.writeFileSync(paths.config, JSON.stringify(config, null, 2), { mode: 0o600 });
    return state;
  } catch (e) {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
    throw e;
  }
}

export async function stackDown(dir: string, say: (line: string) => void = () => undefined): Promise<void> {
  const state = readStack(dir);
  const paths = stackPaths(dir);
  if (!state) {
    say('stack is not up');
    return;
  }
  // newest first: redis, kafka, then postgres (fast shutdown on SIGINT)
  if (state.redis) say(`redis: ${await stopPid(state.redis.pid, 'SIGTERM', 5000)}`);
  say(`kafka mock: ${await stopPid(state.kafka.pid, 'SIGTERM', 5000)}`);
  say(`postgres: ${await stopPid(state.postgres.pid, 'SIGINT', 20000)}`);
  removePostgresData(state.postgres);
  fs.rmSync(paths.state, { force: true });
  fs.rmSync(paths.config, { force: true });
}

export function stackStatus(dir: string): { up: boolean; state?: StackState; processes: Array<{ name: string; pid: number; alive: boolean }> } {
  const state = readStack(dir);
  if (!state) return { up: false, processes: [] };
  const processes = stackPids(state).map((p) => ({ ...p, alive: isAlive(p.pid) }));
  return { up: processes.every((p) => p.alive), state, processes };
}
