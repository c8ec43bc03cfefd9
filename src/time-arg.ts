/** Command-line times: `--since 2h` or `--since 2026-12-01T10:00:00Z`. */
import { UsageError } from './errors';

/** A time given as an ISO timestamp or as a duration back from now: 90s, 15m, 2h, 7d. */
export function parseSince(s: string, now = Date.now()): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (m) return now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  // an ISO date or date-time only: Date.parse would also take "1" (2001) or "foo 1"
  const t = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) ? Date.parse(s) : NaN;
  if (Number.isNaN(t)) throw new UsageError(`"${s}" is neither an ISO time nor a duration like 30m, 2h, 7d`);
  return t;
}
