/**
 * pino JSON logs. Secrets never reach the output: known secret keys are
 * redacted by path, and every string argument and string field is scrubbed of
 * `user:password@` in URLs, because a URL can end up in any message
 * (connection errors from pg and ioredis quote them).
 */
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

// the password runs to the LAST '@' before the host, so a raw '@' inside it is censored too
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^:/@\s]*):(\S*)@(?=[^@\s]*(\s|$|["',;)]))/gi;

/** Replaces the password of every URL in `s` with ***. */
export function redactUrl(s: string): string {
  return s.replace(URL_CREDENTIALS, '$1$2:***@');
}

const REDACT_PATHS = [
  'password', '*.password', '*.*.password', 'sasl.password', 'kafka.sasl.password', 'kafka.ssl.keyPassword',
  'db.url', 'redis.url', 'config.db.url', 'config.redis.url', 'config.kafka.sasl.password', 'config.kafka.ssl.keyPassword',
  'sasl.password', "['sasl.password']", "['ssl.key.password']", '*["sasl.password"]', '*["ssl.key.password"]',
];

// any key that names a secret is censored wherever it sits (librdkafka's 'sasl.password', env-style KAFKA_SASL_PASSWORD, …)
const SECRET_KEY = /pass(word)?$|passwd|secret|token|api[_-]?key/i;

function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.includes('@') ? redactUrl(value) : value;
  if (depth > 12 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: redactUrl(value.message), stack: value.stack ? redactUrl(value.stack) : undefined };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) && v !== '' ? '***' : scrub(v, depth + 1);
  return out;
}

export interface LoggerOptions {
  level: string;
  name?: string;
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  const logger = pino(
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
  // child bindings bypass hooks and formatters; children inherit this override through pino's prototype chain
  const child = logger.child;
  logger.child = function (this: Logger, bindings: Record<string, unknown>, options?: object) {
    return child.call(this, scrub(bindings) as Record<string, unknown>, options as never);
  } as typeof logger.child;
  return logger;
}
