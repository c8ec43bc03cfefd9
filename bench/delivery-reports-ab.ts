/**
 * `node dist/bench/delivery-reports-ab.js <brokers> <a.node> <b.node> [rounds] [messages]`:
 * the main thread's cost of producing a message and receiving its delivery
 * report, with two builds of node-rdkafka's addon in turn (interleaved, a
 * child process per run, a topic per run), e.g. a = node-rdkafka's own
 * delivery reports, b = the postinstall patch's. Each run produces `messages`
 * (default 150,000) messages with an opaque, as the outcome publisher does,
 * after 20,000 unmeasured, and waits for every report; it reports the event
 * loop's active time and the process's CPU per message. Prints Markdown and
 * JSON; the installed addon is put back at the end. Each build is put in
 * place by a rename, never by writing over the installed file: a process
 * that has the addon loaded (another test, the daemon) keeps its copy.
 *
 * To compare node-rdkafka's own delivery reports with the postinstall patch
 * (src/native/patch-node-rdkafka.cjs): keep the patched addon
 * (build/Release/node-librdkafka.node), put src/callbacks.cc.orig back,
 * `node-gyp build`, keep that addon too, then run the postinstall again.
 * <brokers>: e.g. the `kafka.brokers` of `banking-es stack up`'s config.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { PRODUCER_TOPIC_CONFIG } from '../src/kafka/client-config';
import { median, round } from './lib/stats';

interface RunResult { mainUsPerMessage: number; cpuUsPerMessage: number }

/** One run, in a process of its own (the addon is loaded once per process). */
async function child(brokers: string, topic: string, messages: number): Promise<RunResult> {
  // loaded here, in the child, after the parent put the build under test in place
  const { default: Kafka } = await import('node-rdkafka');
  const producer = new Kafka.Producer({ 'metadata.broker.list': brokers, dr_cb: true, 'linger.ms': 5, 'queue.buffering.max.messages': 200_000 }, PRODUCER_TOPIC_CONFIG);
  producer.setPollInterval(5);
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  const key = Buffer.from('0b6e8a4c-1c1e-4c1f-9f3a-4c4b2f1b2c3d');
  const value = Buffer.alloc(200, 'x');
  const run = (n: number) => new Promise<void>((resolve) => {
    const batch = {};
    let left = n, sent = 0;
    const onReport = (_err: unknown, report: { opaque?: unknown }) => {
      if (report.opaque === batch && --left === 0) { producer.removeListener('delivery-report', onReport); resolve(); }
    };
    producer.on('delivery-report', onReport);
    const more = () => {
      try {
        for (let k = 0; k < 5000 && sent < n; k++, sent++) producer.produce(topic, null, value, key, Date.now(), batch);
      } catch { /* local queue full: go on after the reports drain it */ }
      if (sent < n) setImmediate(more);
    };
    more();
  });
  await run(20_000);
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  await run(messages);
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
  return { mainUsPerMessage: (elu.active * 1000) / messages, cpuUsPerMessage: (cpu.user + cpu.system) / messages };
}

function main(): void {
  const [brokers, a, b, roundsArg, messagesArg] = process.argv.slice(2);
  if (!brokers || !a || !b) throw new Error('usage: delivery-reports-ab <brokers> <a.node> <b.node> [rounds] [messages]');
  const rounds = Number(roundsArg ?? 6), messages = Number(messagesArg ?? 150_000);
  const installed = path.join(path.dirname(require.resolve('node-rdkafka/package.json')), 'build', 'Release', 'node-librdkafka.node');
  const keep = `${installed}.ab-kept`;
  fs.copyFileSync(installed, keep);
  /** the build at `from` becomes the installed addon: copied beside it, then renamed over it (a new file) */
  const install = (from: string) => {
    const next = `${installed}.ab-next`;
    fs.copyFileSync(from, next);
    fs.renameSync(next, installed);
  };
  const results: Record<'a' | 'b', RunResult[]> = { a: [], b: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      // alternate which goes first, so neither always runs on the warmer machine
      for (const v of r % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
        install(v === 'a' ? a : b);
        const topic = `delivery-reports-ab-${process.pid}-${r}-${v}`;
        const out = spawnSync(process.execPath, [__filename, '--child', brokers, topic, String(messages)], { encoding: 'utf8' });
        if (out.status !== 0) throw new Error(`run ${r} ${v} failed: ${out.stderr}`);
        results[v].push(JSON.parse(out.stdout.trim().split('\n').pop()!) as RunResult);
      }
    }
  } finally {
    install(keep);
    fs.unlinkSync(keep);
  }
  const med = (v: 'a' | 'b', k: keyof RunResult) => round(median(results[v].map((x) => x[k])), 2);
  const lower = results.b.filter((x, i) => x.mainUsPerMessage < results.a[i].mainUsPerMessage).length;
  console.log(`| addon | main thread µs per message (median of ${rounds}) | process CPU µs per message |`);
  console.log('|---|---:|---:|');
  console.log(`| a: ${path.basename(a)} | ${med('a', 'mainUsPerMessage')} | ${med('a', 'cpuUsPerMessage')} |`);
  console.log(`| b: ${path.basename(b)} | ${med('b', 'mainUsPerMessage')} | ${med('b', 'cpuUsPerMessage')} |`);
  console.log(`\nb lower than a in ${lower} of ${rounds} rounds`);
  console.log(JSON.stringify({ rounds, messages, results }));
}

if (process.argv[2] === '--child') {
  const [, , , brokers, topic, messages] = process.argv;
  child(brokers, topic, Number(messages)).then((r) => { console.log(JSON.stringify(r)); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
} else {
  main();
}
