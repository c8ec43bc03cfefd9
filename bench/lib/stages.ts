/**
 * The daemon's own account of where a command's time went: the
 * banking_es_pipeline_stage_seconds histogram (src/metrics.ts), scraped from
 * the service under test before and after a measured run, the difference
 * summarised per stage as mean and p50/p99 (upper bucket bounds, so "≤").
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { STAGES } from '../../src/metrics';
import { round } from './stats';

type Histo = { buckets: Array<[number, number]>; sum: number; count: number };
export type StageSnapshot = Map<string, Histo>;
export interface StageFigures { meanMs: number; p50Ms: number; p99Ms: number; count: number }

/** The metrics port a banking-es service logged at start-up (its log is JSON lines). */
export function metricsPortFromLog(logFile: string): number | undefined {
  for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('metrics and health server listening')) continue;
    try { return (JSON.parse(line) as { port?: number }).port; } catch { /* not JSON */ }
  }
  return undefined;
}

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('metrics scrape timed out')));
  });
}

/** The stage histograms of one pipeline, as they stand. */
export async function scrapeStages(port: number, pipeline: string): Promise<StageSnapshot> {
  const text = await get(port);
  const out: StageSnapshot = new Map();
  const histo = (stage: string) => {
    let h = out.get(stage);
    if (!h) out.set(stage, (h = { buckets: [], sum: 0, count: 0 }));
    return h;
  };
  const re = /^banking_es_pipeline_stage_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/gm;
  for (const m of text.matchAll(re)) {
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.pipeline !== pipeline) continue;
    const h = histo(labels.stage);
    const v = Number(m[3]);
    if (m[1] === 'bucket') h.buckets.push([labels.le === '+Inf' ? Infinity : Number(labels.le), v]);
    else if (m[1] === 'sum') h.sum = v;
    else h.count = v;
  }
  return out;
}

/** What happened between two scrapes, per stage in pipeline order. */
export function stageFigures(before: StageSnapshot, after: StageSnapshot): Record<string, StageFigures> {
  const out: Record<string, StageFigures> = {};
  for (const stage of STAGES) {
    const a = after.get(stage);
    if (!a) continue;
    const b = before.get(stage);
    const count = a.count - (b?.count ?? 0);
    if (count <= 0) continue;
    const cum = a.buckets.map(([le, v]) => [le, v - (b?.buckets.find((x) => x[0] === le)?.[1] ?? 0)] as const);
    const at = (q: number) => {
      const le = cum.find(([, v]) => v >= q * count)?.[0] ?? Infinity;
      return Number.isFinite(le) ? le * 1000 : NaN;
    };
    out[stage] = { meanMs: round(((a.sum - (b?.sum ?? 0)) / count) * 1000, 2), p50Ms: at(0.5), p99Ms: at(0.99), count };
  }
  return out;
}

/** "fetch 3.1 · batch 6.0 · …": mean ms per stage. */
export function formatStages(s: Record<string, StageFigures> | undefined): string {
  if (!s) return '';
  return Object.entries(s).map(([k, v]) => `${k} ${v.meanMs}`).join(' · ');
}
