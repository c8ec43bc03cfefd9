/**
 * The release stack and two-phase signal handling: closers run newest-first
 * within a budget, a failing or hanging closer costs exit code 1 but never
 * blocks the rest, and a second signal exits at once with 130.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Writable } from 'node:stream';
import { createLogger } from '../src/logger';
import { Lifecycle, ShutdownRequested } from '../src/lifecycle';

const sink = new Writable({ write(_c, _e, cb) { cb(); } });
const log = createLogger({ level: 'silent', destination: sink });

/**
 * installSignalHandlers() adds process listeners that are never removed, so
 * each signal test removes the ones it added: a later process.emit() must not
 * reach an earlier test's Lifecycle.
 */
async function withSignalHandlers(fn: () => Promise<void> | void): Promise<void> {
  const before = { SIGTERM: process.listeners('SIGTERM'), SIGINT: process.listeners('SIGINT') };
  try {
    await fn();
  } finally {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      for (const l of process.listeners(sig)) if (!before[sig].includes(l)) process.removeListener(sig, l);
    }
  }
}

function neverExit(calls: number[]) {
  return (code: number) => { calls.push(code); };
}

const closers = suite('lifecycle closers');

closers('closers run newest-first and a clean shutdown is code 0', async () => {
  const lc = new Lifecycle(log, 5000, neverExit([]));
  const order: string[] = [];
  lc.defer('first', () => { order.push('first'); });
  lc.defer('second', async () => { await new Promise((r) => setTimeout(r, 10)); order.push('second'); });
  lc.defer('third', () => { order.push('third'); });
  assert.is(await lc.shutdown(), 0);
  assert.equal(order, ['third', 'second', 'first']);
});

closers('shutdown is idempotent: a second call returns the same result and runs nothing again', async () => {
  const lc = new Lifecycle(log, 5000, neverExit([]));
  let runs = 0;
  lc.defer('once', () => { runs++; });
  const a = lc.shutdown();
  const b = lc.shutdown();
  assert.is(a, b);
  assert.is(await a, 0);
  assert.is(await lc.shutdown(), 0);
  assert.is(runs, 1);
  assert.ok(lc.isStopping);
});

closers('a closer that throws (or rejects) does not stop the others; the code is 1', async () => {
  const lc = new Lifecycle(log, 5000, neverExit([]));
  const order: string[] = [];
  lc.defer('a', () => { order.push('a'); });
  lc.defer('throws', () => { order.push('throws'); throw new Error('boom'); });
  lc.defer('rejects', async () => { order.push('rejects'); throw new Error('async boom'); });
  lc.defer('d', () => { order.push('d'); });
  assert.is(await lc.shutdown(), 1);
  assert.equal(order, ['d', 'rejects', 'throws', 'a']);
});

closers('a hanging closer is cut off at the budget; the code is 1', async () => {
  const budgetMs = 300;
  const lc = new Lifecycle(log, budgetMs, neverExit([]));
  const order: string[] = [];
  lc.defer('older', () => { order.push('older'); });
  lc.defer('hangs', () => { order.push('hangs'); return new Promise<void>(() => undefined); });
  lc.defer('newest', () => { order.push('newest'); });
  const started = Date.now();
  const code = await Promise.race([lc.shutdown(), new Promise<string>((r) => setTimeout(() => r('still waiting'), 10000).unref())]);
  const elapsed = Date.now() - started;
  assert.is(code, 1);
  assert.ok(elapsed >= budgetMs - 50, `cut off too early (${elapsed} ms)`);
  assert.ok(elapsed < 5000, `not cut off at the budget (${elapsed} ms)`);
  assert.equal(order.slice(0, 2), ['newest', 'hangs']);
});

closers.run();

const signals = suite('lifecycle signals');

signals('checkpoint() passes before a signal and throws ShutdownRequested after one', () =>
  withSignalHandlers(async () => {
    const exits: number[] = [];
    const lc = new Lifecycle(log, 5000, neverExit(exits));
    let stopCallbacks = 0;
    lc.onStop(() => { stopCallbacks++; });
    lc.installSignalHandlers();
    lc.checkpoint();
    assert.not.ok(lc.isStopping);
    process.emit('SIGTERM', 'SIGTERM');
    assert.throws(() => lc.checkpoint(), (e: unknown) => e instanceof ShutdownRequested);
    assert.ok(lc.isStopping);
    assert.is(stopCallbacks, 1);
    const resolved = await Promise.race([lc.stopSignal.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
    assert.ok(resolved, 'stopSignal resolves on the first signal');
    assert.equal(exits, [], 'the first signal does not exit');
  }));

signals('SIGINT starts a graceful shutdown too', () =>
  withSignalHandlers(() => {
    const exits: number[] = [];
    const lc = new Lifecycle(log, 5000, neverExit(exits));
    lc.installSignalHandlers();
    process.emit('SIGINT', 'SIGINT');
    assert.throws(() => lc.checkpoint(), (e: unknown) => e instanceof ShutdownRequested);
    assert.equal(exits, []);
  }));

signals('a second signal calls exit(130) at once', () =>
  withSignalHandlers(() => {
    const exits: number[] = [];
    const lc = new Lifecycle(log, 5000, neverExit(exits));
    lc.installSignalHandlers();
    process.emit('SIGTERM', 'SIGTERM');
    assert.equal(exits, []);
    process.emit('SIGINT', 'SIGINT');
    assert.equal(exits, [130]);
  }));

signals('a second signal during a hanging shutdown still exits 130', () =>
  withSignalHandlers(async () => {
    const exits: number[] = [];
    const lc = new Lifecycle(log, 1500, neverExit(exits));
    lc.defer('hangs', () => new Promise<void>(() => undefined));
    lc.installSignalHandlers();
    process.emit('SIGTERM', 'SIGTERM');
    const stopping = lc.shutdown();
    await new Promise((r) => setTimeout(r, 20));
    process.emit('SIGTERM', 'SIGTERM');
    assert.equal(exits, [130]);
    assert.is(await stopping, 1); // the budget still ends the graceful path
  }));

signals.run();
