/**
 * Postgres faults mid-stream (docs/reliability.md §2), on a private Postgres
 * so the shared test stack is never disturbed:
 *   1. the daemon's backends are killed with pg_terminate_backend every 150 ms
 *      for 5 s: batches are retried with backoff and outcomes resume on their own;
 *   2. Postgres is stopped (fast shutdown) for 8 s and started again on the same
 *      data directory and port: /readyz answers 503 with postgres ok:false while
 *      it is down (the daemon stays alive, /healthz 200), and 200 after.
 * At the end outcomes and event store match the oracle exactly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Client } from 'pg';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';
import { releasePrivatePostgres, restartPrivatePostgres, startPrivatePostgres, stopPrivatePostgres, terminateBackends, type PrivatePostgres } from '../helpers/faults';
import type { Daemon } from '../helpers/daemon';

let pg: PrivatePostgres | undefined;
let rig: Rig | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('postgres-faults').join(' ')}`);
  await rig?.release();
  await releasePrivatePostgres(pg);
});

interface Readyz { status: string; checks: Record<string, { ok: boolean; detail?: string }> }

async function readyz(d: Daemon): Promise<{ status: number; body: Readyz }> {
  const r = await d.get('/readyz');
  return { status: r.status, body: JSON.parse(r.body) as Readyz };
}

/** Polls `probe` until it returns a value; fails at once, with the daemon's last output, when the daemon died. */
async function until<T>(what: string, timeoutMs: number, d: Daemon, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!d.alive) throw new Error(`${what}: the daemon died (${d.child.exitCode ?? d.child.signalCode}); its last output:\n${d.output().split('\n').filter((l) => !l.startsWith('{')).slice(-14).join('\n')}`);
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const oracle = new CommandOracle({ accounts: 300, seed: 77 });
let stop = false;
let produced: Promise<number> | undefined;

/** The running daemon, or a new one when the previous test's died (reported there). */
async function daemon(r: Rig): Promise<Daemon> {
  const d = r.daemons[r.daemons.length - 1];
  if (d?.alive) return d;
  console.log('starting a new daemon: the previous one died');
  return r.start();
}

test('pg_terminate_backend every 150 ms for 5 s: batches are retried, outcomes resume on their own', async () => {
  const t0 = Date.now();
  pg = await startPrivatePostgres('banking');
  rig = await Rig.create({ name: 'pgfaults', dbUrl: pg.state.url, env: { DB_POOL_SIZE: '4' } });
  const r = rig;
  await r.tap(oracle);
  const d = await r.start();
  console.log(`private postgres and daemon up in ${Date.now() - t0} ms`);
  produced = r.stream(oracle, { stop: () => stop, chunk: 100, pauseMs: 100, maxAhead: 30000 });
  await until('first outcomes', 30000, d, async () => (oracle.received > 1000 ? true : undefined));

  const admin = new Client({ connectionString: pg.state.adminUrl });
  admin.on('error', () => undefined);
  await admin.connect();
  let terminated = 0;
  const killUntil = Date.now() + 5000;
  try {
    while (Date.now() < killUntil && d.alive) {
      terminated += await terminateBackends(admin, 'banking');
      await sleep(150);
    }
  } finally {
    await admin.end();
  }
  const afterKills = oracle.received;
  const resumeMs = await until('outcomes resume after the backend kills', 30000, d, async () => (oracle.received > afterKills + 500 ? Date.now() : undefined)) - killUntil;
  console.log(`terminated ${terminated} backends over 5 s; outcomes resumed ${resumeMs} ms later`);
  assert.ok(terminated >= 5, `only ${terminated} backends were terminated`);
});

test('Postgres stopped for 8 s and restarted: /readyz 503 then 200, everything exactly once', async () => {
  const r = rig!;
  const d = await daemon(r);
  await until('outcomes flow', 30000, d, async () => (oracle.received > 0 && oracle.outstanding < 2000 ? true : undefined));
  await stopPrivatePostgres(pg!);
  const downAt = Date.now();
  const down = await until('/readyz 503 with postgres ok:false', 15000, d, async () => {
    const res = await readyz(d);
    return res.status === 503 && res.body.checks.postgres?.ok === false ? res : undefined;
  });
  assert.is(down.body.status, 'not ready');
  assert.ok(down.body.checks.kafka?.ok, 'kafka still ok');
  assert.not.ok(JSON.stringify(down.body).includes(new URL(pg!.state.url).password), 'no password in /readyz');
  const notReadyAfterMs = Date.now() - downAt;
  while (Date.now() - downAt < 8000 && d.alive) await sleep(100);
  assert.ok(d.alive, `the daemon died while Postgres was down:\n${d.output().split('\n').filter((l) => !l.startsWith('{')).slice(-14).join('\n')}`);
  assert.is((await d.get('/healthz')).status, 200);
  const receivedWhileDown = oracle.received;
  await restartPrivatePostgres(pg!);
  const upAt = Date.now();
  await until('/readyz 200 again', 30000, d, async () => ((await readyz(d)).status === 200 ? true : undefined));
  const readyAfterMs = Date.now() - upAt;
  await until('outcomes resume after the restart', 30000, d, async () => (oracle.received > receivedWhileDown + 500 ? true : undefined));
  const resumedAfterMs = Date.now() - upAt;
  console.log(`postgres down ${upAt - downAt} ms: /readyz 503 after ${notReadyAfterMs} ms, 200 ${readyAfterMs} ms after restart, outcomes resumed ${resumedAfterMs} ms after restart`);
  await sleep(2000);
});

test('afterwards: outcomes and event store match the oracle exactly', async () => {
  const r = rig!;
  stop = true;
  const sent = await produced!;
  const d = await daemon(r);
  const drainMs = await r.complete(oracle, 60000);
  await sleep(300);
  const retries = (await d.get('/metrics')).body.split('\n').filter((l) => l.startsWith('banking_es_retries_total{component="commands"'));
  console.log(`${sent} sent; drained in ${drainMs} ms; ${oracle.summary()}; ${retries.join(', ')}; ${r.daemons.length} daemon(s) used`);
  assert.equal(oracle.mismatches, [], `${oracle.mismatchCount} outcome mismatches`);
  const check = new Client({ connectionString: pg!.state.url });
  await check.connect();
  try {
    assert.equal(await oracle.verifyStore(check), [], 'event store agrees with the oracle');
  } finally {
    await check.end();
  }
  const errors = r.errorLines();
  if (r.daemons.length > 1) console.log(`${r.daemons.length - 1} daemon(s) died on the way (see the first test)`);
  console.log(`${errors.length} error-level log lines${errors.length ? `, e.g. ${errors[0].slice(0, 300)}` : ''}`);
  const exit = await d.stop();
  assert.is(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}`);
  failed = false;
});

test.run();
