/**
 * One dead letter (docs/architecture.md §2.3), for both pipelines: the
 * original key, value and headers, plus why (`error.code`, `error.class`,
 * `error.message`, `error.sqlstate` when Postgres refused the message) and
 * where it came from (`source.topic`, `source.partition`, `source.offset`).
 * Original headers with those reserved names are renamed `original.<name>`.
 *
 * A message right at the broker's size limit no longer fits once the headers
 * are added (librdkafka refuses it: MSG_SIZE_TOO_LARGE). Retrying cannot help
 * and would stall the partition, so the letter then goes without its value:
 * `error.value.bytes` says how large it was, and the original stays readable
 * at its source offset for the topic's retention.
 */
import type { ProducerClient } from '../kafka/producer';

export type Headers = Array<Record<string, string | Buffer>>;

export interface DeadMessage {
  key: Buffer | string | null;
  value: Buffer | null;
  headers: Headers;
  partition: number;
  offset: number;
}

export interface Why { code: string; message: string; sqlstate?: string }

const MSG_SIZE_TOO_LARGE = 10;

/**
 * The producer's own `error.*` and `source.*` headers would stand beside ours,
 * and a reader taking the first header of a name would read the forged one:
 * they are kept as `original.<name>`.
 */
export function renameReserved(h: Record<string, string | Buffer>): Record<string, string | Buffer> {
  const out: Record<string, string | Buffer> = {};
  for (const [k, v] of Object.entries(h)) out[k.startsWith('error.') || k.startsWith('source.') ? `original.${k}` : k] = v;
  return out;
}

/** Resolves once Kafka acknowledged the letter; rejects (classified by the caller) when it cannot be sent. */
export async function sendDeadLetter(producer: ProducerClient, dlqTopic: string, sourceTopic: string, m: DeadMessage, why: Why): Promise<void> {
  const headers: Headers = [
    ...m.headers.map(renameReserved),
    { 'error.code': why.code }, { 'error.message': why.message }, { 'error.class': 'poison' },
    ...(why.sqlstate ? [{ 'error.sqlstate': why.sqlstate }] : []),
    { 'source.topic': sourceTopic }, { 'source.partition': String(m.partition) }, { 'source.offset': String(m.offset) },
  ];
  try {
    await producer.send({ topic: dlqTopic, key: m.key ?? null, value: m.value ?? null, headers });
  } catch (e) {
    if ((e as { code?: unknown }).code !== MSG_SIZE_TOO_LARGE) throw e;
    await producer.send({ topic: dlqTopic, key: m.key ?? null, value: null, headers: [...headers, { 'error.value.bytes': String(m.value?.length ?? 0) }] });
  }
}

/**
 * The messages this process dead-lettered whose offsets are not committed
 * yet: a redo or retry of their batch does not send them again (a dead letter
 * is sent once per message per process). Forgotten once the offset past them
 * commits, or when their partition is assigned anew.
 */
export class DeadLettered {
  /** partition -> offsets */
  private readonly byPartition = new Map<number, Set<number>>();

  has(partition: number, offset: number): boolean {
    return this.byPartition.get(partition)?.has(offset) ?? false;
  }

  add(partition: number, offset: number): void {
    let s = this.byPartition.get(partition);
    if (!s) this.byPartition.set(partition, (s = new Set()));
    s.add(offset);
  }

  /** Forgets what is below each partition's committed next offset and, when `owned` is given, every partition not in it. */
  keepAbove(committedNext: ReadonlyMap<number, number>, owned?: Iterable<number>): void {
    const keep = owned === undefined ? undefined : new Set(owned);
    for (const [p, offsets] of this.byPartition) {
      if (keep && !keep.has(p)) { this.byPartition.delete(p); continue; }
      const next = committedNext.get(p);
      if (next !== undefined) for (const o of offsets) if (o < next) offsets.delete(o);
      if (offsets.size === 0) this.byPartition.delete(p);
    }
  }
}

/**
 * A role's dead-letter topic, sent to at most once per message per process
 * (a redo or retry of its batch does not send a letter again). Resolves once
 * Kafka acknowledged the letter: the core commits the offset past it only then.
 */
export class DeadLetterSender {
  private readonly sent = new DeadLettered();

  constructor(
    private readonly producer: ProducerClient,
    private readonly dlqTopic: string,
    private readonly sourceTopic: string,
    private readonly onSent: (code: string) => void,
  ) {}

  async send(m: DeadMessage, why: Why): Promise<void> {
    if (this.sent.has(m.partition, m.offset)) return;
    await sendDeadLetter(this.producer, this.dlqTopic, this.sourceTopic, m, why);
    this.sent.add(m.partition, m.offset);
    this.onSent(why.code);
  }

  /** Offsets committed (or partitions assigned anew): see DeadLettered.keepAbove. */
  keepAbove(committedNext: ReadonlyMap<number, number>, owned?: Iterable<number>): void {
    this.sent.keepAbove(committedNext, owned);
  }
}
