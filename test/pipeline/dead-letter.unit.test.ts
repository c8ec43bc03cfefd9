/**
 * A dead letter's headers (src/pipeline/dead-letter.ts): the producer's own
 * headers are kept, but one named like ours (`error.*`, `source.*`) is
 * renamed `original.<name>`, so nobody reads a forged error.code or
 * source.offset as the daemon's.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeadLettered, renameReserved } from '../../src/pipeline/dead-letter';

test('reserved header names are kept as original.<name>; others as they were', () => {
  const bytes = Buffer.from([0, 0xff, 0x80]);
  assert.equal(renameReserved({ 'error.code': 'FORGED', 'source.offset': '0', 'x-trace': bytes, errorish: 'x' }),
    { 'original.error.code': 'FORGED', 'original.source.offset': '0', 'x-trace': bytes, errorish: 'x' });
});

test('DeadLettered: forgotten once committed past, or when the partition is no longer owned', () => {
  const d = new DeadLettered();
  d.add(0, 5); d.add(0, 9); d.add(1, 3); d.add(2, 7);
  d.keepAbove(new Map([[0, 6]])); // a commit on partition 0; 1 and 2 have none yet: kept
  assert.equal([d.has(0, 5), d.has(0, 9), d.has(1, 3), d.has(2, 7)], [false, true, true, true]);
  d.keepAbove(new Map([[0, 6], [1, 0]]), [0, 1]); // assigned 0 and 1 only
  assert.equal([d.has(0, 9), d.has(1, 3), d.has(2, 7)], [true, true, false]);
});

test.run();
