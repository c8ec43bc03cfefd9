/**
 * The closed set of error codes banking-es acts on. Every code maps to exactly
 * one action, so a catch site never has to guess what to do with a failure:
 *   dlq      - the input can never be processed; park it on the dead-letter topic
 *   reject   - a readable command that breaks a rule; answer with a rejected outcome
 *   retry    - a transient fault; back off and try the same unit of work again
 *   stop     - continuing would lose or corrupt data; stop the affected work loudly
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'stop',
  MIGRATION_FAILED: 'stop',
  OFFSET_OUT_OF_RANGE: 'stop',
  PG_TRANSIENT: 'retry',
  PG_CONFLICT: 'retry',
  KAFKA_TRANSIENT: 'retry',
  REDIS_UNAVAILABLE: 'retry',
  MESSAGE_UNREADABLE: 'dlq',
  COMMAND_INVALID: 'reject',
  INTERNAL: 'stop',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;
export type ErrorAction = (typeof ErrorCodes)[ErrorCode];

export class BankingError extends Error {
  readonly code: ErrorCode;
  override readonly cause?: unknown;
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(message);
    this.name = 'BankingError';
    this.code = code;
    this.cause = cause;
  }
  get action(): ErrorAction {
    return ErrorCodes[this.code];
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
 * PostgreSQL SQLSTATEs we retry, with why. Anything not listed is not retried:
 * retrying a bug in a tight loop only hides it.
 */
const RETRYABLE_SQLSTATE: Record<string, string> = {
  '40001': 'serialization_failure',
  '40P01': 'deadlock_detected',
  '55P03': 'lock_not_available',
  '57P01': 'admin_shutdown (pg_terminate_backend or server stop)',
  '57P02': 'crash_shutdown',
  '57P03': 'cannot_connect_now (server starting)',
  '53300': 'too_many_connections',
  '08000': 'connection_exception',
  '08003': 'connection_does_not_exist',
  '08006': 'connection_failure',
  '08001': 'sqlclient_unable_to_establish_sqlconnection',
  '08004': 'sqlserver_rejected_establishment_of_sqlconnection',
};

const RETRYABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/** True when a Postgres failure is worth retrying after a backoff. */
export function isRetryablePgError(e: unknown): boolean {
  const err = e as { code?: string; message?: string } | null;
  if (!err) return false;
  if (err.code && (RETRYABLE_SQLSTATE[err.code] || RETRYABLE_NODE_CODES.has(err.code))) return true;
  // node-postgres reports a dropped socket without a code
  const msg = err.message ?? '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(msg);
}

/** Unique violation (23505): a key already written by someone else. */
export function isUniqueViolation(e: unknown): boolean {
  return (e as { code?: string } | null)?.code === '23505';
}

/** Full-jitter exponential backoff (AWS architecture blog), capped. */
export function backoffMs(attempt: number, baseMs = 50, capMs = 5_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.floor(Math.random() * exp);
}
