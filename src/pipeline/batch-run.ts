/**
 * One batch's way to its commit, as a state machine (docs/architecture.md §9).
 * Pure: no I/O, no timers. The runner (batch-runner.ts) performs what each
 * state asks for and reports back; this module decides what comes next.
 *
 * States:
 *   prepare      decide (or project) the batch again; `careful` says from
 *                Postgres and with what it already holds, not from caches
 *   commit       a preparation is in hand: write it in one transaction
 *   wait         back off after a failure (`waitFor` 'backoff'), or wait
 *                out a write gate such as a projection rebuild ('gate')
 *   isolate      the batch failed on its content: commit it in two halves
 *   canary       one message failed on its content: does a known-good batch
 *                commit? (if not, the schema is at fault, not the message;
 *                if so, the message is tried once more right after it)
 *   dead-letter  the lone message is poison: dead-letter it, commit past it
 *   halted       a fatal error: nothing is retried; wait for the stop
 *   done         committed (`clean` when the preparation made ahead, on the
 *                predecessor's pending state, committed as it was)
 *   abandoned    given up: neither this batch nor any later one may commit
 *
 * Transitions:
 *   prepare  --prepared-->   commit
 *   prepare  --failed-->     (as commit --failed-->)
 *   commit   --committed-->  done
 *   commit   --redo-->       prepare (careful), or as --failed(conflict)--> past maxRedos redos
 *   commit   --gated-->      wait (gate), or abandoned (stopping, past 3 attempts)
 *   commit   --failed-->     isolate (poison, more than one message)
 *                            | canary (poison, one) | dead-letter (poison, one, right after a passing canary)
 *                            | halted (fatal) | abandoned (stopping: fatal, poison, or past 3 attempts)
 *                            | wait (backoff; transient, conflict, unknown)
 *   wait     --waited-->     prepare
 *   canary   --canary ok-->  prepare (the message once more);  --canary failed--> wait (backoff, class unknown)
 *   isolate, dead-letter --finished--> done | abandoned
 *   halted   --finished-->   abandoned
 *   any      --abandon-->    abandoned (an earlier batch was abandoned; a batch already done stays done)
 *
 * Invariants, asserted after each transition (a broken one throws: the
 * runner then halts the role rather than commit on a wrong assumption):
 *   - done and abandoned are final: no step is taken from them;
 *   - `careful` never turns back to false: once a batch was redone from
 *     Postgres, every later attempt of it is;
 *   - `clean` only while the first attempt, on the preparation made ahead,
 *     is the only one;
 *   - nothing is retried unseen: every backoff is a counted failure, and
 *     every redo past maxRedos (over the whole run) counts as one;
 *   - at shutdown nothing waits forever: a fatal or poison failure, or past
 *     3 attempts any failure or gate, abandons the batch (it is redone after
 *     the restart); the pipeline abandons what is still in flight when its
 *     share of the shutdown budget is spent (PartitionedPipeline.stop).
 */
import type { ErrorClass } from '../errors';

export type BatchState = 'prepare' | 'commit' | 'wait' | 'isolate' | 'canary' | 'dead-letter' | 'halted' | 'done' | 'abandoned';

/** What one attempt to prepare or commit came to. */
export type Attempt =
  | { kind: 'committed' }
  /** a key someone else holds: prepare again, carefully */
  | { kind: 'redo' }
  /** writes are closed for a while (a projection rebuild): wait, then prepare carefully; not a failure */
  | { kind: 'gated' }
  | { kind: 'failed'; errorClass: ErrorClass };

/** Attempts after which a batch is given up at shutdown (it is redone after the restart). */
const ATTEMPTS_AT_SHUTDOWN = 3;

export class BatchRun {
  private current: BatchState;
  private isCareful = false;
  private isClean: boolean;
  private attempts = 0;
  private redos = 0;
  private gates = 0;
  /** the class the last counted failure is reported with */
  private failedAs: ErrorClass | null = null;
  private waitingFor: 'backoff' | 'gate' | null = null;
  /** a canary passed since the last wait: a lone message that fails on its content now is poison */
  private canaryPassed = false;

  /**
   * @param size messages in the batch (or part of one)
   * @param ahead a preparation made ahead of time is in hand (the run starts at commit)
   * @param maxRedos careful redos before each further one counts as a failed attempt
   */
  constructor(readonly size: number, ahead: boolean, private readonly maxRedos: number) {
    this.current = ahead ? 'commit' : 'prepare';
    this.isClean = ahead;
  }

  get state(): BatchState { return this.current; }
  get careful(): boolean { return this.isCareful; }
  get clean(): boolean { return this.isClean && this.current === 'done'; }
  /** set in `wait`: whether it is a counted failure's backoff or a gate */
  get waitFor(): 'backoff' | 'gate' | null { return this.waitingFor; }
  /** the class of the failure being backed off from or acted on */
  get errorClass(): ErrorClass | null { return this.failedAs; }
  /** gates waited out in a row, for the length of the next wait */
  get gatesInARow(): number { return this.gates; }

  prepared(): void {
    this.expect('prepare');
    this.current = 'commit';
    this.invariants();
  }

  /** The outcome of preparing (only `failed`) or committing. */
  attempted(a: Attempt, stopping: boolean): BatchState {
    this.expect(a.kind === 'failed' ? 'prepare' : 'commit', 'commit');
    const wasCareful = this.isCareful;
    this.attempts++;
    switch (a.kind) {
      case 'committed':
        this.current = 'done';
        break;
      case 'redo':
        this.isClean = false;
        this.isCareful = true;
        if (++this.redos <= this.maxRedos) this.current = 'prepare';
        else this.fail('conflict', stopping);
        break;
      case 'gated':
        this.isClean = false;
        this.isCareful = true;
        this.gates++;
        if (stopping && this.attempts > ATTEMPTS_AT_SHUTDOWN) {
          this.current = 'abandoned';
          break;
        }
        this.waitingFor = 'gate';
        this.current = 'wait';
        break;
      case 'failed':
        this.fail(a.errorClass, stopping);
        break;
    }
    if (wasCareful && !this.isCareful) throw new Error('BatchRun: a careful batch turned careless');
    this.invariants();
    return this.current;
  }

  waited(): void {
    this.expect('wait');
    if (this.waitingFor === 'backoff') this.gates = 0;
    this.waitingFor = null;
    this.canaryPassed = false;
    this.current = 'prepare';
    this.invariants();
  }

  /**
   * Whether the known-good batch committed. If it did, the message is tried
   * once more at once: it is dead-lettered only if it fails on its content
   * right after a passing canary (a schema fault that came and went between
   * the two would otherwise dead-letter a valid message). If not, the store
   * is at fault: back off.
   */
  canary(committed: boolean): void {
    this.expect('canary');
    if (committed) {
      this.canaryPassed = true;
      this.current = 'prepare';
    } else this.backoff('unknown');
    this.invariants();
  }

  /** What the halves or the dead letter came to; a halt comes only to abandoned. */
  finished(result: 'done' | 'abandoned'): void {
    this.expect(...(result === 'done' ? ['isolate', 'dead-letter'] as const : ['isolate', 'dead-letter', 'halted'] as const));
    this.current = result;
    this.invariants();
  }

  /** An earlier batch was abandoned: this one may not commit either (one already done stays done). */
  abandon(): void {
    if (this.current !== 'done') this.current = 'abandoned';
  }

  private fail(errorClass: ErrorClass, stopping: boolean): void {
    this.isClean = false;
    this.failedAs = errorClass;
    // at shutdown a poison batch is not narrowed down (that is a commit per halving): it is redone after the restart
    if (stopping && (errorClass === 'fatal' || errorClass === 'poison' || this.attempts > ATTEMPTS_AT_SHUTDOWN)) this.current = 'abandoned';
    else if (errorClass === 'poison') this.current = this.size > 1 ? 'isolate' : this.canaryPassed ? 'dead-letter' : 'canary';
    else if (errorClass === 'fatal') this.current = 'halted';
    else this.backoff(errorClass);
  }

  private backoff(errorClass: ErrorClass): void {
    this.failedAs = errorClass;
    this.waitingFor = 'backoff';
    this.current = 'wait';
  }

  private invariants(): void {
    if (this.isClean && this.attempts > 1) throw new Error(`BatchRun: clean after ${this.attempts} attempts`);
    if (this.current === 'wait' && this.waitingFor === null) throw new Error('BatchRun: waiting for nothing');
    if (this.current !== 'wait' && this.waitingFor !== null) throw new Error(`BatchRun: ${this.current} while waiting for a ${this.waitingFor}`);
  }

  private expect(...states: readonly BatchState[]): void {
    if (!states.includes(this.current)) throw new Error(`BatchRun: ${this.current} cannot take this step (expected ${states.join(' or ')})`);
  }
}
