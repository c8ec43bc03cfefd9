/**
 * What one shard's slice of a batch decided now (new outcomes, not answers
 * repeated from earlier ones), handed from the worker to the main thread. The
 * next batch is decided before this one commits, and a re-sent command in it
 * finds its original here (resent-commands.ts).
 *
 * Packed, not a Map of outcome objects: structured clone of such a Map cost
 * the hand-off ~2.5 µs per command, most of it deserializing on the main
 * thread (bench/hand-off-clone-micro.ts), for lookups a batch makes only for
 * the few pairs that look re-sent. Each outcome is one packed record (key
 * outcomeKey, value its JSON); its pair's hash and where it starts sit in two
 * parallel arrays. The main thread indexes the hashes (DecidedLookup) and
 * reads only a record whose hash matches.
 */
import { jsonString } from '../../codec/envelope';
import { PairHash } from '../../codec/hash';
import { Packer, forEachRecord, recordAt } from '../pack';
import type { KnownOutcome, TransferDebit } from './decide-shard';

export interface DecidedOutcomes {
  /** PairHash.first of each record's (account, command) with the task's hashSeed, in record order */
  hashes: Uint32Array;
  /** where each record starts in `records` */
  offsets: Uint32Array;
  /** packed records (pack.ts): key outcomeKey(account, command), value the KnownOutcome's JSON (outcomeValue) */
  records: Uint8Array;
}

/** Collects a slice's decided outcomes in the worker; one per slice. */
export class DecidedWriter {
  private readonly packer = new Packer(16 * 1024);
  private hashes: Uint32Array = new Uint32Array(1024);
  private offsets: Uint32Array = new Uint32Array(1024);

  /** `seed`: ShardTask.hashSeed, the main thread's, so DecidedLookup finds the pairs by their hashes */
  constructor(private readonly seed: number) {}

  /** `key`: outcomeKey(accountId, commandId), which the decider has made already */
  add(accountId: string, commandId: string, key: string, outcome: KnownOutcome): void {
    const n = this.packer.count;
    if (n === this.hashes.length) {
      this.hashes = grown(this.hashes);
      this.offsets = grown(this.offsets);
    }
    this.hashes[n] = PairHash.first(accountId, commandId, this.seed);
    this.offsets[n] = this.packer.size;
    this.packer.record(key, outcomeValue(outcome));
  }

  finish(): DecidedOutcomes {
    // slice, not subarray: transferred, they keep only the used entries, each in a buffer of its own
    const n = this.packer.count;
    return { hashes: this.hashes.slice(0, n), offsets: this.offsets.slice(0, n), records: this.packer.finish() };
  }
}

function grown(a: Uint32Array): Uint32Array {
  const b = new Uint32Array(a.length * 2);
  b.set(a);
  return b;
}

/*
 * Every field outcomeValue writes, per kind of outcome: a field added to
 * either kind of KnownOutcome, or to TransferDebit, fails to compile here
 * until outcomeValue writes it for that kind too.
 */
type Accepted = Extract<KnownOutcome, { status: 'accepted' }>;
type Rejected = Extract<KnownOutcome, { status: 'rejected' }>;
type Place = 'sourcePartition' | 'sourceOffset';
type NoneLeft<T extends never> = T;
export type OutcomeFieldsWritten =
  | NoneLeft<Exclude<keyof Accepted, 'status' | 'type' | 'version' | 'balance' | 'transfer' | Place>>
  | NoneLeft<Exclude<keyof Rejected, 'status' | 'type' | 'reason' | 'detail' | 'toAccountId' | Place>>
  | NoneLeft<Exclude<keyof TransferDebit, 'toAccountId' | 'amount' | 'currency'>>;

/**
 * An outcome's JSON, field by field (what JSON.parse reads back as the same
 * object): JSON.stringify of one cost ~0.85 µs, this ~0.1. Free text (the
 * type echoed from input, a detail) is escaped by jsonString.
 */
export function outcomeValue(o: KnownOutcome): string {
  let s = '{"status":"' + o.status + '","type":' + jsonString(o.type);
  if (o.status === 'accepted') {
    s += ',"version":' + o.version + ',"balance":' + jsonString(o.balance);
    const t = o.transfer;
    if (t !== undefined) s += ',"transfer":{"toAccountId":' + jsonString(t.toAccountId) + ',"amount":' + jsonString(t.amount) + ',"currency":' + jsonString(t.currency) + '}';
  } else {
    s += ',"reason":' + jsonString(o.reason);
    if (o.detail !== undefined) s += ',"detail":' + jsonString(o.detail);
    if (o.toAccountId !== undefined) s += ',"toAccountId":' + jsonString(o.toAccountId);
  }
  if (o.sourcePartition !== undefined) s += ',"sourcePartition":' + o.sourcePartition;
  if (o.sourceOffset !== undefined) s += ',"sourceOffset":' + o.sourceOffset;
  return s + '}';
}

/** More records than chance puts under one hash: a lookup that meets them indexes the keys instead. */
const MAX_SHARED_HASH = 8;

/**
 * A slice's decided outcomes on the main thread, found by pair: an index of
 * the hashes, built on the first lookup (a batch looks up only the pairs that
 * look re-sent, but when a producer re-sends a whole batch, that is every
 * pair; a scan of the hashes per lookup then cost ~10 µs per command), and a
 * record read only where a hash matches, its key compared.
 *
 * A lookup never costs more than MAX_SHARED_HASH record reads, hit or miss:
 * records sharing a hash are chained, and past that many the lookup indexes
 * every key instead (V8 seeds its string hashes), once, and finds by key from
 * there on. That bound is the defence against ids aimed at one hash. The
 * process's seed (ResentCommands.seed) only narrows them: FNV-1a's
 * collisions depend on the seed's low 7 bits alone, so ids made for one seed
 * still collide in 1 process of 128.
 */
export class DecidedLookup {
  /** hash (as int32) -> the first record with it, and each record -> the next with its hash (-1: none) */
  private chains: { first: Map<number, number>; next: Int32Array } | undefined;
  /** key -> record, once a hash was found shared by too many */
  private byKey: Map<string, number> | undefined;

  constructor(private readonly d: DecidedOutcomes) {}

  /** The outcome held under `key` (outcomeKey(account, command)), whose pair's PairHash.first (with its seed) is `hash`. */
  find(key: string, hash: number): KnownOutcome | undefined {
    if (this.byKey) return this.at(this.byKey.get(key), key);
    this.chains ??= this.index();
    const { first, next } = this.chains;
    let read = 0;
    for (let i = first.get(hash | 0) ?? -1; i >= 0; i = next[i]) {
      if (++read > MAX_SHARED_HASH) {
        this.byKey = this.keyIndex();
        return this.at(this.byKey.get(key), key);
      }
      const o = this.at(i, key);
      if (o) return o;
    }
    return undefined;
  }

  /** Record `i`'s outcome if its key is `key`. */
  private at(i: number | undefined, key: string): KnownOutcome | undefined {
    if (i === undefined) return undefined;
    const { key: k, value } = recordAt(this.d.records, this.d.offsets[i]);
    return k !== null && value !== null && k.toString('utf8') === key ? JSON.parse(value.toString('utf8')) as KnownOutcome : undefined;
  }

  private index(): { first: Map<number, number>; next: Int32Array } {
    const { hashes } = this.d;
    const first = new Map<number, number>();
    const next = new Int32Array(hashes.length).fill(-1);
    // backwards, so each record links to the one after it with its hash and `first` ends at the first
    // (int32 keys stay small integers in the Map)
    for (let i = hashes.length - 1; i >= 0; i--) {
      const h = hashes[i] | 0;
      const later = first.get(h);
      if (later !== undefined) next[i] = later;
      first.set(h, i);
    }
    return { first, next };
  }

  private keyIndex(): Map<string, number> {
    const byKey = new Map<string, number>();
    let i = 0;
    forEachRecord(this.d.records, (k) => {
      if (k !== null) byKey.set(k.toString('utf8'), i);
      i++;
    });
    return byKey;
  }
}

/** Every outcome `d` holds, by key, in the order they were decided. */
export function decidedEntries(d: DecidedOutcomes): Array<[string, KnownOutcome]> {
  const out: Array<[string, KnownOutcome]> = [];
  forEachRecord(d.records, (k, v) => { if (k !== null && v !== null) out.push([k.toString('utf8'), JSON.parse(v.toString('utf8')) as KnownOutcome]); });
  return out;
}
