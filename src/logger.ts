/**
 * pino JSON logs. Secrets never reach the output: known secret keys are
 * redacted by path, and every string argument and string field is scrubbed of
 * `user:password@` in URLs, because a URL can end up in any message
 * (connection errors from pg and ioredis quote them).
 */
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^:/@\s]*):([^@\s]*)@/gi;

/** Replaces the password of every URL in `s` with ***. */
export function redactUrl(s: string): string {
  return s.replace(URL_CREDENTIALS, '$1$2:***@');
}

const REDACT_PATHS = [
  'password', '*.password', '*.*.password', 'sasl.password', 'kafka.sasl.password', 'kafka.ssl.keyPassword',
  'db.url', 'redis.url', 'config.db.url', 'config.redis.url', 'config.kafka.sasl.password', 'config.kafka.ssl.keyPassword',
  'sasl.password', "['sasl.password']", "['ssl.key.password']", '*["sasl.password"]', '*["ssl.key.password"]',
];

function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.includes('@') ? redactUrl(value) : value;
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: redactUrl(value.message), stack: value.stack ? redactUrl(value.stack) : undefined };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrub(v, depth + 1);
  return out;
}

export interface LoggerOptions {
  level: string;
  name?: string;
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      name: opts.name ?? 'banking-es',
      level: opts.level,
      redact: { paths: REDACT_PATHS, censor: '***' },
      serializers: { err: (e: unknown) => scrub(e) },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) args[i] = scrub(args[i]) as never;
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
