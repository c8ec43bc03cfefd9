/**
 * One shard's slice of a batch travels to a worker as ONE buffer (docs/architecture.md §5:
 * one transferred buffer costs ~0.06 µs per message, a transfer list of many
 * buffers ~2.2 µs). Layout per message, big-endian:
 *   u32 partition | f64 offset | i32 keyLen (-1 = null) | key | i32 valueLen (-1 = null) | value
 * Outcomes come back the same way: i32 keyLen | key | i32 valueLen | value.
 */

export class Packer {
  private buf: Buffer;
  private pos = 0;
  count = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(initialBytes);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private bytes(b: Buffer | string | null | undefined): void {
    if (b === null || b === undefined) {
      this.ensure(4);
      this.buf.writeInt32BE(-1, this.pos);
      this.pos += 4;
      return;
    }
    if (typeof b === 'string') {
      // written first and measured by the write, not by Buffer.byteLength beforehand (a second pass over
      // the string), where there is room for the longest UTF-8 it can be: 3 bytes per UTF-16 code unit.
      // Where there is not (a packer sized exactly for its messages, event-chunk.ts), measured first, so
      // the buffer grows only if the string needs it
      if (this.pos + 4 + b.length * 3 > this.buf.length) this.ensure(4 + Buffer.byteLength(b));
      const len = this.buf.write(b, this.pos + 4, 'utf8');
      this.buf.writeInt32BE(len, this.pos);
      this.pos += 4 + len;
      return;
    }
    this.ensure(4 + b.length);
    this.buf.writeInt32BE(b.length, this.pos);
    this.buf.set(b, this.pos + 4); // TypedArray set: Buffer#copy builds a view per call, ~0.2 µs for a 300-byte event
    this.pos += 4 + b.length;
  }

  /** A consumed message: partition, offset, key, value. */
  message(partition: number, offset: number, key: Buffer | string | null | undefined, value: Buffer | null | undefined): void {
    this.ensure(12);
    this.buf.writeUInt32BE(partition, this.pos);
    this.buf.writeDoubleBE(offset, this.pos + 4);
    this.pos += 12;
    this.bytes(key);
    this.bytes(value);
    this.count++;
  }

  /** An outcome (or any keyed record): key, value. */
  record(key: string, value: string): void {
    this.bytes(key);
    this.bytes(value);
    this.count++;
  }

  /** Bytes written so far: where the next record starts. */
  get size(): number {
    return this.pos;
  }

  /** The packed bytes, in memory of their own so they can be transferred. */
  finish(): Uint8Array {
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.pos);
  }
}

export interface PackedMessage {
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
}

/**
 * Walks packed messages without allocating per message: after next(), the
 * current message's fields are plain numbers (byte ranges into `buf`), and
 * Buffer views are made only on request. For hot loops (the projection
 * worker reads ~80k messages a second; a view costs ~0.1 µs, a generator
 * step with its object more).
 */
export class PackReader {
  readonly buf: Buffer;
  private pos = 0;
  partition = 0;
  offset = 0;
  /** key bytes are [keyAt, keyAt + keyLen); keyLen -1 = null */
  keyAt = 0;
  keyLen = -1;
  /** value bytes are [valueAt, valueAt + valueLen); valueLen -1 = null */
  valueAt = 0;
  valueLen = -1;

  constructor(bytes: Uint8Array) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Moves to the next message; false at the end. */
  next(): boolean {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= buf.length) return false;
    this.partition = buf.readUInt32BE(pos);
    this.offset = buf.readDoubleBE(pos + 4);
    this.keyLen = buf.readInt32BE(pos + 12);
    this.keyAt = pos + 16;
    pos = this.keyAt + Math.max(0, this.keyLen);
    this.valueLen = buf.readInt32BE(pos);
    this.valueAt = pos + 4;
    this.pos = this.valueAt + Math.max(0, this.valueLen);
    return true;
  }

  key(): Buffer | null {
    return this.keyLen < 0 ? null : this.buf.subarray(this.keyAt, this.keyAt + this.keyLen);
  }

  value(): Buffer | null {
    return this.valueLen < 0 ? null : this.buf.subarray(this.valueAt, this.valueAt + this.valueLen);
  }

  /** Whether the key is exactly the characters of `s` as single bytes (an ASCII id), without making a string. */
  keyIs(s: string): boolean {
    if (this.keyLen !== s.length) return false;
    const buf = this.buf, at = this.keyAt;
    for (let i = 0; i < s.length; i++) if (buf[at + i] !== s.charCodeAt(i)) return false;
    return true;
  }
}

export function* unpackMessages(bytes: Uint8Array): Generator<PackedMessage> {
  const r = new PackReader(bytes);
  while (r.next()) yield { partition: r.partition, offset: r.offset, key: r.key(), value: r.value() };
}

function readBytes(buf: Buffer, pos: number): [Buffer | null, number] {
  const len = buf.readInt32BE(pos);
  if (len < 0) return [null, pos + 4];
  return [buf.subarray(pos + 4, pos + 4 + len), pos + 4 + len];
}

/** The packed record starting at byte `at` (Packer.size before it was written): views into `bytes`, not copies. */
export function recordAt(bytes: Uint8Array, at: number): { key: Buffer | null; value: Buffer | null } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [key, pos] = readBytes(buf, at);
  const [value] = readBytes(buf, pos);
  return { key, value };
}

/** Calls fn(key, value) for each packed record; values are views into `bytes`, not copies. */
export function forEachRecord(bytes: Uint8Array, fn: (key: Buffer | null, value: Buffer | null) => void): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos < buf.length) {
    let key: Buffer | null;
    let value: Buffer | null;
    [key, pos] = readBytes(buf, pos);
    [value, pos] = readBytes(buf, pos);
    fn(key, value);
  }
}
