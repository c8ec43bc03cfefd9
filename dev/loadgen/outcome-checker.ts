/**
 * The load driver's check of outcomes against the generator's model: each
 * command sent is owed one answer with the status the model expects, and a
 * rejection the reason it expects, in the order sent (a command sent twice is
 * owed its own status, then `duplicate`).
 *
 * Outcomes are at-least-once (docs/architecture.md §2.2): after a crash an
 * outcome may arrive again. A copy of an answer the command already got
 * (identical but for processedAt) is counted as re-published, not as an
 * answer and not as a difference; so is any outcome of a command owed
 * nothing more. Outcomes without processedAt (the bench's echo service)
 * are always answers.
 */
import type { GenCommand } from './generator';

type Status = GenCommand['expect'];

interface Owed { sentAt: number[]; expect: Status[]; reasons: Array<string | undefined>; received?: Set<string> }

export interface Answer { kind: 'answer'; latencyMs: number; matches: boolean }

export class OutcomeChecker {
  private readonly owed = new Map<string, Owed>();
  answered = 0;
  mismatches = 0;
  /** the first few differences, "<commandId>: expected <status>[ <reason>], got <outcome>" */
  readonly mismatchSamples: string[] = [];
  republished = 0;
  /** outcomes of commands this run never sent (another producer on the same topics) */
  foreign = 0;
  private readonly done = new Set<string>();

  /** @param reason the reason a rejection must carry; undefined: any */
  sent(commandId: string, expect: Status, at: number, reason?: string): void {
    const o = this.owed.get(commandId);
    if (o) { o.sentAt.push(at); o.expect.push(expect); o.reasons.push(reason); } else this.owed.set(commandId, { sentAt: [at], expect: [expect], reasons: [reason] });
  }

  /** One outcome read from the topic, at `now` (the clock `sent` used). */
  received(out: { commandId: string; status: string; reason?: string; processedAt?: string }, now: number): Answer | { kind: 'republished' } {
    const o = this.owed.get(out.commandId);
    if (!o) {
      if (this.done.has(out.commandId)) this.republished++;
      else this.foreign++;
      return { kind: 'republished' };
    }
    const same = JSON.stringify({ ...out, processedAt: undefined });
    // only a stamped outcome can be told from a repeat of it: a service that stamps none (the bench's
    // echo) answers a re-send with the same bytes, and that answer is owed
    if (out.processedAt !== undefined && o.expect[0] !== out.status && o.received?.has(same)) { this.republished++; return { kind: 'republished' }; }
    const latencyMs = now - o.sentAt.shift()!;
    const expected = o.expect.shift();
    const reason = o.reasons.shift();
    const matches = expected === out.status && (reason === undefined || reason === out.reason);
    if (!matches && this.mismatchSamples.length < 5) this.mismatchSamples.push(`${out.commandId}: expected ${expected}${reason ? ` ${reason}` : ''}, got ${JSON.stringify(out)}`);
    if (o.sentAt.length === 0) { this.owed.delete(out.commandId); this.done.add(out.commandId); }
    else (o.received ??= new Set()).add(same);
    this.answered++;
    if (!matches) this.mismatches++;
    return { kind: 'answer', latencyMs, matches };
  }
}
