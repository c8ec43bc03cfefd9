/**
 * Exit behaviour of `banking-es start`, tested in a child process against the
 * runner's stack: SIGTERM/SIGINT after start-up and during it end with a
 * clean exit 0; invalid configuration exits 2 before anything starts.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ChildProcess } from 'node:child_process';
import { createTestDatabase, spawnCli, testStack, waitForExit, waitForOutput, type TestDb } from './helpers/stack';

type Cli = ReturnType<typeof spawnCli>;

let db: TestDb | undefined;
const children: ChildProcess[] = [];

function startDaemon(extra: Record<string, string> = {}): Cli {
  const child = spawnCli(['start'], {
    BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR,
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
    DATABASE_URL: db!.url,
    SHUTDOWN_TIMEOUT_MS: '10000',
    ...extra,
  });
  children.push(child);
  return child;
}

/** The JSON log lines the daemon printed so far (other output ignored). */
function logLines(child: Cli): Array<{ msg?: string; level?: number; code?: number }> {
  return child.output().split('\n').flatMap((l) => {
    try {
      const v = JSON.parse(l) as unknown;
      return v && typeof v === 'object' ? [v as { msg?: string }] : [];
    } catch {
      return [];
    }
  });
}

const hasMsg = (msg: string) => (out: string) => out.split('\n').some((l) => l.includes(`"msg":"${msg}"`));

const STARTUP_MS = 60000; // first start applies the migrations; a noisy 2-core box is slow
const EXIT_MS = 10000;

async function stopWith(child: Cli, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const sent = Date.now();
  child.kill(signal);
  const r = await waitForExit(child, EXIT_MS + 5000);
  return { ...r, ms: Date.now() - sent };
}

const signals = suite('banking-es start: signals');

signals.before(async () => {
  testStack(); // fails clearly outside the runner
  db = await createTestDatabase('signals');
});

signals.after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => waitForExit(c, 10000).catch(() => undefined)));
  await db?.drop().catch((e: unknown) => console.error('could not drop test database', e));
});

signals('SIGTERM after start-up: exit 0 within 10 s, "banking-es stopped" logged', async () => {
  const child = startDaemon();
  await waitForOutput(child, hasMsg('banking-es started'), STARTUP_MS);
  const r = await stopWith(child, 'SIGTERM');
  assert.is(r.signal, null, child.output());
  assert.is(r.code, 0, child.output());
  assert.ok(r.ms < EXIT_MS, `took ${r.ms} ms to exit`);
  const lines = logLines(child);
  const stopped = lines.find((l) => l.msg === 'banking-es stopped');
  assert.ok(stopped, `no "banking-es stopped" line:\n${child.output()}`);
  assert.is(stopped!.code, 0);
  assert.ok(lines.some((l) => l.msg === 'signal received: shutting down gracefully'), child.output());
  assert.not.ok(lines.some((l) => (l.level ?? 0) >= 50), `errors were logged:\n${child.output()}`);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  signals(`${signal} during start-up: exit 0, stopped cleanly`, async () => {
    const child = startDaemon();
    await waitForOutput(child, hasMsg('configuration loaded'), STARTUP_MS);
    const r = await stopWith(child, signal);
    assert.is(r.signal, null, child.output());
    assert.is(r.code, 0, child.output());
    assert.ok(r.ms < EXIT_MS, `took ${r.ms} ms to exit`);
    const msgs = logLines(child).map((l) => l.msg);
    // the signal may land before or after start-up finished; either way the stop is graceful
    assert.ok(msgs.includes('stopped during start-up') || msgs.includes('banking-es stopped'), child.output());
    assert.not.ok(msgs.includes('start-up failed'), child.output());
  });
}

signals('invalid configuration: exit 2 quickly, naming the key', async () => {
  const child = startDaemon({ PIPELINE_BATCH_SIZE: 'zero' });
  const started = Date.now();
  const r = await waitForExit(child, 15000);
  assert.is(r.code, 2, child.output());
  assert.ok(Date.now() - started < 15000);
  assert.match(child.output(), /banking-es: invalid configuration: pipeline\.batchSize: /);
  assert.not.ok(hasMsg('configuration loaded')(child.output()), 'nothing starts with a bad config');
});

signals.run();
