/**
 * A projection flush's input, packed as messages arrive: each consume call's
 * messages are sharded and copied into one buffer per shard at once, so no
 * node-rdkafka message object outlives the call that delivered it.
 *
 * Why: a flush holds ~20,000 events for 300–400 ms (gathered, then prepared
 * while the flush before it commits). Held as message objects, each with two
 * Buffers of its own, they survived every young-generation GC in between:
 * scavenges copied ~60 MB of live messages each time (~8 ms, about every
 * 160 ms), and promoted them for the old generation to mark. Packed, a flush
 * is a handful of large buffers.
 *
 * The packed copy stays on the main thread until the flush commits: a redo
 * (versions read fresh) runs the workers on it again, and a dead letter is
 * rebuilt from it. What the pack does not carry is kept on the side for the
 * rare message that needs it: a key that is not the account id verbatim (a
 * Debezium key struct, an upper-case UUID, none) and headers.
 */
import type { Message } from '../../kafka/consumer';
import { isLowerUuidAt } from '../../codec/hex';
import type { DeadMessage, Headers } from '../dead-letter';
import { Packer, unpackMessages, type PackedMessage } from '../pack';
import { shardOf } from '../../codec/hash';
import { accountOfEvent } from './project-shard';

/** What a dead letter needs beyond the packed bytes, for one message. */
interface Extra {
  shard: number;
  /** index of the message within its shard's pack */
  index: number;
  /** the original key, when the pack holds the account id instead */
  rawKey?: Buffer | null;
  headers?: Headers;
}

/** One consume call's messages, sharded and packed. */
export interface EventChunk {
  count: number;
  /** per shard: packed messages (account id as key, '' none), null when the shard got none */
  packs: Array<Uint8Array | null>;
  /** per shard: messages packed */
  counts: number[];
  /** per shard: the distinct accounts */
  accounts: Array<Set<string>>;
  /** partition -> next offset after this chunk */
  next: Map<number, number>;
  extras: Extra[];
}

/** A message rebuilt from the pack as it was consumed: a dead letter's source. */
export type SourceMessage = DeadMessage;

/** A rebuilt message in the shape it was consumed in, to pack it again (a poison flush narrowed down). */
export function asConsumed(topic: string, m: SourceMessage): Message {
  return { topic, partition: m.partition, offset: m.offset, key: m.key ?? undefined, value: m.value, headers: m.headers, size: m.value?.length ?? 0 } as Message;
}

export function packChunk(msgs: Message[], shards: number): EventChunk {
  const n = msgs.length;
  const shardOfMsg = new Int32Array(n);
  const verbatimKey = new Uint8Array(n);
  const accountOfMsg: string[] = new Array(n);
  const bytes = new Array<number>(shards).fill(0);
  const accounts: Array<Set<string>> = Array.from({ length: shards }, () => new Set());
  const extras: Extra[] = [];
  const counts = new Array<number>(shards).fill(0);
  const next = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const m = msgs[i];
    // the relays' key is the account id as written, lower case; anything else is read the general way
    const k = m.key;
    const verbatim = Buffer.isBuffer(k) && isLowerUuidAt(k, 0, k.length);
    const account = verbatim ? (k as Buffer).toString('latin1') : accountOfEvent(k, m.value);
    const s = account ? shardOf(account, shards) : 0;
    shardOfMsg[i] = s;
    verbatimKey[i] = verbatim ? 1 : 0;
    accountOfMsg[i] = account;
    if (account) accounts[s].add(account);
    // partition, offset, two lengths, the account as key (ASCII), the value
    bytes[s] += 20 + account.length + (m.value ? m.value.length : 0);
    const headers = m.headers as Headers | undefined;
    if (!verbatim || (headers && headers.length)) {
      const e: Extra = { shard: s, index: counts[s] };
      if (!verbatim) e.rawKey = m.key === undefined ? null : (m.key as Buffer | null);
      if (headers && headers.length) e.headers = headers;
      extras.push(e);
    }
    counts[s]++;
    if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
  }
  const packers = bytes.map((b) => (b ? new Packer(b) : null));
  for (let i = 0; i < n; i++) {
    const m = msgs[i];
    // a verbatim key is the account id's bytes already: copied as bytes, not encoded again from the string
    packers[shardOfMsg[i]]!.message(m.partition, m.offset, verbatimKey[i] ? (m.key as Buffer) : accountOfMsg[i] || null, m.value);
  }
  return { count: n, packs: packers.map((p) => (p ? p.finish() : null)), counts, accounts, next, extras };
}

/** Several chunks as one flush: per shard their packs end to end, in arrival order. */
export class FlushInput {
  readonly count: number;
  readonly packs: Uint8Array[];
  readonly accounts: Array<Set<string>>;
  readonly next = new Map<number, number>();
  /** `${shard}:${index}` -> extra */
  private readonly extras = new Map<string, Extra>();
  private readonly unpacked = new Map<number, PackedMessage[]>();

  constructor(chunks: EventChunk[], shards: number) {
    this.count = chunks.reduce((s, c) => s + c.count, 0);
    this.accounts = Array.from({ length: shards }, () => new Set());
    const base = new Array<number>(shards).fill(0);
    const parts: Uint8Array[][] = Array.from({ length: shards }, () => []);
    for (const c of chunks) {
      for (const e of c.extras) this.extras.set(`${e.shard}:${base[e.shard] + e.index}`, { ...e, index: base[e.shard] + e.index });
      for (let s = 0; s < shards; s++) {
        const p = c.packs[s];
        if (!p) continue;
        parts[s].push(p);
        for (const a of c.accounts[s]) this.accounts[s].add(a);
        base[s] += c.counts[s];
      }
      for (const [p, n] of c.next) if ((this.next.get(p) ?? -1) < n) this.next.set(p, n);
    }
    this.packs = parts.map((ps) => (ps.length === 1 ? ps[0] : Buffer.concat(ps)));
  }

  /** Every message of the flush as consumed, in (partition, offset) order: for narrowing a poison flush down. */
  all(): SourceMessage[] {
    const out: SourceMessage[] = [];
    this.packs.forEach((pack, shard) => {
      let index = 0;
      for (const _ of unpackMessages(pack)) out.push(this.source(shard, index++));
    });
    return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  }

  /** The message at `index` of shard `shard`'s pack, as consumed. */
  source(shard: number, index: number): SourceMessage {
    // unpacked once per shard on the first dead letter: a flood of them stays linear
    let msgs = this.unpacked.get(shard);
    if (!msgs) this.unpacked.set(shard, (msgs = [...unpackMessages(this.packs[shard])]));
    const m = msgs[index];
    if (!m) throw new RangeError(`no message ${index} in shard ${shard}`);
    const e = this.extras.get(`${shard}:${index}`);
    const key = e && e.rawKey !== undefined ? e.rawKey : m.key;
    return { key, value: m.value, headers: e?.headers ?? [], partition: m.partition, offset: m.offset };
  }
}
