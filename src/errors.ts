/**
 * The errors banking-es raises itself, each code with its class (see
 * ErrorClass below: the one vocabulary every catch site acts on).
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'fatal',
  MIGRATION_FAILED: 'fatal',
  OFFSET_OUT_OF_RANGE: 'fatal',
  PG_TRANSIENT: 'transient',
  PG_CONFLICT: 'conflict',
  KAFKA_TRANSIENT: 'transient',
  REDIS_UNAVAILABLE: 'transient',
  MESSAGE_UNREADABLE: 'poison',
  COMMAND_INVALID: 'poison',
  /** a transfer step with no debit behind it in `transfers`: forged, or from another database */
  STEP_UNBACKED: 'poison',
  INTERNAL: 'fatal',
} as const satisfies Record<string, ErrorClass>;

export type ErrorCode = keyof typeof ErrorCodes;

export class BankingError extends Error {
  readonly code: ErrorCode;
  override readonly cause?: unknown;
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(message);
    this.name = 'BankingError';
    this.code = code;
    this.cause = cause;
  }
  get errorClass(): ErrorClass {
    return ErrorCodes[this.code];
  }
}

/** A mistake in how a command line was written: reported in one line, exit 2, never a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export class ConfigError extends BankingError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
    this.name = 'ConfigError';
  }
}

/** Turns whatever was thrown into an Error, so every catch site can log `.message` and `.stack`. */
export function coerceError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === 'string') return new Error(e);
  try {
    return new Error(JSON.stringify(e));
  } catch {
    return new Error(String(e));
  }
}

/**
 * What a catch site does with a failure (docs/architecture.md §4). Every failure is
 * classified here, once, and each class has one action:
 *   transient - the world is briefly unwell (a lost connection, a server
 *               restarting, a deadlock, a Kafka timeout): retry the same unit
 *               of work with jittered backoff
 *   conflict  - someone else holds a key we write (unique violation): redo
 *               the unit carefully, from what Postgres holds
 *   poison    - one message's content makes the unit fail (a data exception):
 *               narrow the unit down to that message, dead-letter it, commit
 *               the rest
 *   fatal     - misconfiguration or a broken schema (a missing table, bad
 *               credentials): retrying cannot help; stop the role, not ready
 * An error this table does not know is `unknown`: retried with backoff like a
 * transient one, but the role reports itself stalled once it has failed
 * `pipeline.maxRetries` times in a row, so an unknown fault never loops unseen.
 */
export type ErrorClass = 'transient' | 'conflict' | 'poison' | 'fatal' | 'unknown';

/** PostgreSQL SQLSTATEs (or their two-character classes) by class, with why. */
const SQLSTATE_CLASS: Record<string, ErrorClass> = {
  '40001': 'transient', // serialization_failure
  '40P01': 'transient', // deadlock_detected
  '55P03': 'transient', // lock_not_available (lock_timeout)
  '57014': 'transient', // query_canceled (statement_timeout)
  '57P01': 'transient', // admin_shutdown (pg_terminate_backend or server stop)
  '57P02': 'transient', // crash_shutdown
  '57P03': 'transient', // cannot_connect_now (server starting)
  '53300': 'transient', // too_many_connections
  '53200': 'transient', // out_of_memory
  '53100': 'transient', // disk_full
  '08': 'transient',    // connection_exception and its subclasses
  '23505': 'conflict',  // unique_violation: a key already written by someone else
  '22': 'poison',       // data_exception: invalid text for a uuid, a bad array literal, a NUL byte, out of range
  '23': 'poison',       // integrity_constraint_violation other than 23505: not null, check, foreign key
  '54': 'poison',       // program_limit_exceeded: a value too large for a row or an index
  '42P01': 'fatal',     // undefined_table
  '42703': 'fatal',     // undefined_column
  '42883': 'fatal',     // undefined_function
  '42501': 'fatal',     // insufficient_privilege
  '3D000': 'fatal',     // invalid_catalog_name (no such database)
  '3F000': 'fatal',     // invalid_schema_name
  '28': 'fatal',        // invalid_authorization_specification (bad password)
  '25P02': 'transient', // in_failed_sql_transaction: the transaction is redone from the start
};

const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** librdkafka error codes (node-rdkafka's `err.code`) that mean the cluster is briefly away. */
const TRANSIENT_KAFKA_CODES = new Set([
  -195, // ERR__TRANSPORT
  -192, // ERR__MSG_TIMED_OUT
  -187, // ERR__ALL_BROKERS_DOWN
  -185, // ERR__TIMED_OUT
  -184, // ERR__QUEUE_FULL
  -180, // ERR__WAIT_COORD
  7,    // REQUEST_TIMED_OUT
  6,    // NOT_LEADER_FOR_PARTITION
  5,    // LEADER_NOT_AVAILABLE
  3,    // UNKNOWN_TOPIC_OR_PART (a topic being created)
]);

/** The class of any thrown value (see ErrorClass). */
export function classifyError(e: unknown): ErrorClass {
  if (e instanceof BankingError) return e.errorClass;
  const err = e as { code?: unknown; message?: unknown } | null;
  if (!err || typeof err !== 'object') return 'unknown';
  const code = err.code;
  if (typeof code === 'string') {
    if (code.length === 5 && /^[0-9A-Z]{5}$/.test(code)) {
      const c = SQLSTATE_CLASS[code] ?? SQLSTATE_CLASS[code.slice(0, 2)];
      if (c) return c;
    }
    if (TRANSIENT_NODE_CODES.has(code)) return 'transient';
  }
  if (typeof code === 'number' && TRANSIENT_KAFKA_CODES.has(code)) return 'transient';
  // node-postgres reports a dropped socket without a code
  const msg = typeof err.message === 'string' ? err.message : '';
  if (/Connection terminated|connection timeout|Client has encountered a connection error|not queryable|timeout exceeded when trying to connect/i.test(msg)) return 'transient';
  return 'unknown';
}

/** The SQLSTATE or client error code of a failure, for logs, metrics and /readyz ('UNKNOWN' when it has none). */
export function errorCodeOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' || typeof code === 'number' ? String(code) : 'UNKNOWN';
}

/** Full-jitter exponential backoff (AWS architecture blog), capped. */
export function backoffMs(attempt: number, baseMs = 50, capMs = 5_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.floor(Math.random() * exp);
}
