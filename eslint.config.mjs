// Flat config: typescript-eslint's recommended rules over every TypeScript source.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', '.banking-es/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // pure code: the domain, the codecs and what runs in worker threads decide from their inputs alone
    // (docs/architecture.md §5); Kafka, Postgres, Redis and Node I/O stay on the main thread
    files: ['src/domain/**/*.ts', 'src/codec/**/*.ts', 'src/pipeline/pack.ts', 'src/pipeline/batch-run.ts', 'src/pipeline/commands/decide-shard.ts', 'src/pipeline/commands/decided-outcomes.ts', 'src/pipeline/transfers/decide-steps.ts', 'src/pipeline/projections/project-shard.ts', 'workers/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['node-rdkafka', 'pg', 'pg-copy-streams', 'pg-logical-replication', 'ioredis', 'rxjs', 'pino', 'prom-client', 'convict']
          .map((name) => ({ name, message: 'pure code: no Kafka, Postgres, Redis or other I/O here (docs/architecture.md §5)' })),
        patterns: [
          { group: ['node:fs', 'node:fs/*', 'fs', 'node:net', 'net', 'node:http', 'http', 'node:https', 'node:child_process', 'child_process', 'node:dgram', 'node:dns', 'node:worker_threads', 'node:stream', 'node:stream/*'], message: 'pure code: no Node I/O here (docs/architecture.md §5)' },
          { group: ['**/kafka/**', '**/db/**', '**/redis', '**/logger', '**/metrics', '**/config', '**/daemon', '**/health'], message: 'pure code: the main thread\'s modules stay out of the domain, the codecs and worker code (docs/architecture.md §5)' },
        ],
      }],
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly' } },
  },
  {
    // install-time scripts run before the build, as plain CommonJS
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { process: 'readonly', require: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
