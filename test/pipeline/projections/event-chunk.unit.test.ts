import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Message } from '../../../src/kafka/consumer';
import { FlushInput, packChunk } from '../../../src/pipeline/projections/event-chunk';
import { accountOfEvent } from '../../../src/pipeline/projections/project-shard';
import { shardOf } from '../../../src/codec/hash';
import { unpackMessages } from '../../../src/pipeline/pack';
import { BatchSink } from '../../../src/pipeline/batch-sink';

const SHARDS = 4;
const acct = (i: number) => `${String(i).padStart(8, '0')}-8a5d-4c55-9a8e-5a7f4f0f7a11`;

function msg(partition: number, offset: number, key: Buffer | null, value: string | null, headers?: Array<Record<string, Buffer>>): Message {
  const m = { topic: 'bank.events', partition, offset, key, value: value === null ? null : Buffer.from(value), size: value?.length ?? 0 } as Message;
  if (headers) m.headers = headers;
  return m;
}

/** A mixed consume call: verbatim keys, an upper-case key, a Debezium key struct, no key, a null value, headers. */
function mixed(partition: number, from: number): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < 40; i++) out.push(msg(partition, from + i, Buffer.from(acct(i % 9)), `{"n":${from + i}}`));
  out.push(msg(partition, from + 40, Buffer.from(acct(3).toUpperCase()), '{"upper":1}'));
  out.push(msg(partition, from + 41, Buffer.from(JSON.stringify({ payload: { account_id: acct(5) } })), '{"struct":1}'));
  out.push(msg(partition, from + 42, null, 'not json at all'));
  out.push(msg(partition, from + 43, Buffer.from(acct(7)), null));
  out.push(msg(partition, from + 44, Buffer.from(acct(2)), '{"h":1}', [{ 'x-case': Buffer.from('h') }]));
  return out;
}

test('packChunk: every message lands in its account\'s shard, in order, with the account as key', () => {
  const msgs = [...mixed(0, 100), ...mixed(2, 7)];
  const c = packChunk(msgs, SHARDS);
  assert.is(c.count, msgs.length);
  const seen: string[] = [];
  for (let s = 0; s < SHARDS; s++) {
    const want = msgs.filter((m) => { const a = accountOfEvent(m.key, m.value); return (a ? shardOf(a, SHARDS) : 0) === s; });
    const got = c.packs[s] ? [...unpackMessages(c.packs[s]!)] : [];
    assert.is(got.length, want.length, `shard ${s}`);
    assert.is(c.counts[s], want.length);
    got.forEach((g, i) => {
      const a = accountOfEvent(want[i].key, want[i].value);
      assert.is(g.partition, want[i].partition);
      assert.is(g.offset, want[i].offset);
      assert.equal(g.key?.toString() ?? '', a);
      assert.equal(g.value, want[i].value);
      seen.push(`${g.partition}:${g.offset}`);
    });
    assert.equal([...c.accounts[s]].sort(), [...new Set(want.map((m) => accountOfEvent(m.key, m.value)).filter(Boolean))].sort());
  }
  assert.is(seen.length, msgs.length);
  assert.equal([...c.next].sort(), [[0, 145], [2, 52]]);
  // only the messages whose key is not the account id verbatim, or that carry headers, keep anything on the side
  assert.is(c.extras.length, 2 * 4);
});

test('FlushInput: chunks end to end per shard, and every message rebuilt as consumed', () => {
  const a = mixed(0, 0), b = mixed(1, 500), c = mixed(0, 45);
  const input = new FlushInput([packChunk(a, SHARDS), packChunk(b, SHARDS), packChunk(c, SHARDS)], SHARDS);
  const all = [...a, ...b, ...c];
  assert.is(input.count, all.length);
  assert.equal([...input.next].sort(), [[0, 90], [1, 545]]);
  for (let s = 0; s < SHARDS; s++) {
    const want = all.filter((m) => { const x = accountOfEvent(m.key, m.value); return (x ? shardOf(x, SHARDS) : 0) === s; });
    want.forEach((m, i) => {
      const got = input.source(s, i);
      assert.is(got.partition, m.partition);
      assert.is(got.offset, m.offset);
      assert.equal(got.key === null ? null : Buffer.from(got.key), m.key, `shard ${s} message ${i}: the original key`);
      assert.equal(got.value, m.value);
      assert.equal(got.headers, m.headers ?? []);
    });
    assert.throws(() => input.source(s, want.length));
  }
});

test('BatchSink: weighted items make batches of at most maxSize, or one heavy item alone, in order', async () => {
  const batches: number[][] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => { release = r; });
  const sink = new BatchSink<number>(5, 100, async (b) => { batches.push(b); if (batches.length === 1) await gate; }, (x) => x);
  sink.push(10); // the first batch, held until released while the rest queue up
  await new Promise((r) => setTimeout(r, 20));
  for (const w of [30, 40, 20, 150, 5, 60, 50]) sink.push(w);
  await new Promise((r) => setTimeout(r, 20));
  release();
  await sink.idle(5);
  sink.close();
  assert.equal(batches, [[10], [30, 40, 20], [150], [5, 60], [50]]);
});

test.run();
