/** Small statistics and process-accounting helpers for the benchmarks. */
import * as fs from 'node:fs';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Summary { median: number; min: number; max: number; runs: number[] }

export function summarize(xs: number[]): Summary {
  return { median: round(median(xs), 1), min: round(Math.min(...xs), 1), max: round(Math.max(...xs), 1), runs: xs.map((x) => round(x, 1)) };
}

export const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;

/** CPU seconds (user+system) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(parts[11]) + Number(parts[12])) / 100; // utime, stime in USER_HZ ticks
  } catch {
    return NaN;
  }
}

export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** PIDs whose command line contains `fragment` (Postgres backends, the mock host, …). */
export function pidsMatching(fragment: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(fragment)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** Processes whose executable name (/proc/<pid>/comm) is `comm`, e.g. every Postgres server process. */
export function pidsNamed(comm: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

export interface ProcUsage { cpuSeconds: number; cpuCores: number; peakRssMb: number }

/** Peak RSS and CPU used by named groups of processes while a measurement runs. */
export class ProcessMeter {
  private readonly start = new Map<number, number>();
  private readonly peak = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private t0 = 0;
  constructor(private readonly groups: Record<string, () => number[]>) {}

  begin(): void {
    this.t0 = performance.now();
    for (const pids of Object.values(this.groups)) for (const pid of pids()) this.start.set(pid, cpuSeconds(pid));
    this.sample();
    this.timer = setInterval(() => this.sample(), 250);
  }

  private sample(): void {
    for (const [name, pids] of Object.entries(this.groups)) {
      const rss = pids().reduce((s, p) => s + (rssMb(p) || 0), 0);
      this.peak.set(name, Math.max(this.peak.get(name) ?? 0, rss));
    }
  }

  end(): Record<string, ProcUsage> {
    if (this.timer) clearInterval(this.timer);
    const wall = (performance.now() - this.t0) / 1000;
    const out: Record<string, ProcUsage> = {};
    for (const [name, pids] of Object.entries(this.groups)) {
      let cpu = 0;
      for (const pid of pids()) cpu += cpuSeconds(pid) - (this.start.get(pid) ?? 0);
      out[name] = { cpuSeconds: round(cpu, 2), cpuCores: round(cpu / wall, 2), peakRssMb: round(this.peak.get(name) ?? NaN, 1) };
    }
    return out;
  }
}
