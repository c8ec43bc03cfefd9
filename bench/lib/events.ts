/**
 * A valid event history for the projection benchmark, made by the real
 * decider from the load generator's commands: envelopes as the built-in
 * relays publish them (the text of the event store's jsonb column), plus each
 * account's expected final balance and version.
 */
import { Workload } from '../../dev/loadgen/generator';
import { decodeCommand } from '../../src/codec/command';
import { newEventId } from '../../src/codec/envelope';
import { decide } from '../../src/domain/decider';
import type { AccountState } from '../../src/domain/types';

export interface EventHistory { events: Array<{ key: string; value: Buffer }>; expected: Map<string, { balance: number; version: number }> }

/**
 * Postgres's text output of a jsonb value, for the JSON our envelopes hold
 * (objects, strings, integers): keys by length, then bytes; ", " and ": "
 * between tokens. The relays publish `payload::text`, so this is what they send.
 */
export function jsonbText(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort((a, b) => a.length - b.length || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText(o[k])}`).join(', ')}}`;
}

export function eventHistory(events: number, accounts: number, seed: number): EventHistory {
  const w = new Workload({ accounts, commands: events * 2, invalidRatio: 0, duplicateRatio: 0, seed });
  const states = new Map<string, AccountState>();
  const out: Array<{ key: string; value: Buffer }> = [];
  const recordedAt = new Date().toISOString();
  for (let c = w.next(); c && out.length < events; c = w.next()) {
    const d = decodeCommand(Buffer.from(c.key), Buffer.from(c.value), 65536);
    if (d.kind !== 'ok') continue;
    const r = decide(states.get(d.command.accountId) ?? null, d.command);
    if (!r.accepted) continue;
    states.set(d.command.accountId, r.state);
    const e = r.event;
    out.push({ key: e.accountId, value: Buffer.from(jsonbText({ eventId: newEventId(), accountId: e.accountId, version: e.version, type: e.type, data: e.data, commandId: e.commandId, recordedAt })) });
  }
  return { events: out, expected: new Map([...states].map(([id, s]) => [id, { balance: s.balance, version: s.version }])) };
}
