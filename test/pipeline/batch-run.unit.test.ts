/**
 * The state machine one batch goes through on its way to a commit
 * (src/pipeline/batch-run.ts), driven without Kafka or Postgres: every path
 * the runner can take, and the steps it must refuse.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BatchRun, type Attempt, type BatchState } from '../../src/pipeline/batch-run';

const committed: Attempt = { kind: 'committed' };
const redo: Attempt = { kind: 'redo' };
const gated: Attempt = { kind: 'gated' };
const failed = (errorClass: 'transient' | 'conflict' | 'poison' | 'fatal' | 'unknown'): Attempt => ({ kind: 'failed', errorClass });

test('a batch prepared ahead that commits as prepared is clean', () => {
  const r = new BatchRun(10, true, 3);
  assert.is(r.state, 'commit');
  assert.is(r.attempted(committed, false), 'done');
  assert.ok(r.clean);
  assert.not.ok(r.careful);
});

test('a batch without a preparation in hand prepares first, and is never clean', () => {
  const r = new BatchRun(10, false, 3);
  assert.is(r.state, 'prepare');
  r.prepared();
  assert.is(r.attempted(committed, false), 'done');
  assert.not.ok(r.clean);
});

test('a redo prepares again carefully, and careful never turns back', () => {
  const r = new BatchRun(10, true, 3);
  assert.is(r.attempted(redo, false), 'prepare');
  assert.ok(r.careful);
  r.prepared();
  assert.is(r.attempted(failed('transient'), false), 'wait');
  assert.is(r.waitFor, 'backoff');
  assert.is(r.errorClass, 'transient');
  r.waited();
  assert.ok(r.careful, 'still careful after a backoff');
  r.prepared();
  assert.is(r.attempted(committed, false), 'done');
  assert.not.ok(r.clean, 'redone: not clean');
});

test('redos past maxRedos count as failed attempts (class conflict), each backed off, for the rest of the run', () => {
  const r = new BatchRun(10, true, 2);
  assert.is(r.attempted(redo, false), 'prepare');
  r.prepared();
  assert.is(r.attempted(redo, false), 'prepare');
  r.prepared();
  assert.is(r.attempted(redo, false), 'wait');
  assert.is(r.waitFor, 'backoff');
  assert.is(r.errorClass, 'conflict');
  r.waited();
  assert.ok(r.careful, 'prepared again carefully');
  r.prepared();
  assert.is(r.attempted(redo, false), 'wait', 'no free redo after a backoff: a conflict that survives careful redos is a fault');
  r.waited();
  r.prepared();
  assert.is(r.attempted(committed, false), 'done');
});

test('a gate is waited out without counting as a failure, then the batch is prepared carefully', () => {
  const r = new BatchRun(10, true, 1);
  assert.is(r.attempted(gated, false), 'wait');
  assert.is(r.waitFor, 'gate');
  assert.is(r.gatesInARow, 1);
  assert.is(r.errorClass, null, 'no failure to report');
  r.waited();
  r.prepared();
  assert.is(r.attempted(gated, false), 'wait');
  assert.is(r.gatesInARow, 2, 'gates in a row lengthen the wait');
  r.waited();
  assert.ok(r.careful);
  r.prepared();
  assert.is(r.attempted(committed, false), 'done');
});

test('poison in a batch of many is isolated; a lone poison message goes through the canary', () => {
  const many = new BatchRun(5, true, 3);
  assert.is(many.attempted(failed('poison'), false), 'isolate');
  many.finished('done');
  assert.is(many.state, 'done');
  assert.not.ok(many.clean);

  const lone = new BatchRun(1, false, 3);
  lone.prepared();
  assert.is(lone.attempted(failed('poison'), false), 'canary');
  lone.canary(true);
  assert.is(lone.state, 'prepare', 'tried once more right after the passing canary');
  lone.prepared();
  assert.is(lone.attempted(failed('poison'), false), 'dead-letter');
  lone.finished('done');
  assert.is(lone.state, 'done');
});

test('a lone message that commits right after a passing canary is not dead-lettered (the fault was passing)', () => {
  const r = new BatchRun(1, true, 3);
  r.attempted(failed('poison'), false);
  r.canary(true);
  r.prepared();
  assert.is(r.attempted(committed, false), 'done');
});

test('after a backoff the canary is run again before a dead letter', () => {
  const r = new BatchRun(1, true, 3);
  r.attempted(failed('poison'), false);
  r.canary(true);
  r.prepared();
  assert.is(r.attempted(failed('transient'), false), 'wait');
  r.waited();
  r.prepared();
  assert.is(r.attempted(failed('poison'), false), 'canary', 'the earlier canary no longer vouches');
});

test('a lone message whose canary fails too is not dead-lettered: the batch backs off as unknown', () => {
  const r = new BatchRun(1, true, 3);
  r.attempted(failed('poison'), false);
  r.canary(false);
  assert.is(r.state, 'wait');
  assert.is(r.waitFor, 'backoff');
  assert.is(r.errorClass, 'unknown');
  r.waited();
  assert.is(r.state, 'prepare');
});

test('a fatal error halts; the halt ends abandoned', () => {
  const r = new BatchRun(3, true, 3);
  assert.is(r.attempted(failed('fatal'), false), 'halted');
  assert.is(r.errorClass, 'fatal');
  r.finished('abandoned');
  assert.is(r.state, 'abandoned');
});

test('a failure while preparing is acted on like one while committing', () => {
  const r = new BatchRun(3, false, 3);
  assert.is(r.attempted(failed('transient'), false), 'wait');
  r.waited();
  assert.is(r.attempted(failed('poison'), false), 'isolate');
});

test('at shutdown a gated batch is abandoned past three attempts too: a rebuild never holds a stop', () => {
  const r = new BatchRun(3, true, 3);
  const seen: BatchState[] = [];
  for (let i = 0; i < 4; i++) {
    seen.push(r.attempted(gated, true));
    if (r.state === 'wait') { r.waited(); r.prepared(); }
  }
  assert.equal(seen, ['wait', 'wait', 'wait', 'abandoned']);
});

test('at shutdown redos past maxRedos are failures, so they end abandoned as well', () => {
  const r = new BatchRun(3, true, 1);
  const seen: BatchState[] = [];
  for (let i = 0; i < 5 && r.state !== 'abandoned'; i++) {
    seen.push(r.attempted(redo, true));
    if (r.state === 'wait') r.waited();
    if (r.state === 'prepare') r.prepared();
  }
  assert.equal(seen, ['prepare', 'wait', 'wait', 'abandoned']);
});

test('at shutdown a fatal error abandons at once, and any failure past three attempts does', () => {
  const fatal = new BatchRun(3, true, 3);
  assert.is(fatal.attempted(failed('fatal'), true), 'abandoned');

  const r = new BatchRun(3, true, 3);
  const seen: BatchState[] = [];
  for (let i = 0; i < 4; i++) {
    seen.push(r.attempted(failed('transient'), true));
    if (r.state === 'wait') { r.waited(); r.prepared(); }
  }
  assert.equal(seen, ['wait', 'wait', 'wait', 'abandoned']);
});

test('an earlier batch abandoned abandons this one, but never undoes a commit', () => {
  const r = new BatchRun(3, true, 3);
  r.abandon();
  assert.is(r.state, 'abandoned');
  const d = new BatchRun(3, true, 3);
  d.attempted(committed, false);
  d.abandon();
  assert.is(d.state, 'done');
});

test('at shutdown a poison batch is not narrowed down: it is abandoned, and redone after the restart', () => {
  const many = new BatchRun(8, true, 3);
  assert.is(many.attempted(failed('poison'), true), 'abandoned');
  const lone = new BatchRun(1, true, 3);
  assert.is(lone.attempted(failed('poison'), true), 'abandoned');
});

test('a halt ends only abandoned, never done', () => {
  const r = new BatchRun(3, true, 3);
  r.attempted(failed('fatal'), false);
  assert.throws(() => r.finished('done'), /halted cannot take this step/);
  r.finished('abandoned');
  assert.is(r.state, 'abandoned');
});

test('steps out of turn are refused, and final states are final', () => {
  const r = new BatchRun(3, true, 3);
  assert.throws(() => r.prepared(), /commit cannot take this step/);
  assert.throws(() => r.waited(), /expected wait/);
  assert.throws(() => r.canary(true), /expected canary/);
  assert.throws(() => r.finished('done'), /expected isolate or dead-letter\)/);
  r.attempted(committed, false);
  assert.throws(() => r.attempted(committed, false), /done cannot take this step/);
  const p = new BatchRun(3, false, 3);
  assert.throws(() => p.attempted(committed, false), /prepare cannot take this step/, 'nothing commits without a preparation');
});

test.run();
