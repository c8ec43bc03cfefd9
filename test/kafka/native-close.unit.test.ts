/**
 * closeWithin (src/kafka/native-close.ts): a native close that overruns its
 * bound is remembered until it finishes, so the daemon knows process.exit()
 * would wait for it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeWithin, closesStillRunning } from '../../src/kafka/native-close';

test('a close that finishes in time is not remembered', async () => {
  assert.is(await closeWithin('quick', 200, (done) => setTimeout(done, 5)), true);
  assert.equal(closesStillRunning(), []);
});

test('a close that overruns is remembered until it finishes', async () => {
  let finish: () => void = () => undefined;
  assert.is(await closeWithin('stuck', 30, (done) => { finish = done; }), false);
  assert.equal(closesStillRunning(), ['stuck']);
  finish();
  assert.equal(closesStillRunning(), []);
});

test.run();
