/**
 * `banking-es send`: drive the daemon by hand. One command from flags, or
 * NDJSON commands from stdin; prints each outcome as it arrives.
 */
import { randomUUID } from 'node:crypto';
import * as readline from 'node:readline';
import Kafka from 'node-rdkafka';
import type { Config } from './config';
import { baseKafkaConfig, PRODUCER_TOPIC_CONFIG } from './kafka/client-config';
import { Topics } from './kafka/topics';
import { Health } from './health';
import { createMetrics } from './metrics';
import { createLogger } from './logger';
import { Registry } from 'prom-client';

export function commandFromFlags(type: string, flags: Map<string, string | true>): Record<string, unknown> {
  const get = (k: string) => (typeof flags.get(k) === 'string' ? (flags.get(k) as string) : undefined);
  const accountId = get('account') ?? (type === 'OpenAccount' ? randomUUID() : undefined);
  if (!accountId) throw new Error('--account <uuid> is required');
  const cmd: Record<string, unknown> = { commandId: get('command-id') ?? randomUUID(), type, accountId };
  if (get('expected-version') !== undefined) cmd.expectedVersion = Number(get('expected-version'));
  if (type === 'OpenAccount') {
    cmd.ownerName = get('owner') ?? 'Anonymous';
    cmd.currency = get('currency') ?? 'USD';
    cmd.initialBalance = get('initial-balance') ?? get('amount') ?? '0';
  } else if (type === 'Deposit' || type === 'Withdraw') {
    const amount = get('amount');
    if (!amount) throw new Error('--amount <decimal> is required');
    cmd.amount = amount;
  } else if (type === 'CloseAccount') {
    if (get('reason')) cmd.reason = get('reason');
  } else throw new Error(`unknown command type "${type}"; use OpenAccount, Deposit, Withdraw or CloseAccount`);
  return cmd;
}

async function readNdjson(): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim()) out.push(JSON.parse(line) as Record<string, unknown>);
  }
  return out;
}

export async function send(config: Config, commands: Array<Record<string, unknown>> | 'stdin', timeoutMs: number, print: (s: string) => void): Promise<number> {
  const list = commands === 'stdin' ? await readNdjson() : commands;
  const base = baseKafkaConfig(config, 'send');
  const producer = new Kafka.Producer({ ...base, dr_cb: true } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  const consumer = new Kafka.KafkaConsumer({ ...base, 'group.id': `banking-es-send-${randomUUID()}`, 'enable.auto.commit': false } as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((res, rej) => producer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  await new Promise<void>((res, rej) => consumer.connect({ timeout: 10000 }, (e) => (e ? rej(e) : res())));
  try {
    const topic = config.kafka.topics.results;
    // on a fresh cluster the results topic may not exist yet: listening to nothing would report no outcome
    const metrics = createMetrics(new Registry(), { defaultMetrics: false });
    const topics = new Topics(config, producer, { health: new Health(metrics), metrics, log: createLogger({ level: 'silent' }) });
    await topics.ensure('send', [config.kafka.topics.commands, topic]);
    topics.close();
    const md = await new Promise<Kafka.Metadata>((res, rej) => consumer.getMetadata({ topic, timeout: 10000 }, (e, m) => (e ? rej(e) : res(m))));
    const parts = md.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
    if (parts === 0) {
      print(JSON.stringify({ error: `topic ${topic} does not exist: create it, or set KAFKA_CREATE_TOPICS=true` }));
      return 2;
    }
    const starts = await Promise.all(Array.from({ length: parts }, (_, p) => new Promise<number>((res, rej) => consumer.queryWatermarkOffsets(topic, p, 10000, (e, w) => (e ? rej(e) : res(w.highOffset))))));
    consumer.assign(starts.map((offset, partition) => ({ topic, partition, offset })));
    const waiting = new Set(list.map((c) => String(c.commandId)));
    for (const c of list) producer.produce(config.kafka.topics.commands, null, Buffer.from(JSON.stringify(c)), String(c.accountId ?? ''), Date.now());
    await new Promise<void>((r) => producer.flush(10000, () => r()));
    const deadline = Date.now() + timeoutMs;
    consumer.setDefaultConsumeTimeout(100);
    while (waiting.size > 0 && Date.now() < deadline) {
      const msgs = await new Promise<Kafka.Message[]>((res) => consumer.consume(1000, (_e, m) => res(m ?? [])));
      for (const m of msgs) {
        const o = JSON.parse(m.value!.toString()) as { commandId: string };
        if (waiting.delete(o.commandId)) print(m.value!.toString());
      }
    }
    if (waiting.size) {
      print(JSON.stringify({ error: `no outcome within ${timeoutMs} ms`, commandIds: [...waiting] }));
      return 1;
    }
    return 0;
  } finally {
    await new Promise<void>((r) => producer.disconnect(() => r()));
    await new Promise<void>((r) => consumer.disconnect(() => r()));
  }
}
