/**
 * A dead letter's headers (src/pipeline/dead-letter.ts): the producer's own
 * headers are kept, but one named like ours (`error.*`, `source.*`) is
 * renamed `original.<name>`, so nobody reads a forged error.code or
 * source.offset as the daemon's.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renameReserved } from '../../src/pipeline/dead-letter';

test('reserved header names are kept as original.<name>; others as they were', () => {
  const bytes = Buffer.from([0, 0xff, 0x80]);
  assert.equal(renameReserved({ 'error.code': 'FORGED', 'source.offset': '0', 'x-trace': bytes, errorish: 'x' }),
    { 'original.error.code': 'FORGED', 'original.source.offset': '0', 'x-trace': bytes, errorish: 'x' });
});

test.run();
