import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Arrivals } from '../../src/pipeline/arrivals';

test('a batch is as old as its oldest message, across consume chunks', () => {
  const a = new Arrivals();
  a.arrived(10, 3);
  a.arrived(20, 2);
  a.arrived(30, 4);
  assert.is(a.take(2), 10); // two of the first chunk
  assert.is(a.take(2), 10); // its last, then the first of the second
  assert.is(a.take(5), 20); // the rest of the second and all of the third
  assert.is(a.take(1), undefined); // nothing left
});

test('empty chunks count for nothing', () => {
  const a = new Arrivals();
  a.arrived(5, 0);
  a.arrived(7, 1);
  assert.is(a.take(1), 7);
  assert.is(a.take(1), undefined);
});

test('a long run keeps its queue short', () => {
  const a = new Arrivals();
  for (let i = 0; i < 10_000; i++) {
    a.arrived(i, 2);
    assert.is(a.take(2), i);
  }
  assert.ok((a as unknown as { chunks: unknown[] }).chunks.length <= 1025);
});

test.run();
