/**
 * The Kafka round-trip limit: a service that answers each command with a
 * tiny outcome and does nothing else (no Postgres, no decisions). The load
 * driver measured against it shows what the Kafka mock, node-rdkafka and the
 * driver itself allow on this machine. argv: brokers commandsTopic resultsTopic
 */
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../src/kafka/client-config';

const [brokers, commands, results] = process.argv.slice(2);
const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': `echo-${process.pid}`, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
const p = new Kafka.Producer({ 'bootstrap.servers': brokers, 'linger.ms': 2, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4' } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
p.connect({}, () => {
  p.setPollInterval(5);
  c.connect({}, () => {
    c.subscribe([commands]);
    c.setDefaultConsumeTimeout(20);
    c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
    const loop = () => c.consume(2000, (_e, msgs) => {
      for (const m of msgs ?? []) {
        const id = m.value!.toString('latin1', 14, 50); // {"commandId":"<uuid>"…
        for (;;) { try { p.produce(results, null, Buffer.from(`{"commandId":"${id}","status":"accepted"}`), m.key ?? undefined); break; } catch { p.poll(); } }
      }
      setImmediate(loop);
    });
    loop();
  });
});
process.on('SIGTERM', () => p.flush(2000, () => process.exit(0)));
