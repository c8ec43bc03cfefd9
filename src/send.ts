/**
 * `banking-es send`: drive the daemon by hand. One command from flags, or
 * NDJSON commands from stdin; prints each outcome as it arrives.
 */
import { randomUUID } from 'node:crypto';
import * as readline from 'node:readline';
import Kafka from 'node-rdkafka';
import type { Config } from './config';
import { UsageError } from './errors';
import { isUuid } from './codec/command';
import { baseKafkaConfig, PRODUCER_TOPIC_CONFIG } from './kafka/client-config';
import { Topics } from './kafka/topics';
import { logRange, partitionsOf } from './kafka/topic-query';
import { Health } from './health';
import { createMetrics } from './metrics';
import { createLogger } from './logger';
import { Registry } from 'prom-client';

export function commandFromFlags(type: string, flags: Map<string, string | true>): Record<string, unknown> {
  const get = (k: string) => (typeof flags.get(k) === 'string' ? (flags.get(k) as string) : undefined);
  const accountId = get('account') ?? (type === 'OpenAccount' ? randomUUID() : undefined);
  if (!accountId) throw new UsageError(`send ${type}: --account <uuid> is required`);
  const cmd: Record<string, unknown> = { commandId: get('command-id') ?? randomUUID(), type, accountId };
  if (get('expected-version') !== undefined) cmd.expectedVersion = Number(get('expected-version'));
  if (type === 'OpenAccount') {
    cmd.ownerName = get('owner') ?? 'Anonymous';
    cmd.currency = get('currency') ?? 'USD';
    cmd.initialBalance = get('initial-balance') ?? get('amount') ?? '0';
  } else if (type === 'Deposit' || type === 'Withdraw') {
    const amount = get('amount');
    if (!amount) throw new UsageError(`send ${type}: --amount <decimal> is required`);
    cmd.amount = amount;
  } else if (type === 'Transfer') {
    // its one final outcome comes when the destination was credited, or the source refunded
    const to = get('to'), amount = get('amount');
    if (!to) throw new UsageError('send Transfer: --to <uuid> (the destination account) is required');
    if (!amount) throw new UsageError('send Transfer: --amount <decimal> is required');
    cmd.toAccountId = to;
    cmd.amount = amount;
  } else if (type === 'CloseAccount') {
    if (get('reason')) cmd.reason = get('reason');
  } else throw new UsageError(`send: unknown command type "${type}"; use OpenAccount, Deposit, Withdraw, Transfer or CloseAccount`);
  return cmd;
}

/** One command to send: its bytes as produced, what identifies its answer, and its input line (stdin). */
interface Sendable { value: string; key: string; commandId?: string; accountId?: string; line?: number }

/**
 * The daemon answers with ids in lower case, so they are matched in lower case; the key is the
 * account id in lower case too, so an account typed in upper case lands on its usual partition.
 */
function sendable(c: Record<string, unknown>, text = JSON.stringify(c), line?: number): Sendable {
  const accountId = typeof c.accountId === 'string' ? c.accountId : undefined;
  return {
    value: text,
    key: accountId !== undefined && isUuid(accountId) ? accountId.toLowerCase() : accountId ?? '',
    commandId: typeof c.commandId === 'string' ? c.commandId.toLowerCase() : undefined,
    accountId,
    line,
  };
}

/** NDJSON from stdin: each line that is a JSON object is sent as it is; any other line is reported by number and skipped. */
async function readNdjson(print: (s: string) => void): Promise<{ list: Sendable[]; bad: number }> {
  const list: Sendable[] = [];
  let bad = 0;
  let n = 0;
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    n++;
    const text = line.trim();
    if (!text) continue;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      print(JSON.stringify({ line: n, error: `not JSON (${(e as Error).message}); not sent` }));
      bad++;
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      print(JSON.stringify({ line: n, error: 'not a JSON object; not sent' }));
      bad++;
      continue;
    }
    list.push(sendable(v as Record<string, unknown>, text, n));
  }
  return { list, bad };
}

/** Each partition of `topic` from its end: only what is written from now on is read. */
async function fromTheEnd(consumer: Kafka.KafkaConsumer, topic: string, partitions: number[]): Promise<Array<{ topic: string; partition: number; offset: number }>> {
  return Promise.all(partitions.map(async (partition) => ({ topic, partition, offset: (await logRange(consumer, topic, partition)).highOffset })));
}

const header = (m: Kafka.Message, name: string): string | undefined => {
  for (const h of m.headers ?? []) if (name in h) return String(h[name]);
  return undefined;
};

/**
 * Sends the commands and prints, one JSON line each, their outcome from the outcome topic, or that
 * the daemon dead-lettered them (read back from the command dead-letter topic, matched by the bytes
 * sent). Exit code 0 when every command got an outcome (whatever its status), 1 otherwise.
 */
export async function send(config: Config, commands: Array<Record<string, unknown>> | 'stdin', timeoutMs: number, print: (s: string) => void): Promise<number> {
  const input = commands === 'stdin' ? await readNdjson(print) : { list: commands.map((c) => sendable(c)), bad: 0 };
  const { list } = input;
  if (list.length === 0) return input.bad ? 1 : 0;
  const base = baseKafkaConfig(config, 'send');
  const producer = new Kafka.Producer({ ...base, dr_cb: true } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  const consumer = new Kafka.KafkaConsumer({ ...base, 'group.id': `banking-es-send-${randomUUID()}`, 'enable.auto.commit': false } as Kafka.ConsumerGlobalConfig, {});
  const unreachable = (e: { message: string }) => new Error(`Kafka at ${config.kafka.brokers} did not answer (${e.message}); nothing was sent`);
  await new Promise<void>((res, rej) => producer.connect({ timeout: 10000 }, (e) => (e ? rej(unreachable(e)) : res())));
  await new Promise<void>((res, rej) => consumer.connect({ timeout: 10000 }, (e) => (e ? rej(unreachable(e)) : res())));
  try {
    const { results, commandsDlq } = config.kafka.topics;
    // on a fresh cluster the topics may not exist yet: listening to nothing would report no outcome
    const metrics = createMetrics(new Registry(), { defaultMetrics: false });
    const topics = new Topics(config, producer, { health: new Health(metrics), metrics, log: createLogger({ level: 'silent' }) });
    await topics.ensure('send', [config.kafka.topics.commands, results, commandsDlq]);
    topics.close();
    const parts = await partitionsOf(consumer, results);
    if (parts.length === 0) {
      print(JSON.stringify({ error: `topic ${results} does not exist: create it, or set KAFKA_CREATE_TOPICS=true; nothing was sent` }));
      return 2;
    }
    const dlqParts = await partitionsOf(consumer, commandsDlq); // without it a dead-lettered command shows as no outcome
    consumer.assign([...await fromTheEnd(consumer, results, parts), ...await fromTheEnd(consumer, commandsDlq, dlqParts)]);

    // the same commandId (a deliberate re-send) or the same bytes may be sent more than once: each copy
    // waits for an answer of its own, in the order sent
    const waiting = new Set(list);
    const byId = new Map<string, Sendable[]>();
    const byValue = new Map<string, Sendable[]>();
    const queue = <K>(m: Map<K, Sendable[]>, k: K, c: Sendable) => { const q = m.get(k); if (q) q.push(c); else m.set(k, [c]); };
    const firstWaiting = (q: Sendable[] | undefined) => q?.find((c) => waiting.has(c));
    for (const c of list) {
      if (c.commandId !== undefined) queue(byId, c.commandId, c);
      queue(byValue, c.value, c);
    }
    // a message librdkafka refuses (larger than message.max.bytes, …) is reported by line and skipped;
    // every other one is still sent
    let refused = 0;
    for (const c of list) {
      try {
        producer.produce(config.kafka.topics.commands, null, Buffer.from(c.value), c.key, Date.now());
      } catch (e) {
        refused++;
        waiting.delete(c);
        print(JSON.stringify({ ...(c.line !== undefined ? { line: c.line } : {}), commandId: c.commandId ?? null, error: `not sent: ${(e as Error).message} (${Buffer.byteLength(c.value)} bytes)` }));
      }
    }
    await new Promise<void>((r) => producer.flush(10000, () => r()));
    let deadLettered = 0;
    const deadline = Date.now() + timeoutMs;
    consumer.setDefaultConsumeTimeout(100);
    while (waiting.size > 0 && Date.now() < deadline) {
      const msgs = await new Promise<Kafka.Message[]>((res) => consumer.consume(1000, (_e, m) => res(m ?? [])));
      for (const m of msgs) {
        const text = m.value?.toString() ?? '';
        if (m.topic === commandsDlq) {
          const c = firstWaiting(byValue.get(text));
          if (!c) continue;
          waiting.delete(c);
          deadLettered++;
          print(JSON.stringify({ ...(c.line !== undefined ? { line: c.line } : {}), commandId: c.commandId ?? null, accountId: c.accountId ?? null, status: 'dead-lettered', topic: commandsDlq,
            error: { code: header(m, 'error.code'), message: header(m, 'error.message') }, note: 'the daemon could not read this command; it was not applied' }));
          continue;
        }
        let id: unknown;
        try { id = (JSON.parse(text) as { commandId?: unknown }).commandId; } catch { continue; }
        const c = typeof id === 'string' ? firstWaiting(byId.get(id.toLowerCase())) : undefined;
        if (c && waiting.delete(c)) print(text);
      }
    }
    if (waiting.size) {
      const left = [...waiting];
      print(JSON.stringify({
        error: `no outcome within ${timeoutMs} ms for ${left.length} of ${list.length} commands`,
        note: 'they may still be applied; re-send exactly these (same commandId and accountId) to learn their outcome without a second effect: '
          + 'save this line to a file and run jq -c \'.resend[]\' file | banking-es send -',
        ...(left.some((c) => c.line !== undefined) ? { lines: left.map((c) => c.line) } : {}),
        resend: left.map((c) => JSON.parse(c.value) as unknown),
      }));
    }
    return waiting.size || deadLettered || refused || input.bad ? 1 : 0;
  } finally {
    producer.setPollInterval(0);
    await new Promise<void>((r) => producer.disconnect(() => r()));
    await new Promise<void>((r) => consumer.disconnect(() => r()));
  }
}
