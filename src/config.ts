/**
 * Configuration: one convict schema, validated strictly once at start and
 * passed down. Precedence (lowest first): schema defaults, config/default.json,
 * config/<NODE_ENV>.json, the local stack's generated connection file (when
 * `banking-es stack up` has run), files named by --config / BANKING_ES_CONFIG,
 * then environment variables.
 */
import convict from 'convict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './errors';
import { packageRoot } from './paths';

const ROLES = ['commands', 'transfers', 'projections', 'relay'] as const;
export type Role = (typeof ROLES)[number];

convict.addFormat({
  name: 'roles',
  validate(val: unknown) {
    if (!Array.isArray(val)) throw new Error('must be a list of roles');
    for (const r of val) {
      if (!(ROLES as readonly string[]).includes(r)) throw new Error(`unknown role "${String(r)}"; roles are ${ROLES.join(', ')}`);
    }
  },
  coerce: (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean),
});

convict.addFormat({
  name: 'brokers',
  validate(val: unknown) {
    if (typeof val !== 'string' || val.trim() === '') throw new Error('must be a comma-separated host:port list');
    for (const b of val.split(',')) {
      if (!/^[^\s:,]+:\d{1,5}$/.test(b.trim())) throw new Error(`"${b}" is not host:port`);
    }
  },
});

convict.addFormat({
  name: 'postgres-url',
  validate(val: unknown) {
    if (typeof val !== 'string' || !/^postgres(ql)?:\/\//.test(val)) throw new Error('must be a postgres:// URL');
    new URL(val);
  },
});

convict.addFormat({
  name: 'optional-redis-url',
  validate(val: unknown) {
    if (val === '') return;
    if (typeof val !== 'string' || !/^rediss?:\/\//.test(val)) throw new Error('must be empty (Redis off) or a redis:// or rediss:// URL');
    new URL(val);
  },
});

convict.addFormat({
  name: 'positive-int',
  validate(val: unknown) {
    if (typeof val !== 'number' || !Number.isSafeInteger(val) || val < 1) throw new Error('must be an integer >= 1');
  },
  coerce: (v: string) => Number(v),
});

convict.addFormat({
  name: 'topic-overrides',
  validate(val: unknown) {
    if (typeof val !== 'string') throw new Error('must be a string');
    for (const entry of val.split(',').map((e) => e.trim()).filter(Boolean)) {
      if (!/^[A-Za-z0-9._-]+=[1-9][0-9]*(\/(-1|[1-9][0-9]*))?$/.test(entry)) throw new Error(`"${entry}" is not topic=partitions or topic=partitions/replicationFactor`);
    }
  },
});

convict.addFormat({
  name: 'replication-factor',
  validate(val: unknown) {
    if (typeof val !== 'number' || !Number.isSafeInteger(val) || (val < 1 && val !== -1)) throw new Error('must be an integer >= 1, or -1 for the broker default');
  },
  coerce: (v: string) => Number(v),
});

convict.addFormat({
  name: 'non-negative-int',
  validate(val: unknown) {
    if (typeof val !== 'number' || !Number.isSafeInteger(val) || val < 0) throw new Error('must be an integer >= 0');
  },
  coerce: (v: string) => Number(v),
});

const schema = {
  env: { doc: 'Runtime environment; selects config/<env>.json.', format: ['production', 'development', 'test'], default: 'development', env: 'NODE_ENV' },
  roles: { doc: 'Roles this process runs: commands, transfers, projections, relay.', format: 'roles', default: ['commands', 'transfers', 'projections', 'relay'] as string[], env: 'ROLES' },
  log: {
    level: { doc: 'pino log level.', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', env: 'LOG_LEVEL' },
  },
  kafka: {
    brokers: { doc: 'Kafka bootstrap servers, host:port[,host:port].', format: 'brokers', default: '127.0.0.1:9092', env: 'KAFKA_BROKERS' },
    clientId: { doc: 'Kafka client.id prefix.', format: String, default: 'banking-es', env: 'KAFKA_CLIENT_ID' },
    groupId: { doc: 'Consumer group of the command pipeline; also the consumer name in consumer_offsets.', format: String, default: 'banking-es-commands', env: 'KAFKA_GROUP_ID' },
    transferGroupId: { doc: 'Consumer group of the transfer process (the transfers role, reading bank.transfers).', format: String, default: 'banking-es-transfers', env: 'KAFKA_TRANSFER_GROUP_ID' },
    projectionGroupId: { doc: 'Consumer group of the projection pipeline.', format: String, default: 'banking-es-projections', env: 'KAFKA_PROJECTION_GROUP_ID' },
    autoOffsetReset: { doc: 'Where a partition with NO stored offset starts. A stored offset Kafka no longer has is never reset (docs/architecture.md §4).', format: ['earliest', 'latest'], default: 'earliest', env: 'KAFKA_AUTO_OFFSET_RESET' },
    securityProtocol: { doc: 'librdkafka security.protocol.', format: ['plaintext', 'ssl', 'sasl_plaintext', 'sasl_ssl'], default: 'plaintext', env: 'KAFKA_SECURITY_PROTOCOL' },
    sasl: {
      mechanism: { doc: 'SASL mechanism (with sasl_* protocols).', format: ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'], default: 'PLAIN', env: 'KAFKA_SASL_MECHANISM' },
      username: { doc: 'SASL username.', format: String, default: '', env: 'KAFKA_SASL_USERNAME' },
      password: { doc: 'SASL password.', format: String, default: '', env: 'KAFKA_SASL_PASSWORD', sensitive: true },
    },
    ssl: {
      caLocation: { doc: 'CA bundle path for TLS (ssl.ca.location).', format: String, default: '', env: 'KAFKA_SSL_CA_LOCATION' },
      certificateLocation: { doc: 'Client certificate path for mutual TLS.', format: String, default: '', env: 'KAFKA_SSL_CERTIFICATE_LOCATION' },
      keyLocation: { doc: 'Client key path for mutual TLS.', format: String, default: '', env: 'KAFKA_SSL_KEY_LOCATION' },
      keyPassword: { doc: 'Client key password.', format: String, default: '', env: 'KAFKA_SSL_KEY_PASSWORD', sensitive: true },
    },
    queuedMaxMessagesKbytes: { doc: 'librdkafka queued.max.messages.kbytes per partition: bounds prefetch memory.', format: 'positive-int', default: 16384, env: 'KAFKA_QUEUED_MAX_KBYTES' },
    messageTimeoutMs: { doc: 'How long the producer keeps retrying one message before its delivery fails (librdkafka message.timeout.ms), for everything the daemon produces: outcomes, transfer steps, relayed events, dead letters. A failed outcome or transfer step is published again by consuming its partition again (docs/reliability.md §13), so this is also about how long one can take to arrive when Kafka blips: lower it (e.g. 30000) to re-publish sooner, at the cost of more rewinds on a slow cluster.', format: 'positive-int', default: 300000, env: 'KAFKA_MESSAGE_TIMEOUT_MS' },
    fetchMaxBytes: { doc: 'librdkafka fetch.max.bytes.', format: 'positive-int', default: 16777216, env: 'KAFKA_FETCH_MAX_BYTES' },
    statisticsIntervalMs: { doc: 'librdkafka statistics.interval.ms feeding metrics; 0 disables.', format: 'non-negative-int', default: 5000, env: 'KAFKA_STATISTICS_INTERVAL_MS' },
    metadataRefreshMs: { doc: 'How often the clients refresh cluster metadata (librdkafka topic.metadata.refresh.interval.ms, 5 minutes by default there): a topic created, or partitions added, after a consumer subscribed are consumed within this long; missing topics are looked for again this often.', format: 'positive-int', default: 3000, env: 'KAFKA_METADATA_REFRESH_MS' },
    createTopics: { doc: 'Create missing topics at start (AdminClient CreateTopics, else a metadata request that an auto-creating cluster answers by creating the topic). Off: a missing topic makes the role not ready until it appears. On for the embedded stack and the demo.', format: Boolean, default: false, env: 'KAFKA_CREATE_TOPICS' },
    adminTimeoutMs: { doc: 'How long a CreateTopics request may take before the metadata fallback is tried.', format: 'positive-int', default: 3000, env: 'KAFKA_ADMIN_TIMEOUT_MS' },
    newTopics: {
      partitions: { doc: 'Partitions of a topic banking-es creates. Partitions bound the number of useful instances of a role.', format: 'positive-int', default: 12, env: 'KAFKA_NEW_TOPIC_PARTITIONS' },
      replicationFactor: { doc: 'Replication factor of a topic banking-es creates; -1 takes the broker default (default.replication.factor, Kafka 2.4+).', format: 'replication-factor', default: -1, env: 'KAFKA_NEW_TOPIC_REPLICATION_FACTOR' },
      overrides: { doc: 'Per-topic settings over those two: "topic=partitions[/replicationFactor],…", e.g. "bank.commands=24/3,bank.commands.dlq=1".', format: 'topic-overrides', default: '', env: 'KAFKA_NEW_TOPIC_OVERRIDES' },
    },
    groupInstanceId: { doc: 'Static group membership (group.instance.id, KIP-345), e.g. the pod name; each consumer adds its role. A restarted instance with the same id gets its partitions back without a rebalance of the whole group (within session.timeout.ms). Empty: dynamic membership. Must be unique per running instance.', format: String, default: '', env: 'KAFKA_GROUP_INSTANCE_ID' },
    topics: {
      commands: { doc: 'Command topic.', format: String, default: 'bank.commands', env: 'KAFKA_TOPIC_COMMANDS' },
      results: { doc: 'Command outcome topic.', format: String, default: 'bank.command-results', env: 'KAFKA_TOPIC_RESULTS' },
      commandsDlq: { doc: 'Dead letters of the command topic.', format: String, default: 'bank.commands.dlq', env: 'KAFKA_TOPIC_COMMANDS_DLQ' },
      transfers: { doc: 'Internal topic of the transfer steps (credit, refund). Only banking-es may write it (docs/transfers.md).', format: String, default: 'bank.transfers', env: 'KAFKA_TOPIC_TRANSFERS' },
      transfersDlq: { doc: 'Dead letters of the transfer steps.', format: String, default: 'bank.transfers.dlq', env: 'KAFKA_TOPIC_TRANSFERS_DLQ' },
      events: { doc: 'Event topic fed by CDC.', format: String, default: 'bank.events', env: 'KAFKA_TOPIC_EVENTS' },
      eventsDlq: { doc: 'Dead letters of the event topic.', format: String, default: 'bank.events.dlq', env: 'KAFKA_TOPIC_EVENTS_DLQ' },
    },
  },
  db: {
    url: { doc: 'PostgreSQL URL; sslmode etc. go in its query string.', format: 'postgres-url', default: 'postgres://postgres:postgres@127.0.0.1:5432/banking', env: 'DATABASE_URL', sensitive: true },
    poolSize: { doc: 'Postgres connections per pool.', format: 'positive-int', default: 8, env: 'DB_POOL_SIZE' },
    migrate: { doc: 'Apply migrations at start-up.', format: Boolean, default: true, env: 'DB_MIGRATE' },
    statementTimeoutMs: { doc: 'statement_timeout for daemon connections; 0 = none.', format: 'non-negative-int', default: 60000, env: 'DB_STATEMENT_TIMEOUT_MS' },
  },
  redis: {
    url: { doc: 'Redis URL; empty disables Redis (correctness never depends on it).', format: 'optional-redis-url', default: '', env: 'REDIS_URL', sensitive: true },
    dedupWindowMs: { doc: 'How long a commandId stays in the Redis dedup filter.', format: 'positive-int', default: 600000, env: 'REDIS_DEDUP_WINDOW_MS' },
    stateTtlMs: { doc: 'TTL of cached account state in Redis.', format: 'positive-int', default: 3600000, env: 'REDIS_STATE_TTL_MS' },
  },
  pipeline: {
    batchSize: { doc: 'Max messages per batch (bufferCount bound).', format: 'positive-int', default: 5000, env: 'PIPELINE_BATCH_SIZE' },
    batchTimeMs: { doc: 'Max time a message waits for its batch (bufferTime).', format: 'positive-int', default: 10, env: 'PIPELINE_BATCH_TIME_MS' },
    workers: { doc: 'piscina worker threads; 0 runs the same code inline on the main thread.', format: 'non-negative-int', default: 1, env: 'PIPELINE_WORKERS' },
    shards: { doc: 'Shards per batch (tasks sent to the pool).', format: 'positive-int', default: 2, env: 'PIPELINE_SHARDS' },
    maxInFlight: { doc: 'Messages consumed but not yet committed before the consumer pauses (backpressure).', format: 'positive-int', default: 50000, env: 'PIPELINE_MAX_IN_FLIGHT' },
    stateCacheSize: { doc: 'Accounts kept in the in-process state cache.', format: 'positive-int', default: 200000, env: 'PIPELINE_STATE_CACHE_SIZE' },
    maxRetries: { doc: 'Failed attempts in a row (a batch, a flush, a relay step) after which the role reports itself stalled: not ready in /readyz, banking_es_pipeline_stalled 1. Transient faults are still retried after it, with backoff; a fatal one stops the role at once. Applies to the command and projection pipelines and both relays.', format: 'positive-int', default: 8, env: 'PIPELINE_MAX_RETRIES' },
  },
  projections: {
    batchSize: { doc: 'Max events per projection flush. Read models favour throughput: bigger than the command batches.', format: 'positive-int', default: 20000, env: 'PROJECTIONS_BATCH_SIZE' },
    batchTimeMs: { doc: 'Max time an event waits for its projection flush.', format: 'positive-int', default: 50, env: 'PROJECTIONS_BATCH_TIME_MS' },
    shards: { doc: 'Shards per projection flush (tasks sent to the worker pool).', format: 'positive-int', default: 4, env: 'PROJECTIONS_SHARDS' },
    maxInFlight: { doc: 'Events consumed but not yet committed before the projector pauses.', format: 'positive-int', default: 100000, env: 'PROJECTIONS_MAX_IN_FLIGHT' },
  },
  transfers: {
    enabled: { doc: 'The command role accepts Transfer (docs/transfers.md). The transfers role must run in some instance; turn this off where none does, and Transfer is INVALID_COMMAND.', format: Boolean, default: true, env: 'TRANSFERS_ENABLED' },
  },
  limits: {
    maxMessageBytes: { doc: 'Larger command messages go to the DLQ.', format: 'positive-int', default: 65536, env: 'LIMITS_MAX_MESSAGE_BYTES' },
  },
  cdc: {
    mode: { doc: 'How events reach bank.events: relay (logical replication), poller, or debezium (external).', format: ['relay', 'poller', 'debezium'], default: 'relay', env: 'CDC_MODE' },
    slot: { doc: 'Replication slot of the logical relay. Slots are server-wide: empty derives banking_es_relay_<database>, so databases on one server do not collide.', format: String, default: '', env: 'CDC_SLOT' },
    publication: { doc: 'Publication of the events table used by the logical relay (per database).', format: String, default: 'banking_es_events', env: 'CDC_PUBLICATION' },
  },
  metrics: {
    host: { doc: 'Bind address of the metrics/health server.', format: String, default: '127.0.0.1', env: 'METRICS_HOST' },
    port: { doc: 'Port of the metrics/health server; 0 picks a free port.', format: 'port', default: 9464, env: 'METRICS_PORT' },
  },
  shutdown: {
    timeoutMs: { doc: 'Graceful shutdown budget before a forced exit.', format: 'positive-int', default: 15000, env: 'SHUTDOWN_TIMEOUT_MS' },
  },
  stack: {
    dir: { doc: 'Directory of the embedded local stack state (connection file, logs).', format: String, default: '.banking-es', env: 'BANKING_ES_STACK_DIR' },
  },
};

/** The schema itself, for generated docs (docs/configuration.md). */
export const configSchema = schema;
type Schema = typeof schema;
type Leaf<T> = T extends { default: infer D } ? (D extends readonly string[] ? string[] : D extends string ? string : D) : never;
type Shape<S> = { [K in keyof S]: S[K] extends { doc: string } ? Leaf<S[K]> : Shape<S[K]> };
export type Config = Shape<Schema> & { roles: Role[] };

export interface LoadOptions {
  /** Extra config files, applied after the standard ones. */
  files?: string[];
  /** Environment to read; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Skip the stack connection file (tests that want defaults only). */
  ignoreStack?: boolean;
}

export interface LoadedConfig {
  config: Config;
  /** Files that were applied, in order. */
  sources: string[];
  /** The effective config as JSON with sensitive values redacted. */
  redacted(): string;
}

export function stackConnectionFile(stackDir: string): string {
  return path.join(path.resolve(packageRoot(), stackDir), 'stack', 'config.json');
}

/** Loads, merges and strictly validates config; throws ConfigError naming the key and the rule. */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const conf = convict(schema, { env: env as Record<string, string> });
  const sources: string[] = [];
  const root = packageRoot();
  const candidates = [path.join(root, 'config', 'default.json'), path.join(root, 'config', `${conf.get('env')}.json`)];
  if (!opts.ignoreStack) candidates.push(stackConnectionFile(conf.get('stack.dir')));
  const extra = [...(opts.files ?? [])];
  if (env.BANKING_ES_CONFIG) extra.push(...env.BANKING_ES_CONFIG.split(',').filter(Boolean));
  /** A file that is not JSON is named, with the parser's reason. */
  const loadFile = (f: string) => {
    try {
      conf.loadFile(f);
    } catch (e) {
      const why = (e as Error).message.split('\n')[0].slice(0, 200); // not the file's content
      throw new ConfigError(`config file ${f} could not be read as JSON: ${why}`);
    }
    sources.push(f);
  };
  try {
    for (const f of candidates) if (fs.existsSync(f)) loadFile(f);
    for (const f of extra) {
      if (!fs.existsSync(f)) throw new ConfigError(`config file ${f} does not exist`);
      loadFile(f);
    }
    conf.validate({ allowed: 'strict' });
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const own = path.join(root, 'config');
    const files = sources.filter((f) => path.dirname(f) !== own); // the user's files, which may hold the mistake
    const why = (e as Error).message.split('\n').map((l) => l.trim()).filter(Boolean).join('; '); // one line
    throw new ConfigError(`invalid configuration: ${why}${files.length ? ` (files read: ${files.join(', ')}; environment variables override them)` : ''}`);
  }
  const config = conf.getProperties() as Config;
  return { config, sources, redacted: () => conf.toString() };
}

interface SchemaLeaf { doc: string; format: unknown; default: unknown; env?: string; sensitive?: boolean }

/**
 * The "Keys" table of docs/configuration.md, generated from the schema (dev/docs/config-table.ts
 * writes it; a unit test checks the file has exactly this), so every key and env variable is listed.
 */
export function configurationTable(): string {
  const rows: string[] = ['| key | env | default | format | meaning |', '|---|---|---|---|---|'];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      const leaf = v as SchemaLeaf;
      if (typeof leaf === 'object' && leaf !== null && 'doc' in leaf && 'default' in leaf) {
        const format = Array.isArray(leaf.format) ? leaf.format.join(' \\| ')
          : typeof leaf.format === 'string' ? leaf.format
            : leaf.format === String ? 'string' : leaf.format === Boolean ? 'boolean' : leaf.format === Number ? 'number' : String(leaf.format);
        const doc = leaf.doc.replace(/\|/g, '\\|') + (leaf.sensitive ? ' **Secret**: redacted in logs and `banking-es config`.' : '');
        rows.push(`| \`${key}\` | ${leaf.env ? `\`${leaf.env}\`` : ''} | ${JSON.stringify(leaf.default).replace(/\|/g, '\\|')} | ${format} | ${doc} |`);
      } else walk(v as Record<string, unknown>, key);
    }
  };
  walk(configSchema as unknown as Record<string, unknown>, '');
  return rows.join('\n');
}
