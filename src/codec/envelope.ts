/**
 * The canonical event envelope on `bank.events` (docs/architecture.md §2.4), and a reader
 * that also accepts what Debezium emits for the `events` table, so the
 * projection pipeline works with the outbox router, without it, and with
 * either converter setting:
 *
 * - the envelope itself, or a JSON string holding it (outbox router, payload
 *   not expanded, or a StringConverter);
 * - `{schema, payload}` where payload is any of these (JsonConverter with
 *   schemas.enable=true);
 * - a change event `{before, after, source, op, ts_ms}` whose `after` is an
 *   events row; its `payload` column (jsonb: a JSON string, or an object if
 *   expanded) holds the envelope. A delete or truncate yields `{error: 'DELETE'}`.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { EVENT_TYPES_V1, isEventType, type EventType } from '../domain/types';
import { isUuid } from './command';

/**
 * The envelope's schema version, written into every envelope as
 * `schemaVersion`. Envelopes written before it existed have none and are
 * version 1 (the four account events). Version 2 adds the transfer events
 * (TransferDebited, TransferCredited, TransferRefunded); a version-1
 * envelope reads as version 2 unchanged (upcast()). A reader refuses a
 * version newer than its own: it cannot know what that version means.
 */
export const SCHEMA_VERSION = 2;

export interface EventEnvelope {
  eventId: string;
  accountId: string;
  version: number;
  type: EventType;
  data: Record<string, unknown>;
  commandId: string;
  recordedAt: string;
  /** Always SCHEMA_VERSION once read: older envelopes are upcast. */
  schemaVersion: number;
}

export type EnvelopeError = { error: string };

/** A JSON string literal; strings that need no escaping (UUIDs, codes, timestamps) skip JSON.stringify. */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) return JSON.stringify(s);
  }
  return '"' + s + '"';
}

/** Serializes with the fields in contract order, so stored and relayed bytes are identical. */
export function encodeEnvelope(e: Omit<EventEnvelope, 'schemaVersion'>): string {
  return (
    '{"eventId":' + jsonString(e.eventId) +
    ',"accountId":' + jsonString(e.accountId) +
    ',"version":' + JSON.stringify(e.version) +
    ',"type":' + jsonString(e.type) +
    ',"data":' + JSON.stringify(e.data) +
    ',"commandId":' + jsonString(e.commandId) +
    ',"recordedAt":' + jsonString(e.recordedAt) +
    ',"schemaVersion":' + SCHEMA_VERSION +
    '}'
  );
}

export function newEventId(): string {
  return randomUUID();
}

const hasOwn = Object.prototype.hasOwnProperty;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function own(o: Record<string, unknown>, k: string): unknown {
  return hasOwn.call(o, k) ? o[k] : undefined;
}

function parseJson(text: string): { ok: unknown } | EnvelopeError {
  try {
    return { ok: JSON.parse(text) };
  } catch (e) {
    return { error: `not JSON: ${(e as Error).message}` };
  }
}

export function parseEnvelope(value: Buffer | string): EventEnvelope | EnvelopeError {
  let text: string;
  if (typeof value === 'string') {
    text = value;
  } else {
    if (!isUtf8(value)) return { error: 'not valid UTF-8' };
    text = value.toString('utf8');
  }
  if (text.length === 0) return { error: 'empty value' };

  let parsed = parseJson(text);
  if ('error' in parsed) return parsed;
  let v = parsed.ok;
  if (typeof v === 'string') {
    parsed = parseJson(v);
    if ('error' in parsed) return parsed;
    v = parsed.ok;
  }
  if (!isObject(v)) return { error: 'value must be a JSON object' };
  let o = v;

  // Converter wrapper: {schema, payload}. An envelope never has a payload field.
  if (hasOwn.call(o, 'payload') && !hasOwn.call(o, 'eventId')) {
    let inner = o.payload;
    if (typeof inner === 'string') {
      const p = parseJson(inner);
      if ('error' in p) return p;
      inner = p.ok;
    }
    if (!isObject(inner)) return { error: 'payload must be a JSON object' };
    o = inner;
  }

  if (hasOwn.call(o, 'op') || hasOwn.call(o, 'after')) return fromChangeEvent(o);
  return validate(o);
}

function fromChangeEvent(change: Record<string, unknown>): EventEnvelope | EnvelopeError {
  const row = own(change, 'after');
  if (own(change, 'op') === 'd' || !isObject(row)) return { error: 'DELETE' };
  let payload = own(row, 'payload');
  if (typeof payload === 'string') {
    const p = parseJson(payload);
    if ('error' in p) return { error: `events.payload is ${p.error}` };
    payload = p.ok;
  }
  if (!isObject(payload)) return { error: 'events.payload must hold the event envelope' };
  const env = validate(payload);
  if ('error' in env) return env;
  // The row's key columns are the authority Postgres enforced; a payload that
  // disagrees was written by something other than this daemon.
  const rowAccount = own(row, 'account_id');
  const rowVersion = own(row, 'version');
  if (
    (typeof rowAccount === 'string' && rowAccount.toLowerCase() !== env.accountId) ||
    (typeof rowVersion === 'number' && rowVersion !== env.version)
  ) {
    return { error: 'events row and its payload disagree on account_id or version' };
  }
  return env;
}

function uuidField(o: Record<string, unknown>, k: string): string | undefined {
  const v = own(o, k);
  return typeof v === 'string' && isUuid(v) ? v.toLowerCase() : undefined;
}

// Builds a fresh object from own fields only, in contract order.
function validate(o: Record<string, unknown>): EventEnvelope | EnvelopeError {
  const eventId = uuidField(o, 'eventId');
  if (eventId === undefined) return { error: 'envelope.eventId must be a UUID string' };
  const accountId = uuidField(o, 'accountId');
  if (accountId === undefined) return { error: 'envelope.accountId must be a UUID string' };
  const version = own(o, 'version');
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    return { error: 'envelope.version must be a positive integer' };
  }
  const type = own(o, 'type');
  if (!isEventType(type)) return { error: 'envelope.type must be an event type' };
  const data = own(o, 'data');
  if (!isObject(data)) return { error: 'envelope.data must be a JSON object' };
  const commandId = uuidField(o, 'commandId');
  if (commandId === undefined) return { error: 'envelope.commandId must be a UUID string' };
  const recordedAt = own(o, 'recordedAt');
  if (typeof recordedAt !== 'string' || !isTimestamp(recordedAt)) {
    return { error: 'envelope.recordedAt must be an ISO-8601 timestamp with a UTC offset' };
  }
  const written = hasOwn.call(o, 'schemaVersion') ? o.schemaVersion : 1;
  const known = schemaVersionError(written, type);
  if (known !== undefined) return { error: known };
  return upcast({ eventId, accountId, version, type, data, commandId, recordedAt, schemaVersion: written as number });
}

/**
 * An RFC 3339 date-time (what the contract's `format: date-time` means): a
 * date, a time and a UTC offset, so the instant does not depend on the
 * reader's time zone ("2026-01-01T00:00:00" or "1" would be read in it).
 */
export function isTimestamp(s: string): boolean {
  return TIMESTAMP.test(s) && !Number.isNaN(Date.parse(s));
}
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Why an envelope of schema version `written` cannot hold `type`, or undefined when it can. */
export function schemaVersionError(written: unknown, type: EventType): string | undefined {
  if (typeof written !== 'number' || !Number.isInteger(written) || written < 1 || written > SCHEMA_VERSION) {
    return `envelope.schemaVersion ${JSON.stringify(written)} is not one this reader knows (1 to ${SCHEMA_VERSION})`;
  }
  if (written === 1 && !EVENT_TYPES_V1.includes(type)) return `envelope.type ${type} needs schemaVersion 2 or later`;
  return undefined;
}

/**
 * An envelope of any known schema version as the current version reads it.
 * 1 → 2 changes nothing but the number: version 2 only added event types.
 * A later version that reshapes a version-2 event maps it here, so nothing
 * downstream ever sees an old shape.
 */
export function upcast<E extends EventEnvelope>(e: E): E {
  if (e.schemaVersion !== SCHEMA_VERSION) e.schemaVersion = SCHEMA_VERSION;
  return e;
}
