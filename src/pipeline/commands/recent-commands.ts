/**
 * A Bloom filter of the (account, command) pairs this process committed
 * recently, so a re-sent command is recognised BEFORE its batch is decided
 * (Postgres is then asked about those few pairs only) instead of surfacing
 * as a unique violation at commit and costing a redo of the whole batch.
 * Two generations: when the current one is full it becomes the old one, so
 * the filter always covers the last `capacity`…2×`capacity` commands and its
 * false-positive rate stays bounded (~0.3% at 16 bits per entry, 4 probes).
 * A false positive costs one index probe; a miss (older than the window, or
 * written before a restart) is still caught by the unique keys at commit.
 */
import { isUuid } from '../../codec/command';
import { fnv1a as fnv } from '../../codec/hash';

const BITS_PER_ENTRY = 16;
const PROBES = 4;

class Bloom {
  private readonly bits: Uint32Array;
  private readonly mask: number;
  count = 0;
  constructor(capacity: number) {
    let size = 1024;
    while (size < capacity * BITS_PER_ENTRY) size *= 2;
    this.bits = new Uint32Array(size / 32);
    this.mask = size - 1;
  }
  add(key: string): void {
    const h1 = fnv(key, 0), h2 = fnv(key, 0x9e3779b9) | 1;
    for (let i = 0; i < PROBES; i++) { const b = (h1 + i * h2) & this.mask; this.bits[b >>> 5] |= 1 << (b & 31); }
    this.count++;
  }
  has(key: string): boolean {
    const h1 = fnv(key, 0), h2 = fnv(key, 0x9e3779b9) | 1;
    for (let i = 0; i < PROBES; i++) { const b = (h1 + i * h2) & this.mask; if ((this.bits[b >>> 5] & (1 << (b & 31))) === 0) return false; }
    return true;
  }
}

export class RecentCommands {
  private current: Bloom;
  private old: Bloom | undefined;
  constructor(private readonly capacity = 1_000_000) {
    this.current = new Bloom(capacity);
  }
  add(key: string): void {
    if (this.current.count >= this.capacity) { this.old = this.current; this.current = new Bloom(this.capacity); }
    this.current.add(key);
  }
  mightHave(key: string): boolean {
    return this.current.has(key) || (this.old?.has(key) ?? false);
  }
}

const COMMAND_ID = Buffer.from('"commandId"');

/**
 * The commandId of a JSON command, found by a byte scan rather than a parse
 * (the worker parses properly later). Returns null when it is not plainly
 * there or not a UUID: the unique keys still protect that command, only less cheaply.
 */
export function scanCommandId(value: Buffer | null | undefined): string | null {
  if (!value) return null;
  let i = value.indexOf(COMMAND_ID);
  if (i < 0) return null;
  i += COMMAND_ID.length;
  while (i < value.length && (value[i] === 0x20 || value[i] === 0x3a || value[i] === 0x0a || value[i] === 0x09 || value[i] === 0x0d)) i++;
  if (value[i] !== 0x22 || i + 37 >= value.length || value[i + 37] !== 0x22) return null;
  const id = value.toString('latin1', i + 1, i + 37);
  // it reaches SQL, Redis keys and the Bloom filter: a UUID, or not used at all
  return isUuid(id) ? id.toLowerCase() : null;
}
