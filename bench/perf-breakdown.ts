/**
 * Where one process's CPU went, from a Linux `perf` profile of a bench run:
 * each sample is given to the thread it ran on (main thread, worker, V8's
 * background threads, librdkafka's threads) and to the innermost frame of its
 * stack that a category below recognises. Run the services with
 * `--perf-basic-prof` so JavaScript frames have names:
 *
 *   perf record -a -g -F 499 -o /tmp/perf.data &
 *   BENCH_NODE_ARGS=--perf-basic-prof node dist/bench/run.js --only limit.e2e,commands.max --runs 1
 *   kill -INT %1
 *   perf script -i /tmp/perf.data -F comm,pid,tid,time,ip,sym > /tmp/perf.txt
 *   node dist/bench/perf-breakdown.js /tmp/perf.txt <pid> [from-seconds to-seconds] [--worker <tid>]
 *
 * The pid is the service's (its log names it; `perf script -F pid | sort |
 * uniq -c` shows the busy ones); the window (perf's clock, seconds) keeps the
 * steady part and leaves out start-up and warm-up. Prints the shares as
 * Markdown; multiply by the run's CPU µs per command for µs.
 */
import * as fs from 'node:fs';

interface Sample { comm: string; pid: number; tid: number; time: number; frames: string[] }

/** Innermost match wins: a socket read that ends in our code is our code. */
const CATEGORIES: Array<[string, RegExp]> = [
  ['Kafka: consumed messages to objects', /HandleOKCallback|ToV8Object|KafkaConsumer\.|kafka-consumer\.js/],
  ['Kafka: delivery reports', /DeliveryReportDispatcher|delivery-report/],
  ['Kafka: produce', /Producer\.produce|NodeProduce|producev/],
  ['hand-off to and from the worker', /ReceiveMessage|ValueDeserializer|ValueSerializer|postTask|_distributeTask|PostMessage|worker_pool/],
  ['re-send filter', /resent-commands/],
  ['Postgres client', /node_modules\/pg|pg-protocol|pg-pool|uv__read|onStreamRead|writev|uv__write|copy-in|db\/sql/],
  ['decode commands', /decodeCommand|JsonParse|isUtf8|uuidOf|isUuid/],
  ['encode events (envelope, COPY rows)', /encodeEnvelope|pgcopy|jsonString|newEventId|randomFill/],
  ['decide (decider, outcomes, bookkeeping)', /decider\.js|decideShard|decide-shard|domain\//],
  ['parse events (envelope scan or JSON)', /envelope-scan|codec\/envelope\.js/],
  ['project (fold, checks, key order)', /project-shard/],
  ['pack and unpack', /pack\.js|event-chunk/],
  ['batching (RxJS, timers, pipeline core)', /rxjs|batch-sink|partitioned-pipeline|commit-chain|batch-runner|listOnTimeout|processTimers/],
  ['role: prepare, states, commit, metrics; the limit service\'s own loop', /command-role|account-states|projection-role|projected-versions|prom-client|e2e-limit-service|projection-limit-service/],
  ['garbage collection', /Heap::|Scaveng|MarkCompact|GarbageCollect|Sweep|Marking|ArrayBufferSweeper/],
  ['JIT compilation', /compiler::|Compile|Maglev|Turbofan/],
  ['malloc and free', /malloc|_int_free|cfree|unlink_chunk|calloc/],
  ['start-up (loading code)', /Module\._load|compileForInternalLoader|LoadEnvironment|execve|wrapSafe/],
];

function parse(file: string, pid: number, from: number, to: number): Sample[] {
  const out: Sample[] = [];
  let cur: Sample | null = null;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    // a thread's name may hold spaces: it is everything before "pid/tid"
    const h = /^\s*(.+?)\s+(\d+)\/(\d+)\s+([\d.]+):?\s*$/.exec(line);
    if (h) {
      cur = { comm: h[1], pid: Number(h[2]), tid: Number(h[3]), time: Number(h[4]), frames: [] };
      if (cur.pid === pid && cur.time >= from && cur.time < to) out.push(cur);
      continue;
    }
    const f = line.trim();
    if (f && cur) cur.frames.push(f.replace(/^[0-9a-f]+\s+/, ''));
  }
  return out;
}

function main(): void {
  const [file, pidArg, fromArg, toArg] = process.argv.slice(2).filter((a, i, all) => a !== '--worker' && all[i - 1] !== '--worker');
  if (!file || !pidArg) throw new Error('usage: perf-breakdown <perf script output> <pid> [from-seconds to-seconds]');
  const pid = Number(pidArg);
  const samples = parse(file, pid, Number(fromArg ?? 0), Number(toArg ?? Infinity));
  if (samples.length === 0) throw new Error(`no samples of pid ${pid} in that window`);
  const perThread = new Map<number, number>();
  for (const s of samples) perThread.set(s.tid, (perThread.get(s.tid) ?? 0) + 1);
  // Node starts V8's platform threads right after the main thread; a worker is the busiest `node` thread after them,
  // if it did a twentieth of the work (the limit services have none; `--worker <tid>` names it outright)
  const named = process.argv.indexOf('--worker');
  const busiest = [...perThread].filter(([tid]) => tid > pid + 5 && samples.find((s) => s.tid === tid)!.comm === 'node').sort((a, b) => b[1] - a[1])[0];
  const worker = named > 0 ? Number(process.argv[named + 1]) : busiest && busiest[1] >= samples.length / 20 ? busiest[0] : undefined;
  const thread = (s: Sample) => s.tid === pid ? 'main' : s.tid === worker ? 'worker' : s.comm.startsWith('rdk:') ? 'librdkafka threads' : s.tid <= pid + 5 ? 'V8 background' : 'other threads';
  const category = (s: Sample) => {
    for (const f of s.frames) for (const [name, re] of CATEGORIES) if (re.test(f)) return name;
    return 'other (native, unattributed)';
  };
  const cells = new Map<string, number>();
  const threads = new Map<string, number>();
  for (const s of samples) {
    const t = thread(s);
    const k = `${t}\t${category(s)}`;
    cells.set(k, (cells.get(k) ?? 0) + 1);
    threads.set(t, (threads.get(t) ?? 0) + 1);
  }
  const pct = (n: number) => `${((100 * n) / samples.length).toFixed(1)}%`;
  console.log(`pid ${pid}: ${samples.length} samples${worker ? `, worker thread ${worker}` : ''}\n`);
  console.log('| thread | share |\n|---|---:|');
  for (const [t, n] of [...threads].sort((a, b) => b[1] - a[1])) console.log(`| ${t} | ${pct(n)} |`);
  console.log('\n| thread | where | share |\n|---|---|---:|');
  for (const [k, n] of [...cells].sort((a, b) => b[1] - a[1])) {
    if (n / samples.length < 0.003) continue;
    const [t, c] = k.split('\t');
    console.log(`| ${t} | ${c} | ${pct(n)} |`);
  }
}

main();
