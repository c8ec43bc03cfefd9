/**
 * `npm run bench` (quick, ~10 min here) and `npm run bench -- --full`.
 * Runs banking-es's command pipeline end to end next to the physical limits
 * (binary COPY of the same rows, Kafka produce/consume/round trip of the same
 * messages) and a naive baseline, all in the same run on the same machine;
 * and transfers: commands.mix=0.3 (the demo's mix), and transfers.max and
 * transfers.latency@1000/s (and @2000/s in --full), whose CPU per transfer is
 * read against commands.max's per command.
 * Each benchmark runs several times; results are medians with min/max, CPU
 * and peak RSS per process, ratios to the limit and to the baseline. Every
 * run is checked: outcomes against the generator's model and balances in
 * Postgres; a fast wrong answer is a failed run. Writes bench/results/
 * <stamp>.json, .md and .svg. Options: --full, --runs N, --only a,b.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { randomUUID } from 'node:crypto';
import { stackUp, stackDown, readStack, stackStatus } from '../dev/stack/stack';
import { loadConfig } from '../src/config';
import { STAGES } from '../src/metrics';
import { packageRoot } from '../src/paths';
import { Workload } from '../dev/loadgen/generator';
import { drive, ensureTopics, percentile, type DriveResult } from '../dev/loadgen/driver';
import { createPool } from '../src/db/pool';
import { migrate } from '../src/db/migrate';
import { createLogger } from '../src/logger';
import { summarize, median, round, ProcessMeter, pidsMatching, pidsNamed, type Summary, type ProcUsage } from './lib/stats';
import { encodedEventBatches, copyLimit, produceLimit, consumeLimit, commandMessages } from './lib/limits';
import { startService, cli, benchEntry, type Service } from './lib/service';
import { lineChart } from './lib/svg';
import { checkStore } from '../dev/loadgen/store-check';
import { eventHistory } from './lib/events';
import { formatStages, metricsPortFromLog, scrapeStages, stageFigures, type StageFigures, type StageSnapshot } from './lib/stages';
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../src/kafka/client-config';

const argv = process.argv.slice(2);
const full = argv.includes('--full');
const runs = Number(argv[argv.indexOf('--runs') + 1]) || (full ? 5 : 3);
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null;
const want = (name: string) => !only || only.some((o) => name.startsWith(o));
const size = full
  ? { cmds: 300_000, baseline: 20_000, latencySecs: 20, copyRows: 300_000, transfers: 100_000, transferRates: [1000, 2000] }
  : { cmds: 100_000, baseline: 6_000, latencySecs: 8, copyRows: 100_000, transfers: 30_000, transferRates: [1000] };

/**
 * The unmeasured warm-up of every driven run, on its own topics: banking-es and the driven limits alike.
 * At full load: 40,000 commands. After the 10,000 used before, a perf profile of commands.max showed
 * V8's compiler threads at up to 0.6 of a core for the first 3–4 s of the measured part, 13.5% of the
 * daemon's samples: at full load a batch holds thousands of commands, so functions called once per
 * batch or per shard (decideShard, prepare) were still being optimized. After 40,000: 3–4%.
 * Interleaved, 4 rounds: the service's CPU per command 64.1 / 50.2 / 48.5 / 60.6 → 51.3 / 48.4 /
 * 40.2 / 47.9 µs, lower in every round; limit.e2e (no warm-up before) neither slower nor faster
 * (median 24.3k → 24.7k commands/s, the mock's CPU per command 4.7 → 4.9 µs).
 * The transfer cases keep 10,000, as before: not profiled, and their workload is 30,000 commands,
 * so a warm-up as long would double their topics and rows.
 * At a fixed rate: one second of it. Four seconds made both banking-es and the floor slower
 * (2 rounds; at 10,000/s the floor's p50 30 → 39–41 ms, the mock's CPU per command 32–35 → 43 µs):
 * the mock finds each fetch offset by walking the partition's message sets, and at a fixed rate it
 * is asked for small fetches often.
 */
const WARMUP_COMMANDS = 40_000;
const WARMUP_TRANSFER_COMMANDS = 10_000;
const warmupOf = (rate: number, transfers = false): number => (rate ? rate : transfers ? WARMUP_TRANSFER_COMMANDS : WARMUP_COMMANDS);

interface Result {
  name: string; unit: string; value: Summary; limit?: string; ofLimit?: number; vsBaseline?: number;
  latencyMs?: { p50: Summary; p95: Summary; p99: Summary };
  /** at a fixed rate: p50 and p99 over those of limit.e2e at the same rate (1 = the floor) */
  latencyOverFloor?: { p50: number; p99: number };
  /** a transfer case: its daemon CPU (service + Postgres) per transfer over that per command of commands.max */
  cpuVsCommands?: number;
  /** CPU and peak RSS per process group, of the last run */
  procs?: Record<string, ProcUsage>;
  /** CPU µs per command (or event) per process group: the median over the runs */
  cpuUsPerOp?: Record<string, number>;
  /** the daemon's stage histograms over the measured part (medians over the runs of each figure), ms */
  stagesMs?: Record<string, StageFigures>;
  /** the same for the transfers pipeline, in a transfer case */
  transferStagesMs?: Record<string, StageFigures>;
  ok: boolean; notes?: string;
}
const results: Result[] = [];
const timelines: Record<string, Array<[number, number]>> = {};
const say = (s: string) => process.stderr.write(`${s}\n`);
const progress = (s: string) => process.stderr.write(process.stderr.isTTY ? `\r${s.padEnd(100)}` : '');

/** Per-run figures of one case, summarised per process group and per stage as medians over the runs. */
class CaseCosts {
  private readonly perOp = new Map<string, number[]>();
  private readonly stages = new Map<string, StageFigures[]>();
  /** `ops` commands or events were handled while `procs` was metered */
  add(procs: Record<string, ProcUsage>, ops: number, stages?: Record<string, StageFigures>): void {
    if (ops <= 0) return;
    for (const [name, p] of Object.entries(procs)) {
      if (!this.perOp.has(name)) this.perOp.set(name, []);
      this.perOp.get(name)!.push((p.cpuSeconds * 1e6) / ops);
    }
    for (const [stage, f] of Object.entries(stages ?? {})) {
      if (!this.stages.has(stage)) this.stages.set(stage, []);
      this.stages.get(stage)!.push(f);
    }
  }
  cpuUsPerOp(): Record<string, number> {
    return Object.fromEntries([...this.perOp].map(([k, xs]) => [k, round(median(xs), 1)]));
  }
  stagesMs(): Record<string, StageFigures> | undefined {
    if (this.stages.size === 0) return undefined;
    // a p99 past the last bucket is NaN: left out of the median
    const m = (fs: StageFigures[], k: keyof StageFigures) => round(median(fs.map((f) => f[k]).filter((x) => !Number.isNaN(x))), 2);
    return Object.fromEntries([...this.stages].map(([s, fs]) => [s, { meanMs: m(fs, 'meanMs'), p50Ms: m(fs, 'p50Ms'), p99Ms: m(fs, 'p99Ms'), count: m(fs, 'count') }]));
  }
}

/** The runs of one driven command case (a limit service or banking-es) at one rate: rate, latency, costs, verdict. */
class DrivenRuns extends CaseCosts {
  /** `unit` transfers/s: latencies are the Transfers' own (produce → final outcome), not the opens' around them */
  constructor(private readonly unit = 'commands/s') { super(); }
  private readonly rates: number[] = [];
  private readonly p50: number[] = [];
  private readonly p95: number[] = [];
  private readonly p99: number[] = [];
  private procs: Record<string, ProcUsage> | undefined;
  private notes = '';
  /** the transfers pipeline's stages (a transfer case) */
  readonly steps = new CaseCosts();

  /** Adds a run of `ops` operations (commands, or transfers); says what was wrong with it (appended to the notes) when `wrong` is not empty. */
  override add(procs: Record<string, ProcUsage>, ops: number, stages?: Record<string, StageFigures>, r?: DriveResult, wrong = ''): void {
    super.add(procs, ops, stages);
    this.procs = procs;
    if (!r) return;
    this.rates.push(ops / (r.elapsedMs / 1000));
    const lat = this.unit === 'transfers/s' ? r.transferLatenciesMs : r.latenciesMs;
    this.p50.push(percentile(lat, 50)); this.p95.push(percentile(lat, 95)); this.p99.push(percentile(lat, 99));
    if (wrong) this.notes += `run ${this.rates.length}: ${wrong}. `;
  }

  /** "N commands/s, p50 / p95 / p99 … ms" of the latest run */
  latest(): string {
    const i = this.rates.length - 1;
    return `${Math.round(this.rates[i])} ${this.unit}, p50 / p95 / p99 ${this.p50[i].toFixed(0)} / ${this.p95[i].toFixed(0)} / ${this.p99[i].toFixed(0)} ms`;
  }

  result(name: string): Result {
    return {
      name, unit: this.unit, value: summarize(this.rates), latencyMs: { p50: summarize(this.p50), p95: summarize(this.p95), p99: summarize(this.p99) },
      procs: this.procs, cpuUsPerOp: this.cpuUsPerOp(), stagesMs: this.stagesMs(), transferStagesMs: this.steps.stagesMs(), ok: this.notes === '', notes: this.notes || undefined,
    };
  }
}

/** Stage histograms of a banking-es service, when it logged its metrics port (undefined for the limit services). */
async function stagesOf(logFile: string, pipeline: string): Promise<StageSnapshot | undefined> {
  const port = metricsPortFromLog(logFile);
  return port === undefined ? undefined : scrapeStages(port, pipeline).catch(() => undefined);
}

async function main() {
  const root = packageRoot();
  const external = process.env.BENCH_EXTERNAL === '1';
  const dir = '.banking-es-bench';
  let brokers: string, dbUrl: string;
  let dropDatabase: (() => Promise<void>) | undefined;
  const wasUp = stackStatus(dir).up;
  if (external) {
    const { config } = loadConfig();
    brokers = config.kafka.brokers;
    dbUrl = config.db.url;
    say(`external Kafka ${brokers} and Postgres (from config)`);
  } else {
    if (wasUp) say(`reusing the bench stack already running in ${dir}: its mock Kafka still holds every earlier run's topics (1.3 GB after a morning of runs, and slower); \`banking-es stack down --dir ${dir}\` first for clean figures`);
    else say('starting the embedded stack for the benchmark…');
    const s = wasUp ? readStack(dir)! : await stackUp(dir);
    brokers = s.kafka.brokers;
    const admin = new Client({ connectionString: s.postgres.adminUrl });
    await admin.connect();
    const name = `bench_${Date.now()}`;
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    dbUrl = s.postgres.adminUrl.replace(/\/postgres$/, `/${name}`);
    // the stack keeps its data between runs: it must not collect one database per bench run
    dropDatabase = async () => {
      const a = new Client({ connectionString: s.postgres.adminUrl });
      await a.connect();
      try { await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } finally { await a.end(); }
    };
  }
  const log = createLogger({ level: 'warn' });
  const pool = createPool({ url: dbUrl, max: 2 }, log);
  await migrate(pool);
  const logs = path.join(root, dir, 'logs');
  // by executable name: a command line holding a postgres:// URL (the baseline, the limit services) is not Postgres
  const pgPids = () => pidsNamed('postgres');
  const mockPids = () => pidsMatching('kafka-mock-host');
  const started = Date.now();
  try {
    // ── limits ──────────────────────────────────────────────────────────────
    if (want('limit.copy')) {
      say('limit: binary COPY of the pipeline\'s own event rows (durable commits, 4000-row transactions)');
      const batches = encodedEventBatches(size.copyRows, 4000);
      const xs: number[] = [];
      for (let i = 0; i < runs; i++) { xs.push(await copyLimit(dbUrl, batches)); progress(`  run ${i + 1}/${runs}: ${Math.round(xs[i])} rows/s`); }
      results.push({ name: 'limit.copy', unit: 'rows/s', value: summarize(xs), ok: true });
      await pool.query('TRUNCATE events, command_rejections, consumer_offsets');
    }
    const msgs = commandMessages(60_000);
    if (want('limit.produce')) {
      say('\nlimit: Kafka produce (acknowledged) of 60k command messages');
      const xs: number[] = [];
      for (let i = 0; i < runs; i++) xs.push(await produceLimit(brokers, `bench.produce.${randomUUID().slice(0, 8)}`, msgs));
      results.push({ name: 'limit.produce', unit: 'msgs/s', value: summarize(xs), ok: true });
    }
    if (want('limit.consume')) {
      say('limit: Kafka consume into JavaScript of 60k preloaded command messages (a fresh topic per run: the mock keeps ~5 MB per partition)');
      const xs: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t = `bench.consume.${randomUUID().slice(0, 8)}`;
        await produceLimit(brokers, t, msgs);
        xs.push(await consumeLimit(brokers, t, msgs.length));
      }
      results.push({ name: 'limit.consume', unit: 'msgs/s', value: summarize(xs), ok: true });
    }
    const driveRun = async (svc: Service, topics: { cmd: string; res: string }, commands: number, rate: number, window = 20_000, skew: 'uniform' | number = 'uniform', transferRatio = 0): Promise<{ r: DriveResult; procs: Record<string, ProcUsage>; w: Workload }> => {
      const w = new Workload({ accounts: Math.max(100, Math.floor(commands / 40)), commands, seed: Math.floor(Math.random() * 1e9), skew, transferRatio });
      const meter = new ProcessMeter({ service: () => [svc.pid], postgres: pgPids, 'kafka-mock': mockPids, driver: () => [process.pid] });
      meter.begin();
      const r = await drive(w, { brokers, commandsTopic: topics.cmd, resultsTopic: topics.res, rate, window, timeoutMs: 600_000,
        onProgress: (p) => progress(`  ${svc.name}: ${p.answered}/${p.total} answered, ${Math.round(p.answered / (p.elapsedMs / 1000))}/s`) });
      return { r, procs: meter.end(), w };
    };
    /** Balances that differ from the model, plus failed transfer checks (counts, in flight, conservation), and what they are. */
    const storeProblems = async (w: Workload): Promise<{ n: number; why: string }> => {
      const c = await checkStore(pool, w);
      const n = c.wrongBalances + c.transfersWrong, t = c.transfers, m = w.transfers;
      return { n, why: n ? `${c.wrongBalances} balances differ; transfers ${t.credited} credited / ${t.refunded} refunded / ${t.open} in flight (model ${m.credited} / ${m.refunded} / 0); ${c.conservation.join(', ')}` : '' };
    };
    const topicsFor = async (tag: string) => {
      const t = { cmd: `bench.${tag}.cmd.${randomUUID().slice(0, 6)}`, res: `bench.${tag}.res.${randomUUID().slice(0, 6)}` };
      await ensureTopics(brokers, [t.cmd, t.res, `${t.cmd}.dlq`, `${t.cmd}.transfers`, `${t.cmd}.transfers.dlq`]);
      return t;
    };

    /**
     * A limit service driven like banking-es: the same driver, workload and window; at maximum load
     * (rate 0) or at fixed rates, where its latency is the floor banking-es's is read against.
     */
    const limitCase = async (name: string, what: string, entry: string, extraArgs: string[], timeline: string, rates: number[] = [0]) => {
      say(`\nlimit: ${what}, with the same driver`);
      for (const rate of rates) {
        const runsOf = new DrivenRuns();
        for (let i = 0; i < runs; i++) {
          const t = await topicsFor(name.replace('limit.', ''));
          const svc = await startService(name, [benchEntry(entry), brokers, t.cmd, t.res, ...extraArgs], {}, path.join(logs, `bench-${name}.log`));
          try {
            // the same unmeasured warm-up as banking-es gets
            await driveRun(svc, t, warmupOf(rate), rate);
            const { r, procs: p } = await driveRun(svc, t, rate ? Math.round(rate * size.latencySecs) : size.cmds, rate);
            runsOf.add(p, r.answered, undefined, r, r.timedOut || r.answered < r.sent ? `${r.sent - r.answered} unanswered` : '');
            if (rate) say(`  run ${i + 1}/${runs}: ${runsOf.latest()}`);
            if (i === 0 && !rate) timelines[timeline] = r.perSecond.map((v, s) => [s, v]);
          } finally { await svc.stop(); }
        }
        results.push(runsOf.result(rate ? `${name}@${rate}/s` : name));
      }
    };
    const latencyRates = full ? [1000, 10000, 30000] : [1000, 10000];
    if (want('limit.roundtrip')) await limitCase('limit.roundtrip', 'Kafka round trip (an echo service answers every command, no Postgres)', 'echo-service.js', [], 'Kafka round trip (echo)');
    // the latency floor runs with the latency cases: `--only commands.latency` measures both
    const e2eRates = [...(want('limit.e2e') ? [0] : []), ...(want('commands.latency') ? latencyRates : [])];
    if (e2eRates.length) {
      await limitCase('limit.e2e', 'end to end (one pre-encoded event row per command by COPY, offsets in the same durable transaction, an outcome each; no decisions)', 'e2e-limit-service.js', [dbUrl], 'end-to-end limit', e2eRates);
      await pool.query('TRUNCATE events, command_rejections, consumer_offsets');
    }

    const daemonEnv = (t: { cmd: string; res: string }, extra: Record<string, string> = {}) => ({
      NODE_ENV: 'production', BANKING_ES_STACK_DIR: dir, KAFKA_BROKERS: brokers, DATABASE_URL: dbUrl, ROLES: 'commands', METRICS_PORT: '0', METRICS_HOST: '127.0.0.1', LOG_LEVEL: 'info',
      KAFKA_TOPIC_COMMANDS: t.cmd, KAFKA_TOPIC_RESULTS: t.res, KAFKA_TOPIC_COMMANDS_DLQ: `${t.cmd}.dlq`, KAFKA_GROUP_ID: `bench-${randomUUID().slice(0, 8)}`, REDIS_URL: '',
      KAFKA_TOPIC_TRANSFERS: `${t.cmd}.transfers`, KAFKA_TOPIC_TRANSFERS_DLQ: `${t.cmd}.transfers.dlq`, KAFKA_TRANSFER_GROUP_ID: `bench-tr-${randomUUID().slice(0, 8)}`, ...extra,
    });

    /**
     * Every run gets fresh topics and a fresh daemon: the mock cluster finds a fetch offset by walking
     * a partition's message sets, so a topic that many small produce batches have grown makes every
     * later fetch slower (p99 at 10k/s grew 95 -> 157 -> 385 -> 1,722 ms over four runs on one topic).
     * An unmeasured warm-up on the same topics comes first (warmupOf).
     */
    const runDaemonCase = async (name: string, extra: Record<string, string>, commands: number, rates: number[], skew: 'uniform' | number = 'uniform', transferRatio = 0, unit: 'commands/s' | 'transfers/s' = transferRatio ? 'transfers/s' : 'commands/s') => {
      say(`\n${name}: banking-es end to end (${Object.entries(extra).map(([k, v]) => `${k}=${v}`).join(' ') || 'defaults'}${transferRatio ? `, ${Math.round(transferRatio * 100)}% transfers` : ''})`);
      const perTransfer = unit === 'transfers/s';
      for (const rate of rates) {
        const runsOf = new DrivenRuns(unit);
        for (let i = 0; i < runs; i++) {
          const t = await topicsFor(name.replace(/[^a-z0-9]/gi, ''));
          const logFile = path.join(logs, `bench-${name}.log`);
          const svc = await startService('banking-es', [cli(), 'start'], daemonEnv(t, extra), logFile);
          try {
            const n = rate ? Math.round(rate * size.latencySecs) : commands;
            // warm-up, not measured: JIT, worker start, first batches (a fresh daemon otherwise pays them inside the measured part)
            await driveRun(svc, t, warmupOf(rate, transferRatio > 0), rate, 20_000, skew, transferRatio);
            const before = await stagesOf(logFile, 'commands');
            const stepsBefore = transferRatio ? await stagesOf(logFile, 'transfers') : undefined;
            const { r, procs: p, w } = await driveRun(svc, t, n, rate, 20_000, skew, transferRatio);
            const after = await stagesOf(logFile, 'commands');
            const stepsAfter = transferRatio ? await stagesOf(logFile, 'transfers') : undefined;
            const stages = before && after ? stageFigures(before, after) : undefined;
            if (stepsBefore && stepsAfter) runsOf.steps.add({}, 1, stageFigures(stepsBefore, stepsAfter));
            const store = await storeProblems(w);
            // a transfer case counts its transfers (first sends): the opens and re-sends around them are part of its cost
            const ops = perTransfer ? Math.round(w.transferCommands * (r.answered / r.sent)) : r.answered;
            const wrong = r.mismatches || r.timedOut || store.n
              ? `${r.mismatches} outcome mismatches (${r.mismatchSamples.join('; ')}), ${r.sent - r.answered} unanswered, ${store.n} wrong balances or transfer checks (${store.why})` : '';
            if (wrong) say(`  WRONG: ${wrong}`);
            runsOf.add(p, ops, stages, r, wrong);
            say(`  run ${i + 1}/${runs}: ${runsOf.latest()}, daemon ${round((p.service.cpuSeconds * 1e6) / ops)} µs CPU per ${perTransfer ? 'transfer' : 'command'}`);
            say(`    stages, mean ms: ${formatStages(stages)}`);
            if (stepsBefore && stepsAfter) say(`    transfers role, mean ms: ${formatStages(stageFigures(stepsBefore, stepsAfter))}`);
            if (i === 0 && !rate && name === 'commands.max') timelines['banking-es'] = r.perSecond.map((v, s) => [s, v]);
          } finally { await svc.stop(); }
        }
        results.push(runsOf.result(rate ? `${name}@${rate}/s` : name));
      }
    };

    if (want('commands.max')) await runDaemonCase('commands.max', {}, size.cmds, [0]);
    if (want('commands.latency')) await runDaemonCase('commands.latency', {}, 0, latencyRates);
    if (full && want('commands.workers')) for (const n of [0, 1, 2, 4]) await runDaemonCase(`commands.workers=${n}`, { PIPELINE_WORKERS: String(n) }, size.cmds, [0]);
    if (full && want('commands.batch')) for (const [b, tms] of [[1000, 5], [5000, 10], [10000, 20]]) await runDaemonCase(`commands.batch=${b}/${tms}ms`, { PIPELINE_BATCH_SIZE: String(b), PIPELINE_BATCH_TIME_MS: String(tms) }, size.cmds, [0]);
    // hot accounts: Zipf(1.1) over the same number of accounts vs the uniform commands.max above
    if (full && want('commands.zipf')) await runDaemonCase('commands.zipf=1.1', {}, size.cmds, [0], 1.1);
    // transfers: every command after the opens is a Transfer (a few to closed or missing accounts, or across
    // currencies), with the transfers role in the same daemon; CPU per transfer is read against commands.max.
    // commands.mix: a third of them transfers among deposits and withdrawals, as the demo sends
    if (want('commands.mix')) await runDaemonCase('commands.mix=0.3', { ROLES: 'commands,transfers' }, size.transfers, [0], 'uniform', 0.3, 'commands/s');
    if (want('transfers.max')) await runDaemonCase('transfers.max', { ROLES: 'commands,transfers' }, size.transfers, [0], 'uniform', 1);
    if (want('transfers.latency')) await runDaemonCase('transfers.latency', { ROLES: 'commands,transfers' }, 0, size.transferRates, 'uniform', 1);
    if (full && want('commands.redis')) {
      const s = readStack(dir);
      if (s?.redis) await runDaemonCase('commands.redis=on', { REDIS_URL: s.redis.url }, size.cmds, [0]);
    }

    /** bank.events → committed read models, streamed by this process; `checked` compares every projected balance and version. */
    const projectionCase = async (name: string, start: (t: { cmd: string; res: string }) => Promise<Service>, logFile: string, checked: boolean) => {
      const xs: number[] = [];
      const costs = new CaseCosts();
      let procs: Record<string, ProcUsage> | undefined;
      let ok = true, notes = '';
      const producer = new Kafka.Producer({ 'bootstrap.servers': brokers, 'linger.ms': 5, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4', 'dr_cb': false } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
      await new Promise<void>((res, rej) => producer.connect({}, (e) => (e ? rej(e) : res())));
      producer.setPollInterval(5);
      try {
        for (let i = 0; i < runs; i++) {
          // a fresh events topic and projector per run, as for the command runs
          const t = await topicsFor('proj');
          const svc = await start(t);
          try {
            // warm-up, not measured: 10,000 events of other accounts, projected before the clock starts
            const warm = eventHistory(10_000, 500, 9000 + i);
            const warmIds = [...warm.expected.keys()];
            for (const e of warm.events) { for (;;) { try { producer.produce(t.cmd, null, e.value, e.key); break; } catch { producer.poll(); await new Promise((r) => setTimeout(r, 5)); } } }
            // progress is read from the offsets the projector commits in the same transaction as its rows: a
            // few rows for the run's topic. Summing versions over every account of the run instead cost
            // Postgres ~4 ms of CPU per probe (5,000 ids; ~7 ms at 10,000), about 0.1 core at 20 probes a second.
            const committed = async () => Number((await pool.query<{ n: string }>('SELECT coalesce(sum(next_offset),0) AS n FROM consumer_offsets WHERE topic = $1', [t.cmd])).rows[0].n);
            const warmDeadline = performance.now() + 60_000;
            while (performance.now() < warmDeadline && (await committed()) < warm.events.length) await new Promise((r) => setTimeout(r, 50));
            const warmed = Number((await pool.query<{ n: string }>('SELECT coalesce(sum(version),0) AS n FROM account_projections WHERE account_id = ANY($1::uuid[])', [warmIds])).rows[0].n);
            if (warmed !== warm.events.length) { ok = false; notes += `run ${i + 1}: the warm-up projected ${warmed} of ${warm.events.length} events. `; }
            const base = await committed();
            // long enough to be sustained: the clock runs until the last flush committed, and that tail
            // (two flushes, ~0.4 s) was a quarter of a 100k-event run
            const h = eventHistory(full ? 600_000 : 300_000, full ? 10_000 : 5000, 1000 + i);
            const ids = [...h.expected.keys()];
            const before = await stagesOf(logFile, 'projections');
            const meter = new ProcessMeter({ service: () => [svc.pid], postgres: pgPids, 'kafka-mock': mockPids, driver: () => [process.pid] });
            meter.begin();
            const t0 = performance.now();
            // stream: never more than 80k events ahead of the projector. The mock keeps ~5 MB per partition, and
            // 80k events are ~28 MB raw, ~12 MB as lz4 batches: ~3 MB per partition. At 40k the projector, which
            // holds up to two flushes (~20k events each) in flight, ran dry between refills, and smaller flushes
            // cost it more per event (4 interleaved runs each: 60.6–81.3k events/s at 40k, 78.4–84.0k at 80k).
            let sent = 0, done = 0;
            const projected = async () => (await committed()) - base;
            while (done < h.events.length) {
              while (sent < h.events.length && sent - done < 80_000) {
                const e = h.events[sent];
                try { producer.produce(t.cmd, null, e.value, e.key); sent++; } catch { producer.poll(); break; }
              }
              await new Promise((r) => setTimeout(r, 50));
              done = await projected();
              progress(`  projector: ${done}/${h.events.length} events projected`);
              if (performance.now() - t0 > 300_000) break;
            }
            const secs = (performance.now() - t0) / 1000;
            procs = meter.end();
            const after = await stagesOf(logFile, 'projections');
            costs.add(procs, done, before && after ? stageFigures(before, after) : undefined);
            xs.push(done / secs);
            const { rows } = await pool.query<{ account_id: string; balance: string; version: string }>('SELECT account_id, balance, version FROM account_projections WHERE account_id = ANY($1::uuid[])', [ids]);
            const wrong = ids.length - rows.filter((r) => { const x = h.expected.get(r.account_id)!; return (!checked || Number(r.balance) === x.balance) && Number(r.version) === x.version; }).length;
            if (wrong || done !== h.events.length) { ok = false; notes += `run ${i + 1}: ${wrong} accounts differ, ${h.events.length - done} events missing. `; }
            say(`  run ${i + 1}/${runs}: ${Math.round(xs[i])} events/s`);
          } finally { await svc.stop(); }
        }
      } finally {
        producer.setPollInterval(0); // no poll() while disconnect() deletes the native handle (src/kafka/producer.ts)
        await new Promise<void>((r) => producer.disconnect(() => r()));
      }
      results.push({ name, unit: 'events/s', value: summarize(xs), procs, cpuUsPerOp: costs.cpuUsPerOp(), stagesMs: costs.stagesMs(), ok, notes: notes || undefined });
    };
    if (want('limit.projections')) {
      say('\nlimit: projections end to end (a transaction row per event, a folded account row per account by the same staging upsert, offsets, one durable transaction per flush; no parsing)');
      const logFile = path.join(logs, 'bench-limit.projections.log');
      await projectionCase('limit.projections', (t) => startService('limit.projections', [benchEntry('projection-limit-service.js'), brokers, t.cmd, dbUrl], {}, logFile), logFile, false);
      await pool.query('TRUNCATE transaction_projections, account_projections, consumer_offsets');
    }
    if (want('projections')) {
      say('\nprojections: bank.events → committed read models (banking-es, role projections)');
      const logFile = path.join(logs, 'bench-projections.log');
      await projectionCase('projections.max', (t) => startService('projector', [cli(), 'start'], { ...daemonEnv(t), ROLES: 'projections', KAFKA_TOPIC_EVENTS: t.cmd, KAFKA_TOPIC_EVENTS_DLQ: `${t.cmd}.dlq`, KAFKA_PROJECTION_GROUP_ID: `bench-proj-${randomUUID().slice(0, 8)}` }, logFile), logFile, true);
    }

    if (want('baseline')) {
      say('\nbaseline: naive one-message-at-a-time service on the same workload');
      const xs: number[] = [];
      const costs = new CaseCosts();
      let procs: Record<string, ProcUsage> | undefined;
      let ok = true, notes = '';
      for (let i = 0; i < runs; i++) {
        const t = await topicsFor('baseline');
        const svc = await startService('baseline', [benchEntry('baseline-service.js'), brokers, t.cmd, t.res, dbUrl, `baseline-${randomUUID().slice(0, 8)}`], {}, path.join(logs, 'bench-baseline.log'));
        try {
          const { r, procs: p, w } = await driveRun(svc, t, size.baseline, 0, 2000);
          const wrong = (await storeProblems(w)).n;
          if (r.mismatches || r.timedOut || wrong) { ok = false; notes += `run ${i + 1}: ${r.mismatches} mismatches, ${wrong} wrong balances. `; }
          xs.push(r.answered / (r.elapsedMs / 1000));
          procs = p;
          costs.add(p, r.answered);
          if (i === 0) timelines['baseline'] = r.perSecond.map((v, s) => [s, v]);
        } finally { await svc.stop(); }
      }
      results.push({ name: 'baseline', unit: 'commands/s', value: summarize(xs), procs, cpuUsPerOp: costs.cpuUsPerOp(), ok, notes: notes || undefined });
    }
  } finally {
    await pool.end();
    // BENCH_KEEP_DB=1 (with a stack already up, which the bench then leaves up): look into a failed run's rows
    if (process.env.BENCH_KEEP_DB === '1') say(`kept the bench database: ${dbUrl}`);
    else await dropDatabase?.().catch((e) => say(`could not drop the bench database: ${(e as Error).message}`));
    if (!external && !wasUp) await stackDown(dir);
  }

  // ratios
  const byName = new Map(results.map((r) => [r.name, r]));
  const base = byName.get('baseline')?.value.median;
  for (const r of results) {
    if (r.name.startsWith('projections')) r.limit = byName.has('limit.projections') ? 'limit.projections' : 'limit.consume';
    // commands: against the end-to-end limit (same Kafka and Postgres work, no decisions) when it ran, else the Kafka round trip
    if (r.name.startsWith('commands')) r.limit = byName.has('limit.e2e') ? 'limit.e2e' : 'limit.roundtrip';
    const lim = r.limit ? byName.get(r.limit)?.value.median : undefined;
    if (lim) r.ofLimit = round(r.value.median / lim, 2);
    if (r.name.startsWith('commands') && base) r.vsBaseline = round(r.value.median / base, 1);
    const rate = r.name.match(/^commands\.latency(@\d+\/s)$/)?.[1];
    const floor = rate ? byName.get(`limit.e2e${rate}`)?.latencyMs : undefined;
    if (r.latencyMs && floor) r.latencyOverFloor = { p50: round(r.latencyMs.p50.median / floor.p50.median, 1), p99: round(r.latencyMs.p99.median / floor.p99.median, 1) };
    const perCommand = byName.get('commands.max')?.cpuUsPerOp;
    const daemonCpu = (c: Record<string, number>) => (c.service ?? 0) + (c.postgres ?? 0);
    if (r.name.startsWith('transfers') && r.cpuUsPerOp && perCommand) r.cpuVsCommands = round(daemonCpu(r.cpuUsPerOp) / daemonCpu(perCommand), 1);
  }
  writeReport(results, timelines, (Date.now() - started) / 1000);
  if (results.some((r) => !r.ok)) process.exitCode = 1;
}

function writeReport(rs: Result[], tl: Record<string, Array<[number, number]>>, seconds: number) {
  const dir = path.join(packageRoot(), 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const meta = { when: new Date().toISOString(), suite: full ? 'full' : 'quick', runs, node: process.version, cpus: os.cpus().length, seconds: round(seconds) };
  fs.writeFileSync(path.join(dir, `${stamp}.json`), JSON.stringify({ meta, results: rs, timelines: tl }, null, 2));
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const groups = ['service', 'postgres', 'kafka-mock', 'driver'];
  const cost = (r: Result) => (r.cpuUsPerOp ? groups.map((g) => r.cpuUsPerOp![g] ?? '–').join(' / ') : '');
  const staged = rs.filter((r) => r.stagesMs);
  const lines = [
    `# banking-es benchmark (${meta.suite}, ${meta.when})`, '',
    `${meta.cpus} CPUs, Node ${meta.node}, ${runs} runs each; medians with [min–max]. Everything (daemon, Postgres, Kafka mock, load driver) shares the machine.`,
    'CPU µs per op: each process group\'s CPU seconds over the commands (or events) of the measured part, median over the runs; steadier than rates on a shared machine.', '',
    '| benchmark | median | [min–max] | unit | p50 / p95 / p99 ms | × floor p50 / p99 | of limit | × baseline | CPU µs per op (svc / pg / kafka / driver) | CPU cores (svc / pg / kafka / driver) | peak RSS MB (svc) | ok |',
    '|---|---:|---|---|---|---|---:|---:|---|---|---:|---|',
    ...rs.map((r) => `| ${r.name} | ${fmt(r.value.median)} | ${fmt(r.value.min)}–${fmt(r.value.max)} | ${r.unit} | ${r.latencyMs ? `${r.latencyMs.p50.median.toFixed(0)} / ${r.latencyMs.p95.median.toFixed(0)} / ${r.latencyMs.p99.median.toFixed(0)}` : ''} | ${r.latencyOverFloor ? `${r.latencyOverFloor.p50} / ${r.latencyOverFloor.p99}` : ''} | ${r.ofLimit !== undefined ? `${r.ofLimit} (${r.limit!.replace('limit.', '')})` : ''} | ${r.vsBaseline ?? ''} | ${cost(r)} | ${r.procs ? `${r.procs.service?.cpuCores} / ${r.procs.postgres?.cpuCores} / ${r.procs['kafka-mock']?.cpuCores} / ${r.procs.driver?.cpuCores}` : ''} | ${r.procs?.service?.peakRssMb ?? ''} | ${r.ok ? 'yes' : `NO: ${r.notes}`} |`),
    '',
    ...(rs.some((r) => r.cpuVsCommands) ? [
      '## Transfers against commands', '',
      'A transfer is three writes (the debit, the credit or refund, the settlement) on two accounts, by two roles; a command of commands.max (a deposit or a withdrawal) is one. Daemon CPU is the service\'s and Postgres\'s.', '',
      ...rs.filter((r) => r.cpuVsCommands).map((r) => `- ${r.name}: ${r.cpuVsCommands}× the daemon CPU per command of commands.max`),
      '',
    ] : []),
    ...(staged.length ? [
      '## Where the time goes (banking_es_pipeline_stage_seconds over the measured part)', '',
      'Mean ms per stage, and p50 / p99 as histogram bucket bounds (≤); medians over the runs. fetch: produced → consumed; batch: consumed → batch sealed; prepare: state and workers (worker: the workers\' part); wait: behind the commit before; write: COPY and checks; commit: offsets and COMMIT; publish: committed → outcomes acknowledged.', '',
      `| benchmark | ${STAGES.join(' | ')} |`, `|---|${STAGES.map(() => '---').join('|')}|`,
      ...staged.flatMap((r) => [[r.name, r.stagesMs!], ...(r.transferStagesMs ? [[`${r.name} (transfers role)`, r.transferStagesMs]] : [])] as Array<[string, Record<string, StageFigures>]>)
        .map(([name, st]) => `| ${name} | ${STAGES.map((s) => { const f = st[s]; return f ? `${f.meanMs} (${f.p50Ms} / ${f.p99Ms})` : ''; }).join(' | ')} |`),
      '',
    ] : []),
    `![throughput over time](${stamp}.svg)`, '', `Total ${round(seconds)} s. JSON: ${stamp}.json`,
  ];
  fs.writeFileSync(path.join(dir, `${stamp}.md`), lines.join('\n') + '\n');
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
  fs.writeFileSync(path.join(dir, `${stamp}.svg`), lineChart('Outcomes per second (first run of each)', 'seconds', 'outcomes/s', Object.entries(tl).map(([name, points], i) => ({ name, points, color: colors[i % colors.length] }))));
  process.stderr.write('\n');
  process.stdout.write(lines.join('\n') + '\n');
  process.stderr.write(`\nwritten: bench/results/${stamp}.{json,md,svg}\n`);
}

main().catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1); });
