#!/usr/bin/env node
/**
 * banking-es command line:
 *   start                 run the daemon (roles from config; --roles a,b overrides)
 *   migrate               apply database migrations and exit
 *   config                print the effective configuration, secrets redacted
 *   stack up|down|status  the embedded local stack (Postgres, Kafka mock, Redis)
 *   send <Type> --account …  produce one command (or NDJSON from stdin) and print its outcome
 *   demo                  stack + daemon + load generator, then a checked summary
 *   rebuild-projections   rebuild the read models from the event store (resumable, one at a time)
 *   account <id>          an account's projection and its latest transactions
 */
import { loadConfig, type LoadedConfig } from './config';
import { ConfigError, coerceError } from './errors';
import { createLogger } from './logger';
import { Lifecycle } from './lifecycle';
import { runDaemon } from './daemon';
import { closesStillRunning } from './kafka/native-close';
import { createPool } from './db/pool';
import { migrate } from './db/migrate';
import { commandFromFlags, send } from './send';
import { runRebuildCommand, runAccountCommand } from './projections/cli-commands';

interface Args { cmd: string; positional: string[]; flags: Map<string, string | true> }

export function parseArgs(argv: string[]): Args {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags.set(a.slice(2), argv[++i]);
      else flags.set(a.slice(2), true);
    } else positional.push(a);
  }
  return { cmd: positional.shift() ?? 'help', positional, flags };
}

function load(args: Args): LoadedConfig {
  const files = typeof args.flags.get('config') === 'string' ? [args.flags.get('config') as string] : [];
  const env = { ...process.env };
  const roles = args.flags.get('roles');
  if (typeof roles === 'string') env.ROLES = roles;
  return loadConfig({ files, env });
}

const HELP = `usage: banking-es <command>
  start [--roles commands,projections,relay] [--config file.json]
  migrate                 apply database migrations
  config                  print the effective configuration (secrets redacted)
  stack up|down|status    embedded local stack: Postgres, Kafka mock cluster, Redis
  send <OpenAccount|Deposit|Withdraw|CloseAccount> [--account id] [--amount 10.00]
       [--owner name] [--currency USD] [--initial-balance 0] [--reason text]
       [--expected-version n] [--command-id id]      print the command's outcome
  send -                  NDJSON commands from stdin, one outcome per line
  rebuild-projections [--batch-size 5000]   rebuild read models from the event store
  account <id> [--limit 20]                 an account's projection and latest transactions
  demo [--commands 100000] [--accounts 2000] [--rate 0] [--workers 1] [--keep-stack]
Environment variables override config files; see docs/configuration.md.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  switch (args.cmd) {
    case 'start': {
      const { config, sources } = load(args);
      const log = createLogger({ level: config.log.level });
      const lifecycle = new Lifecycle(log, config.shutdown.timeoutMs);
      lifecycle.installSignalHandlers();
      log.info({ sources }, 'configuration loaded');
      const code = await runDaemon(config, log, lifecycle);
      const stillClosing = closesStillRunning();
      if (stillClosing.length > 0) {
        // process.exit() would wait for these closes (native-close.ts): end by the default SIGTERM action
        log.error({ clients: stillClosing }, 'a Kafka client is still closing after its bound; ending the process by SIGTERM without waiting for it');
        log.flush();
        process.removeAllListeners('SIGTERM');
        setTimeout(() => process.kill(process.pid, 'SIGTERM'), 100);
        return code;
      }
      log.flush();
      // shutdown has run every closer it could within the budget; nothing may keep the process alive past it.
      // A closer that overran the budget may still start a Kafka close meanwhile: process.exit() would then
      // wait for it without bound (native-close.ts), so it is checked again at the last moment.
      setTimeout(() => {
        const late = closesStillRunning();
        if (late.length === 0) process.exit(code);
        log.error({ clients: late }, 'a Kafka client began closing after the shutdown budget; ending the process by SIGTERM without waiting for it');
        log.flush();
        process.removeAllListeners('SIGTERM');
        process.kill(process.pid, 'SIGTERM');
      }, 500).unref();
      return code;
    }
    case 'migrate': {
      const { config } = load(args);
      const log = createLogger({ level: config.log.level });
      const pool = createPool({ url: config.db.url, max: 1 }, log);
      try {
        const applied = await migrate(pool);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'schema up to date\n');
      } finally {
        await pool.end();
      }
      return 0;
    }
    case 'config': {
      process.stdout.write(load(args).redacted() + '\n');
      return 0;
    }
    case 'stack': {
      const dir = typeof args.flags.get('dir') === 'string' ? (args.flags.get('dir') as string) : loadConfig({ ignoreStack: true }).config.stack.dir;
      // the embedded stack is a development tool (dev/), loaded only for this command
      const { stackCommand } = await import('../dev/stack/stack-command.js');
      return stackCommand(args.positional[0] ?? 'status', dir, (l) => process.stdout.write(`${l}\n`));
    }
    case 'send': {
      const { config } = load(args);
      const type = args.positional[0];
      const timeout = Number(args.flags.get('timeout') ?? 30000);
      const print = (l: string) => process.stdout.write(`${l}\n`);
      if (!type || type === '-') return send(config, 'stdin', timeout, print);
      return send(config, [commandFromFlags(type, args.flags)], timeout, print);
    }
    case 'demo': {
      const num = (k: string, d: number) => (typeof args.flags.get(k) === 'string' ? Number(args.flags.get(k)) : d);
      const dir = loadConfig({ ignoreStack: true }).config.stack.dir;
      const { runDemo } = await import('../dev/demo.js');
      return runDemo({ dir, accounts: num('accounts', 2000), commands: num('commands', 100000), rate: num('rate', 0), workers: num('workers', 1), keepStack: args.flags.has('keep-stack') }, (l) => process.stdout.write(`${l}\n`));
    }
    case 'rebuild-projections': {
      // handles SIGINT/SIGTERM itself: the first stops after the current page (resumable), the second exits
      const { config } = load(args);
      const log = createLogger({ level: config.log.level });
      const bs = args.flags.get('batch-size');
      return runRebuildCommand(config, log, { batchSize: typeof bs === 'string' ? Number(bs) : undefined });
    }
    case 'account': {
      const { config } = load(args);
      return runAccountCommand(config, args.positional[0], process.stdout, { limit: Number(args.flags.get('limit') ?? 20) });
    }
    case 'help':
    case '--help':
      process.stdout.write(HELP + '\n');
      return 0;
    default:
      process.stderr.write(`unknown command "${args.cmd}"\n${HELP}\n`);
      return 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      if (e instanceof ConfigError) {
        process.stderr.write(`banking-es: ${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      process.stderr.write(`banking-es: ${coerceError(e).stack ?? coerceError(e).message}\n`);
      process.exitCode = 1;
    },
  );
}
