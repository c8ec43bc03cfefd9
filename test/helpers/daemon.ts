/**
 * `banking-es start` as a child process for integration tests: waits on
 * typed state, not on log text (its metrics and /readyz, polled: partitions
 * owned, the relay streaming, ready), reads its pino lines for assertions,
 * samples its RSS, and stops it (SIGTERM, graceful) or kills it (SIGKILL, a crash).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { spawnCli, waitForExit } from './stack';

type Cli = ReturnType<typeof spawnCli>;

export interface LogLine { msg?: string; level?: number; [k: string]: unknown }

export class Daemon {
  private constructor(readonly child: Cli) {}

  static start(env: Record<string, string | undefined>): Daemon {
    return new Daemon(spawnCli(['start'], { BANKING_ES_STACK_DIR: process.env.BANKING_ES_STACK_DIR, ...env }));
  }

  get pid(): number { return this.child.pid!; }
  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }
  output(): string { return this.child.output(); }

  logs(): LogLine[] {
    return this.child.output().split('\n').flatMap((l) => {
      if (!l.startsWith('{')) return [];
      try { return [JSON.parse(l) as LogLine]; } catch { return []; }
    });
  }

  /**
   * Resolves once `pred` holds, polled every 100 ms; rejects when the daemon
   * exits first or after timeoutMs, with `what` and the daemon's output.
   * A failed poll (the metrics server not up yet) counts as "not yet".
   */
  async until(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.alive) throw new Error(`daemon exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}:\n${this.output()}`);
      if (await pred().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${this.output().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The first /readyz answer `want` accepts, polled every 100 ms; rejects after `ms` with the last answer. */
  async untilReadyz(want: (status: number, body: string) => boolean, ms: number, what: string): Promise<{ status: number; body: string }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await this.get('/readyz');
      if (want(r.status, r.body)) return r;
      if (Date.now() > deadline) throw new Error(`/readyz never showed ${what}; last ${r.status} ${r.body}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  /** Partitions `consumer` ('commands', 'transfers' or 'projections') owns now, by its metrics. */
  async partitionsOwned(consumer = 'commands'): Promise<number> {
    return (await this.metric(`banking_es_consumer_partitions_owned{consumer="${consumer}"}`)) ?? 0;
  }

  /**
   * Resolves once its `consumer` owns `partitions` partitions, by its metrics
   * (a new owner after a SIGKILL waits out the 6 s session timeout). A daemon
   * running several roles has one consumer per role, so the name matters.
   */
  async assigned(partitions = 4, timeoutMs = 30000, consumer = 'commands'): Promise<void> {
    await this.until(async () => (await this.partitionsOwned(consumer)) === partitions, timeoutMs, `${consumer} to own ${partitions} partitions`);
  }

  /** Resolves once its logical relay streams from its slot (whatever the slot's name), by its metrics. */
  async streaming(timeoutMs = 30000): Promise<void> {
    await this.until(async () => {
      const { body } = await this.get('/metrics');
      return body.split('\n').some((l) => l.startsWith('banking_es_relay_streaming{') && l.endsWith(' 1'));
    }, timeoutMs, 'the relay to stream');
  }

  /** Resolves once /readyz answers 200. */
  async ready(timeoutMs = 30000): Promise<void> {
    await this.until(async () => (await this.get('/readyz')).status === 200, timeoutMs, '/readyz to answer 200');
  }

  metricsPort(): number {
    const l = this.logs().find((x) => x.msg === 'metrics and health server listening');
    if (!l || typeof l.port !== 'number') throw new Error(`no metrics port logged yet:\n${this.output()}`);
    return l.port;
  }

  /** GET on the metrics/health server: status and body. */
  get(path: string): Promise<{ status: number; body: string }> {
    const port = this.metricsPort();
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
      req.on('error', reject);
    });
  }

  /** Value of one sample of the Prometheus text, e.g. metric('banking_es_consumer_paused{pipeline="commands"}'). */
  async metric(sample: string): Promise<number | undefined> {
    const { body } = await this.get('/metrics');
    for (const line of body.split('\n')) {
      if (line.startsWith(sample + ' ')) return Number(line.slice(sample.length + 1));
    }
    return undefined;
  }

  /** Sum of every sample of one metric family (all label sets), e.g. metricSum('banking_es_commands_total'); 0 when it has none. */
  async metricSum(name: string): Promise<number> {
    const { body } = await this.get('/metrics');
    let sum = 0;
    for (const line of body.split('\n')) {
      if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  /** Resident set size in bytes, from /proc. */
  rssBytes(): number {
    const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (!m) throw new Error('no VmRSS in /proc status');
    return Number(m[1]) * 1024;
  }

  /** Partitions of the latest assignment `consumer` logged ([] after a revoke): what a daemon, dead or alive, last owned, for notes. */
  owned(consumer = 'commands'): number[] {
    const a = this.logs().filter((l) => (l.msg === 'partitions assigned' || l.msg === 'partitions revoked') && l.consumer === consumer).pop();
    if (!a || a.msg === 'partitions revoked' || !Array.isArray(a.partitions)) return [];
    return (a.partitions as string[]).map((p) => Number(String(p).split('@')[0]));
  }

  /** Graceful stop: SIGTERM, then the exit code (the caller asserts it). */
  async stop(timeoutMs = 20000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.alive) return { code: this.child.exitCode, signal: this.child.signalCode };
    this.child.kill('SIGTERM');
    return waitForExit(this.child, timeoutMs);
  }

  /** A crash: SIGKILL, nothing drained. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    await waitForExit(this.child, 10000).catch(() => undefined);
  }
}
