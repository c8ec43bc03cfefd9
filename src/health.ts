/**
 * Readiness: a set of named probes. A `required` probe failing makes /readyz
 * answer 503; an optional one (Redis) only shows up in the JSON detail,
 * because correctness never depends on it (docs/architecture.md §6).
 */
import type { Metrics } from './metrics';
import { coerceError } from './errors';

export interface ProbeResult {
  ok: boolean;
  required: boolean;
  detail?: string;
  latencyMs: number;
}

interface Probe {
  required: boolean;
  fn: () => Promise<string | void>;
}

export class Health {
  private readonly probes = new Map<string, Probe>();
  constructor(private readonly metrics?: Metrics, private readonly timeoutMs = 2000) {}

  /** `fn` resolves (optionally with a detail string) when healthy and rejects when not. */
  add(name: string, fn: () => Promise<string | void>, opts: { required?: boolean } = {}): void {
    this.probes.set(name, { required: opts.required ?? true, fn });
  }

  remove(name: string): void {
    this.probes.delete(name);
  }

  async check(): Promise<{ ready: boolean; checks: Record<string, ProbeResult> }> {
    const entries = [...this.probes.entries()];
    const results = await Promise.all(entries.map(([name, p]) => this.run(name, p)));
    const checks: Record<string, ProbeResult> = {};
    let ready = true;
    entries.forEach(([name], i) => {
      checks[name] = results[i];
      if (results[i].required && !results[i].ok) ready = false;
    });
    this.metrics?.ready.set(ready ? 1 : 0);
    return { ready, checks };
  }

  /**
   * Checks every `intervalMs` as well as on each /readyz, so banking_es_ready and
   * banking_es_dependency_up are current for alerts whether or not a probe is asking.
   * Returns the stop function.
   */
  watch(intervalMs = 5000): () => void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.check().catch(() => undefined).finally(() => { running = false; });
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private async run(name: string, p: Probe): Promise<ProbeResult> {
    const start = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      });
      const detail = await Promise.race([p.fn(), timeout]);
      this.metrics?.dependencyUp.set({ dependency: name }, 1);
      return { ok: true, required: p.required, detail: detail || undefined, latencyMs: Date.now() - start };
    } catch (e) {
      this.metrics?.dependencyUp.set({ dependency: name }, 0);
      return { ok: false, required: p.required, detail: coerceError(e).message, latencyMs: Date.now() - start };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}
