/**
 * What the command-line tools (send, dlq) ask the cluster about one topic, with a
 * plain consumer: its partitions and each one's log range.
 */
import type Kafka from 'node-rdkafka';

/** The partition ids of `topic`; empty when it does not exist. */
export function partitionsOf(client: Kafka.KafkaConsumer, topic: string, timeoutMs = 10000): Promise<number[]> {
  return new Promise((res, rej) => client.getMetadata({ topic, timeout: timeoutMs }, (e, m) => (e ? rej(e) : res(m.topics.find((t) => t.name === topic)?.partitions.map((p) => p.id) ?? []))));
}

/** The first offset still in the log and the next offset to be written. */
export function logRange(client: Kafka.KafkaConsumer, topic: string, partition: number, timeoutMs = 10000): Promise<{ lowOffset: number; highOffset: number }> {
  return new Promise((res, rej) => client.queryWatermarkOffsets(topic, partition, timeoutMs, (e, o) => (e ? rej(e) : res(o))));
}
