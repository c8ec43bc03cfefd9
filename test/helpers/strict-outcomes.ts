/**
 * A strict outcome model on top of the CommandOracle (issue #18): besides the
 * oracle's own checks (expected status, version, balance, reason, order of
 * first outcomes; the event store), it records, per command, every outcome
 * that arrives and the hand-over window it arrived in, and checks:
 *
 *  - a command sent N times (1 + re-sends) is owed N outcomes: one original
 *    (accepted/rejected) and N-1 `duplicate`s;
 *  - copies beyond those owed (re-published after a hand-over) are allowed,
 *    but every copy of the original is identical to the first original and
 *    every duplicate identical to the first duplicate (all fields compared
 *    except processedAt);
 *  - a duplicate carries the original: same commandId, accountId and type,
 *    originalStatus = the original's status, and its version + balance
 *    (accepted) or reason (rejected);
 *  - no command that was never re-sent gets a duplicate.
 *
 * Rig.tap(oracle) calls `observe`, and Rig.stream calls `nextCommand`: both
 * are overridden here (call the oracle, then record), so the rig is unchanged.
 * `window` is set by the test: outcomes are attributed to the window current
 * when they are read, and re-published copies (received beyond those owed)
 * are counted per window.
 */
import { CommandOracle, type OracleOptions, type OutcomeJson, type WireCommand } from './oracle';

interface Rec {
  sends: number;
  /** canonical form (sorted keys, no processedAt) of the first original and the first duplicate */
  orig?: string;
  dup?: string;
  origWindow?: number;
  dupWindow?: number;
  /** every arrival in order: window << 1 | (duplicate ? 1 : 0) */
  arrivals: number[];
}

export interface Violation { kind: string; commandId: string; window: number; detail: string }

export interface StrictReport {
  commands: number;
  received: number;
  /** outcomes beyond those owed, per window (index = window): copies of the original, copies of a duplicate */
  republishedByWindow: Array<{ orig: number; dup: number }>;
  republishedOrig: number;
  republishedDup: number;
  /** violations per kind, and per window they were found in (final checks: the window of the command's last outcome) */
  violationCounts: Record<string, number>;
  violationsByWindow: number[];
  examples: Violation[];
}

const canonical = (o: OutcomeJson & Record<string, unknown>): string => {
  const keys = Object.keys(o).filter((k) => k !== 'processedAt').sort();
  return JSON.stringify(keys.map((k) => [k, o[k]]));
};

const fields = (c: string): Record<string, unknown> => Object.fromEntries(JSON.parse(c) as Array<[string, unknown]>);

export class StrictOracle extends CommandOracle {
  /** the hand-over window current now (0 = before the first hand-over) */
  window = 0;
  private readonly recs: Rec[] = [];
  private readonly counts: Record<string, number> = {};
  private readonly examples: Violation[] = [];
  private readonly examplesPerKind: Record<string, number> = {};
  private readonly byWindow: number[] = [];
  strictReceived = 0;

  constructor(opts: OracleOptions, private readonly examplesPerKindLimit = 4) {
    super(opts);
  }

  private idx(commandId: string | undefined): number {
    if (!commandId || commandId.length !== 36 || !commandId.startsWith(`${this.tag}-c000-4000-8000-`)) return -1;
    const n = parseInt(commandId.slice(24), 16);
    return Number.isSafeInteger(n) && this.recs[n] ? n : -1;
  }

  violation(kind: string, commandId: string, window: number, detail: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    if (window >= 0) this.byWindow[window] = (this.byWindow[window] ?? 0) + 1;
    const n = this.examplesPerKind[kind] ?? 0;
    if (n < this.examplesPerKindLimit) {
      this.examplesPerKind[kind] = n + 1;
      this.examples.push({ kind, commandId, window, detail });
    }
  }

  override nextCommand(): WireCommand {
    const c = super.nextCommand(); // a re-send goes through this.resend(), not overridden: one count per command handed out
    const r = (this.recs[c.index] ??= { sends: 0, arrivals: [] });
    r.sends++;
    return c;
  }

  override observe(o: OutcomeJson | undefined): void {
    super.observe(o);
    this.strictReceived++;
    const w = this.window;
    const i = this.idx(o?.commandId);
    if (!o || i < 0) return this.violation('outcome for an unknown command', String(o?.commandId), w, JSON.stringify(o));
    const r = this.recs[i];
    const c = canonical(o as OutcomeJson & Record<string, unknown>);
    if (o.status === 'duplicate') {
      r.arrivals.push((w << 1) | 1);
      if (r.sends < 2) this.violation('duplicate for a command never re-sent', o.commandId!, w, JSON.stringify(o));
      if (r.dup === undefined) {
        r.dup = c;
        r.dupWindow = w;
        if (r.orig !== undefined) this.checkCarries(o.commandId!, r.orig, c, w);
      } else if (r.dup !== c) {
        this.violation('duplicate copy differs from the first duplicate', o.commandId!, w, `first (window ${r.dupWindow}) ${r.dup}, then ${c}`);
      }
    } else {
      r.arrivals.push(w << 1);
      if (o.status !== 'accepted' && o.status !== 'rejected') this.violation('unknown status', o.commandId!, w, JSON.stringify(o));
      if (r.orig === undefined) {
        r.orig = c;
        r.origWindow = w;
        if (r.dup !== undefined) this.checkCarries(o.commandId!, c, r.dup, w);
      } else if (r.orig !== c) {
        // name the common case apart: the copy equals the first but for the free-text detail of a rejection
        const withoutDetail = (x: string) => JSON.stringify((JSON.parse(x) as Array<[string, unknown]>).filter(([k]) => k !== 'detail'));
        const kind = withoutDetail(r.orig) === withoutDetail(c) ? 'original copy differs from the first original (in `detail` only)' : 'original copy differs from the first original';
        this.violation(kind, o.commandId!, w, `first (window ${r.origWindow}) ${r.orig}, then ${c}`);
      }
    }
  }

  /** A duplicate names the original: originalStatus, and version + balance or reason, equal to the original's. */
  private checkCarries(commandId: string, orig: string, dup: string, w: number): void {
    const a = fields(orig);
    const d = fields(dup);
    const want: Record<string, unknown> = { commandId: a.commandId, accountId: a.accountId, type: a.type, status: 'duplicate', originalStatus: a.status };
    if (a.status === 'accepted') { want.version = a.version; want.balance = a.balance; } else want.reason = a.reason;
    const got: Record<string, unknown> = {};
    for (const k of Object.keys(want)) got[k] = d[k];
    const extra = Object.keys(d).filter((k) => !(k in want) && k !== 'detail');
    if (JSON.stringify(got) !== JSON.stringify(want) || extra.length) {
      this.violation('duplicate does not carry the original', commandId, w, `original ${orig}; duplicate ${dup}`);
    }
  }

  /** Final per-command check, and the re-published copies per window. Call once, after every outcome is in. */
  strictReport(windows: number): StrictReport {
    const byWindow = Array.from({ length: windows }, () => ({ orig: 0, dup: 0 }));
    let origExtra = 0;
    let dupExtra = 0;
    let commands = 0;
    for (let i = 0; i < this.recs.length; i++) {
      const r = this.recs[i];
      if (!r) continue;
      commands++;
      const id = this.commandId(i);
      let nOrig = 0;
      let nDup = 0;
      for (const a of r.arrivals) {
        const w = a >> 1;
        if (a & 1) {
          if (++nDup > r.sends - 1) { dupExtra++; (byWindow[w] ??= { orig: 0, dup: 0 }).dup++; }
        } else if (++nOrig > 1) { origExtra++; (byWindow[w] ??= { orig: 0, dup: 0 }).orig++; }
      }
      const last = r.arrivals.length ? r.arrivals[r.arrivals.length - 1] >> 1 : -1;
      if (nOrig === 0) this.violation('no original outcome (accepted/rejected)', id, last, `sent ${r.sends}x, got ${nDup} duplicates${r.dup ? `: ${r.dup}` : ''}`);
      if (nDup < r.sends - 1) this.violation('re-send without its duplicate', id, last, `sent ${r.sends}x, got ${nOrig} original(s) and ${nDup} duplicate(s); windows ${r.arrivals.map((a) => `${a >> 1}${a & 1 ? 'd' : 'o'}`).join(',')}; original ${r.orig}`);
    }
    return {
      commands, received: this.strictReceived, republishedByWindow: byWindow, republishedOrig: origExtra, republishedDup: dupExtra,
      violationCounts: { ...this.counts }, violationsByWindow: Array.from({ length: windows }, (_, w) => this.byWindow[w] ?? 0), examples: [...this.examples],
    };
  }
}
