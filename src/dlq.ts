/**
 * `banking-es dlq list|show|replay`: the dead-letter topics for people
 * (docs/operations.md "Dead letters"). Letters are read with a group-less
 * consumer from each partition's start (or --from-offset) to the high
 * watermark seen when the command began, so a listing ends even while the
 * daemon adds letters. `replay` produces the selected letters to their source
 * topic, optionally with a fixed value, each marked with REPLAYED_FROM; the
 * daemon copies a message's headers into its dead letter, so a replayed
 * letter that fails again carries the mark and is not replayed again unless
 * asked (--again). Idempotency by commandId makes a replay safe to repeat.
 *
 * `--limit` stops the read once that many letters matched (the oldest first
 * per partition, so with several partitions it is a sample, not the oldest
 * overall); a read gives up only when no letter arrives for 30 s.
 */
import Kafka from 'node-rdkafka';
import { randomUUID } from 'node:crypto';
import type { Config } from './config';
import { UsageError } from './errors';
export { parseSince } from './time-arg';
import { baseKafkaConfig, PRODUCER_TOPIC_CONFIG } from './kafka/client-config';
import { logRange, partitionsOf } from './kafka/topic-query';

export const REPLAYED_FROM = 'banking-es.replayed-from';

export interface Letter {
  partition: number;
  offset: number;
  timestamp: number | undefined;
  key: Buffer | null;
  value: Buffer | null;
  headers: Array<[string, Buffer]>;
}

export interface Selection {
  code?: string;
  sinceMs?: number;
  untilMs?: number;
  partition?: number;
  /** exactly this offset (with partition) */
  offset?: number;
  fromOffset?: number;
  toOffset?: number;
  sourcePartition?: number;
  limit?: number;
}

export const header = (l: Letter, name: string): string | undefined => {
  const h = l.headers.find(([k]) => k === name);
  return h ? h[1].toString('utf8') : undefined;
};

export function matches(l: Letter, sel: Selection): boolean {
  if (sel.partition !== undefined && l.partition !== sel.partition) return false;
  if (sel.offset !== undefined && l.offset !== sel.offset) return false;
  if (sel.fromOffset !== undefined && l.offset < sel.fromOffset) return false;
  if (sel.toOffset !== undefined && l.offset > sel.toOffset) return false;
  if (sel.code !== undefined && header(l, 'error.code') !== sel.code) return false;
  if (sel.sinceMs !== undefined && (l.timestamp ?? 0) < sel.sinceMs) return false;
  if (sel.untilMs !== undefined && (l.timestamp ?? Infinity) > sel.untilMs) return false;
  if (sel.sourcePartition !== undefined && header(l, 'source.partition') !== String(sel.sourcePartition)) return false;
  return true;
}

/** One line of `dlq list`: where the letter is, why, and where it came from. */
export function summary(l: Letter, topic: string): Record<string, unknown> {
  return {
    topic, partition: l.partition, offset: l.offset,
    time: l.timestamp === undefined ? null : new Date(l.timestamp).toISOString(),
    code: header(l, 'error.code') ?? null, message: header(l, 'error.message') ?? null,
    source: { topic: header(l, 'source.topic') ?? null, partition: numberOrNull(header(l, 'source.partition')), offset: numberOrNull(header(l, 'source.offset')) },
    key: l.key === null ? null : l.key.toString('utf8'),
    valueBytes: l.value?.length ?? 0,
    ...(header(l, REPLAYED_FROM) ? { replayedFrom: header(l, REPLAYED_FROM) } : {}),
  };
}

/** `dlq show`: everything, the value as text when it is UTF-8, else base64. */
export function whole(l: Letter, topic: string): Record<string, unknown> {
  const text = (b: Buffer) => (Buffer.from(b.toString('utf8'), 'utf8').equals(b) ? { text: b.toString('utf8') } : { base64: b.toString('base64') });
  return {
    ...summary(l, topic),
    headers: l.headers.map(([k, v]) => ({ [k]: v.toString('utf8') })),
    value: l.value === null ? null : text(l.value),
  };
}

const numberOrNull = (s: string | undefined) => (s === undefined || !/^\d+$/.test(s) ? null : Number(s));

/** Reads every letter of `topic` matching `sel`, in partition and offset order, up to the high watermarks at the start. */
export async function readLetters(config: Config, topic: string, sel: Selection, timeoutMs = 30000): Promise<Letter[]> {
  const consumer = new Kafka.KafkaConsumer({ ...baseKafkaConfig(config, 'dlq'), 'group.id': `banking-es-dlq-${randomUUID()}`, 'enable.auto.commit': false } as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((res, rej) => consumer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  try {
    const parts = await partitionsOf(consumer, topic);
    if (parts.length === 0) throw new UsageError(`dlq: topic ${topic} does not exist`);
    const wanted = sel.partition === undefined ? parts : parts.filter((p) => p === sel.partition);
    const ranges: Array<{ partition: number; from: number; end: number }> = [];
    for (const partition of wanted) {
      const wm = await logRange(consumer, topic, partition);
      const from = Math.max(wm.lowOffset, sel.offset ?? sel.fromOffset ?? 0);
      const end = Math.min(wm.highOffset, sel.offset !== undefined ? sel.offset + 1 : sel.toOffset !== undefined ? sel.toOffset + 1 : wm.highOffset);
      if (from < end) ranges.push({ partition, from, end });
    }
    if (ranges.length === 0) return [];
    consumer.assign(ranges.map((r) => ({ topic, partition: r.partition, offset: r.from })));
    const left = new Map(ranges.map((r) => [r.partition, r.end]));
    const out: Letter[] = [];
    // gives up only when nothing arrives for timeoutMs, however long the whole read takes
    let idleSince = Date.now();
    consumer.setDefaultConsumeTimeout(200);
    while (left.size > 0 && (sel.limit === undefined || out.length < sel.limit)) {
      if (Date.now() - idleSince > timeoutMs) {
        throw new Error(`dlq: no letter of ${topic} arrived for ${timeoutMs / 1000} s with ${[...left.keys()].length} partitions unfinished (${out.length} letters read)`);
      }
      const msgs = await new Promise<Kafka.Message[]>((res, rej) => consumer.consume(1000, (e, m) => (e ? rej(e) : res(m ?? []))));
      if (msgs.length) idleSince = Date.now();
      for (const m of msgs) {
        const end = left.get(m.partition);
        if (end === undefined) continue;
        if (m.offset >= end - 1) left.delete(m.partition); // done with it, even when the last one is past the end
        if (m.offset >= end) continue;
        const headers: Array<[string, Buffer]> = (m.headers ?? []).flatMap((h) => Object.entries(h).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(String(v))] as [string, Buffer]));
        const key = m.key === undefined || m.key === null ? null : Buffer.isBuffer(m.key) ? m.key : Buffer.from(m.key);
        const letter: Letter = { partition: m.partition, offset: m.offset, timestamp: m.timestamp, key, value: m.value ?? null, headers };
        if (matches(letter, sel)) out.push(letter);
      }
    }
    out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    return sel.limit === undefined ? out : out.slice(0, sel.limit);
  } finally {
    await new Promise<void>((r) => consumer.disconnect(() => r()));
  }
}

/** The message a letter came from, to send again: its key and original headers, our marks dropped, the replay marked. */
export function replayMessage(l: Letter, dlqTopic: string, value: Buffer | null): { topic: string; key: Buffer | null; value: Buffer | null; headers: Array<Record<string, Buffer>> } {
  const topic = header(l, 'source.topic');
  if (!topic) throw new UsageError(`dlq replay: letter ${dlqTopic}/${l.partition}/${l.offset} has no source.topic header`);
  const headers: Array<Record<string, Buffer>> = [];
  for (const [k, v] of l.headers) {
    if (k.startsWith('error.') || k.startsWith('source.') || k === REPLAYED_FROM) continue;
    headers.push({ [k.startsWith('original.') ? k.slice('original.'.length) : k]: v });
  }
  headers.push({ [REPLAYED_FROM]: Buffer.from(`${dlqTopic}/${l.partition}/${l.offset}`) });
  return { topic, key: l.key, value, headers };
}

/** Produces the messages and waits for every acknowledgement. */
export async function produceAll(config: Config, msgs: Array<ReturnType<typeof replayMessage>>): Promise<void> {
  const producer = new Kafka.Producer({ ...baseKafkaConfig(config, 'dlq-replay'), dr_cb: true, 'enable.idempotence': true } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  await new Promise<void>((res, rej) => producer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  try {
    let pending = msgs.length;
    let failed: Error | undefined;
    const done = new Promise<void>((resolve) => {
      if (pending === 0) resolve();
      producer.on('delivery-report', (err) => {
        if (err) failed ??= new Error(`replay delivery failed: ${err.message}`);
        if (--pending === 0) resolve();
      });
    });
    producer.setPollInterval(5);
    for (const m of msgs) producer.produce(m.topic, null, m.value, m.key ?? undefined, Date.now(), undefined, m.headers);
    await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error(`replay: ${pending} of ${msgs.length} not acknowledged within 30 s`)), 30000).unref())]);
    if (failed) throw failed;
  } finally {
    producer.setPollInterval(0);
    await new Promise<void>((r) => producer.disconnect(() => r()));
  }
}
