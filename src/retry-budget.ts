/**
 * How one role lives with failures it retries (docs/architecture.md §4: no error is retried
 * forever unseen). Each failed attempt is classified once (src/errors.ts),
 * counted, logged once (one line per backoff step, never per loop: a warning
 * while transient or a conflict, an error for anything else and once
 * stalled) and given its backoff. After `maxRetries` failures in a row, or at once for a fatal
 * error, the role is stalled: its readiness probe fails with the class,
 * SQLSTATE and message, and `banking_es_pipeline_stalled{pipeline}` is 1.
 * The next success clears it.
 *
 * States: healthy → failing (1..maxRetries failures) → stalled → healthy.
 */
import type { Health } from './health';
import type { Logger } from './logger';
import type { Metrics } from './metrics';
import { backoffMs, classifyError, coerceError, errorCodeOf, type ErrorClass } from './errors';

export interface Stall {
  errorClass: ErrorClass;
  code: string;
  message: string;
  attempts: number;
  since: string;
}

export class RetryBudget {
  private failures = 0;
  private stall: Stall | null = null;
  private waitingSince: { at: number; what: string } | null = null;

  /**
   * @param name the pipeline label and the readiness probe `<name>-pipeline`
   * @param maxRetries failures in a row before the role reports itself stalled
   * @param waitingReadyMs waiting longer than this for something another holds (the write lock) is not ready
   */
  constructor(
    private readonly name: string,
    private readonly ctx: { health: Health; metrics: Metrics; log: Logger },
    private readonly maxRetries: number,
    private readonly waitingReadyMs = 30_000,
  ) {
    ctx.metrics.pipelineStalled.set({ pipeline: name }, 0);
    ctx.health.add(`${name}-pipeline`, async () => {
      const s = this.stall;
      if (s) throw new Error(`stalled since ${s.since} after ${s.attempts} failed attempts: ${s.errorClass} ${s.code}: ${s.message}`);
      const waited = this.waitingSince === null ? 0 : Date.now() - this.waitingSince.at;
      if (waited > this.waitingReadyMs) throw new Error(`waiting ${Math.round(waited / 1000)} s for ${this.waitingSince!.what}`);
      if (this.failures > 0) return `retrying (${this.failures} failed attempts in a row)`;
    });
  }

  get stalled(): Stall | null {
    return this.stall;
  }

  /**
   * Records one failed attempt of `what` and returns how long to wait before the next one.
   * A fatal error stalls the role at once; the caller stops retrying it.
   */
  failed(e: unknown, errorClass: ErrorClass, what: string): number {
    const { metrics, log } = this.ctx;
    this.failures++;
    const code = errorCodeOf(e);
    metrics.retries.inc({ component: this.name, code });
    const wait = Math.max(50, backoffMs(this.failures - 1, 100, 5000));
    const err = coerceError(e);
    if (!this.stall && (errorClass === 'fatal' || this.failures > this.maxRetries)) {
      this.stall = { errorClass, code, message: err.message, attempts: this.failures, since: new Date().toISOString() };
      metrics.pipelineStalled.set({ pipeline: this.name }, 1);
    } else if (this.stall) {
      this.stall.attempts = this.failures;
    }
    const fields = { err, errorClass, code, attempt: this.failures, retryInMs: errorClass === 'fatal' ? undefined : wait, stalled: this.stall !== null };
    if (errorClass === 'fatal') log.error(fields, `${what} failed with a fatal error; the ${this.name} role stops and is not ready until the cause is fixed and it is restarted`);
    else if (this.stall) log.error(fields, `${what} keeps failing; the ${this.name} role is stalled (not ready) and retries with backoff`);
    else if (errorClass === 'transient') log.warn(fields, `${what} failed (transient); retrying with backoff`);
    // another writer holds the rows (a second instance during a hand-over, the other account writer): contention, not yet a fault
    else if (errorClass === 'conflict') log.warn(fields, `${what} keeps meeting rows another writer holds; retrying with backoff (nothing was committed)`);
    else log.error(fields, `${what} failed; retrying with backoff (nothing was committed)`);
    return wait;
  }

  /**
   * Runs `step` until it succeeds, each failure counted and backed off as above. Gives up when
   * `giveUp()` says so after a failure, or on a fatal error; resolves with that error then, else undefined.
   */
  async untilDone(what: string, step: () => Promise<void>, giveUp: () => boolean): Promise<unknown> {
    for (;;) {
      try {
        await step();
        this.succeeded();
        return undefined;
      } catch (e) {
        const errorClass = classifyError(e);
        if (giveUp() || errorClass === 'fatal') return e;
        await new Promise((r) => setTimeout(r, this.failed(e, errorClass, what)));
      }
    }
  }

  /**
   * The role waits for `what` (null: no longer), e.g. the write lock another pipeline holds while
   * Postgres blocks it: past waitingReadyMs its readiness probe fails and says so.
   */
  waiting(what: string | null): void {
    this.waitingSince = what === null ? null : { at: Date.now(), what };
  }

  /** An attempt succeeded: the failure streak, and any stall, ends. */
  succeeded(): void {
    if (this.failures === 0) return;
    if (this.stall) this.ctx.log.info({ pipeline: this.name, attempts: this.failures }, `${this.name} recovered; ready again`);
    this.failures = 0;
    this.stall = null;
    this.ctx.metrics.pipelineStalled.set({ pipeline: this.name }, 0);
  }
}
