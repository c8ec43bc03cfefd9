/**
 * Child-process entry that hosts librdkafka's mock Kafka cluster
 * (test.mock.num.brokers) for as long as it lives, and writes the brokers'
 * addresses to the file named by argv[2]. SIGTERM/SIGINT end it.
 */
import * as fs from 'node:fs';
import Kafka from 'node-rdkafka';

const outFile = process.argv[2];
const brokers = Number(process.argv[3] ?? 3);
if (!outFile) {
  process.stderr.write('usage: kafka-mock-host <brokers-file> [broker-count]\n');
  process.exit(2);
}

const host = new Kafka.Producer({
  'client.id': 'banking-es-mock-host',
  'bootstrap.servers': 'mock:9092', // ignored: the mock cluster replaces it
  'test.mock.num.brokers': brokers,
  'log_level': 3,
} as Kafka.ProducerGlobalConfig);

host.connect({ timeout: 15000 }, (err) => {
  if (err) {
    process.stderr.write(`mock cluster failed to start: ${err.message}\n`);
    process.exit(1);
  }
  host.getMetadata({ timeout: 10000 }, (mdErr, md) => {
    if (mdErr || !md) {
      process.stderr.write(`mock cluster metadata failed: ${mdErr?.message}\n`);
      process.exit(1);
    }
    const list = md.brokers.map((b) => `${b.host}:${b.port}`).join(',');
    fs.writeFileSync(`${outFile}.tmp`, list);
    fs.renameSync(`${outFile}.tmp`, outFile);
    process.stdout.write(`mock kafka cluster up: ${list}\n`);
  });
});

const stop = () => {
  host.disconnect(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// librdkafka's own threads keep the cluster alive; this keeps the event loop alive.
setInterval(() => undefined, 1 << 30);
