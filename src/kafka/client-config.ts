import type Kafka from 'node-rdkafka';
import type { Config } from '../config';

/**
 * Topic settings of every producer in the project (the daemon's, `send`'s, the load driver's, the
 * bench's and the tests'): the Java client's partitioner, murmur2 of the key made positive, modulo
 * the partition count (`murmur2_random`: a null key goes anywhere, as in Java). librdkafka's default
 * is CRC32, so the same account would land on another partition than Kafka Connect, Debezium or any
 * Java producer put it on, and switching relay modes would reorder an account's events.
 * node-rdkafka honours topic properties only in the constructor's second argument.
 */
export const PRODUCER_TOPIC_CONFIG: Kafka.ProducerTopicConfig = Object.freeze({ partitioner: 'murmur2_random' });

/** librdkafka settings shared by every client: brokers, identity, TLS/SASL. */
export function baseKafkaConfig(config: Config, role: string): Record<string, string | number | boolean> {
  const k = config.kafka;
  const c: Record<string, string | number | boolean> = {
    'bootstrap.servers': k.brokers,
    'client.id': `${k.clientId}-${role}`,
    'security.protocol': k.securityProtocol,
    'socket.keepalive.enable': true,
    'log.connection.close': false,
    // a topic created (or a partition added) after a consumer subscribed is seen within this, not 5 minutes
    'topic.metadata.refresh.interval.ms': k.metadataRefreshMs,
  };
  if (k.statisticsIntervalMs > 0) c['statistics.interval.ms'] = k.statisticsIntervalMs;
  if (k.securityProtocol.startsWith('sasl')) {
    c['sasl.mechanisms'] = k.sasl.mechanism;
    c['sasl.username'] = k.sasl.username;
    c['sasl.password'] = k.sasl.password;
  }
  if (k.ssl.caLocation) c['ssl.ca.location'] = k.ssl.caLocation;
  if (k.ssl.certificateLocation) c['ssl.certificate.location'] = k.ssl.certificateLocation;
  if (k.ssl.keyLocation) c['ssl.key.location'] = k.ssl.keyLocation;
  if (k.ssl.keyPassword) c['ssl.key.password'] = k.ssl.keyPassword;
  return c;
}
