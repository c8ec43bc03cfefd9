/**
 * Whoever creates a resource registers its closer here; shutdown runs the
 * closers newest-first, each bounded by the remaining budget. Signals are two
 * phase: the first SIGTERM/SIGINT starts a graceful shutdown (also while
 * still starting up), a second one forces exit.
 */
import type { Logger } from './logger';
import { coerceError } from './errors';

export class ShutdownRequested extends Error {
  constructor() {
    super('shutdown requested during start-up');
    this.name = 'ShutdownRequested';
  }
}

export class Lifecycle {
  private readonly closers: Array<{ name: string; close: () => Promise<void> | void }> = [];
  private stopping: Promise<number> | undefined;
  private signalCount = 0;
  private readonly onStopRequested: Array<() => void> = [];
  readonly stopSignal: Promise<void>;
  private resolveStopSignal!: () => void;

  constructor(private readonly log: Logger, private readonly timeoutMs: number, private readonly exit: (code: number) => void = (c) => process.exit(c)) {
    this.stopSignal = new Promise((r) => { this.resolveStopSignal = r; });
  }

  get isStopping(): boolean {
    return this.stopping !== undefined || this.signalCount > 0;
  }

  /** Registers a closer; closers run newest-first. */
  defer(name: string, close: () => Promise<void> | void): void {
    this.closers.push({ name, close });
  }

  /** Throws ShutdownRequested when a signal arrived: call between start-up steps. */
  checkpoint(): void {
    if (this.signalCount > 0) throw new ShutdownRequested();
  }

  onStop(fn: () => void): void {
    this.onStopRequested.push(fn);
  }

  installSignalHandlers(): void {
    const handler = (signal: NodeJS.Signals) => {
      this.signalCount++;
      if (this.signalCount > 1) {
        this.log.warn({ signal }, 'second signal: exiting now without draining');
        this.exit(130);
        return;
      }
      this.log.info({ signal }, 'signal received: shutting down gracefully');
      this.resolveStopSignal();
      for (const fn of this.onStopRequested) fn();
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  }

  /** Runs every closer newest-first within the budget; resolves with the exit code (0 clean, 1 otherwise). */
  shutdown(): Promise<number> {
    if (this.stopping) return this.stopping;
    this.resolveStopSignal();
    this.stopping = (async () => {
      const deadline = Date.now() + this.timeoutMs;
      let code = 0;
      while (this.closers.length > 0) {
        const { name, close } = this.closers.pop()!;
        const left = deadline - Date.now();
        if (left <= 0) {
          this.log.error({ component: name }, 'shutdown budget exhausted; skipping remaining closers');
          code = 1;
          break;
        }
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(close),
            new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`did not close within ${left} ms`)), left); }),
          ]);
          this.log.debug({ component: name }, 'closed');
        } catch (e) {
          code = 1;
          this.log.error({ component: name, err: coerceError(e) }, 'close failed');
        } finally {
          if (timer) clearTimeout(timer);
        }
      }
      return code;
    })();
    return this.stopping;
  }
}
