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
 *   dlq list|show|replay  the dead-letter topics: look, and send fixed letters back
 */
import { loadConfig, type LoadedConfig } from './config';
import { ConfigError, UsageError, coerceError } from './errors';
import { createLogger } from './logger';
import { Lifecycle } from './lifecycle';
import { runDaemon } from './daemon';
import { closesStillRunning } from './kafka/native-close';
import { createPool } from './db/pool';
import { migrate } from './db/migrate';
import { commandFromFlags, send } from './send';
import { runRebuildCommand, runAccountCommand } from './projections/cli-commands';
import { readFileSync } from 'node:fs';
import { parseSince } from './time-arg';
import { header, produceAll, readLetters, replayMessage, REPLAYED_FROM, summary, whole, type Selection } from './dlq';

/** value: one string; list: repeatable, values joined by commas; number: a whole number; switch: no value. */
type FlagKind = 'value' | 'list' | 'number' | 'switch';
interface CommandSpec {
  usage: string;
  flags: Record<string, FlagKind>;
  /** how many positional arguments it takes */
  positional: [min: number, max: number];
}

const CONFIG_FLAG = { config: 'value' } as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Every subcommand: its usage (printed by `--help`, which does nothing else) and what it accepts. */
export const COMMANDS: Record<string, CommandSpec> = {
  start: {
    usage: 'start [--roles commands,projections,relay] [--config file.json]\n  run the daemon until SIGTERM or SIGINT',
    flags: { roles: 'value', ...CONFIG_FLAG }, positional: [0, 0],
  },
  migrate: { usage: 'migrate [--config file.json]\n  apply the database migrations and exit', flags: { ...CONFIG_FLAG }, positional: [0, 0] },
  config: { usage: 'config [--roles …] [--config file.json]\n  print the effective configuration, secrets redacted', flags: { roles: 'value', ...CONFIG_FLAG }, positional: [0, 0] },
  stack: {
    usage: 'stack up|down|status [--dir path]\n  the embedded local stack: Postgres, a Kafka mock cluster, Redis (default: status)',
    flags: { dir: 'value' }, positional: [0, 1],
  },
  send: {
    usage: 'send <OpenAccount|Deposit|Withdraw|Transfer|CloseAccount> [--account id] [--amount 10.00]\n'
      + '     [--to id (Transfer: the destination)] [--owner name] [--currency USD] [--initial-balance 0] [--reason text]\n'
      + '     [--expected-version n] [--command-id id] [--timeout ms] [--config file.json]\n'
      + '  produce one command and print its outcome (or that it was dead-lettered)\n'
      + 'send - [--timeout ms] [--config file.json]\n'
      + '  NDJSON commands from stdin, one outcome per line; a line that is not a JSON object is reported by number and not sent',
    flags: {
      account: 'value', to: 'value', amount: 'value', owner: 'value', currency: 'value', 'initial-balance': 'value', reason: 'value',
      'expected-version': 'number', 'command-id': 'value', timeout: 'number', ...CONFIG_FLAG,
    },
    positional: [1, 1],
  },
  demo: {
    usage: 'demo [--commands 100000] [--accounts 2000] [--transfers 0.1] [--rate 0] [--workers 1] [--keep-stack]\n  stack + daemon + load generator, then a checked summary (--transfers: their share of the commands)',
    flags: { commands: 'number', accounts: 'number', transfers: 'value', rate: 'number', workers: 'number', 'keep-stack': 'switch' }, positional: [0, 0],
  },
  'rebuild-projections': {
    usage: 'rebuild-projections [--account id[,id…]]… [--since 2h|<ISO time>] [--batch-size 5000] [--yes] [--config file.json]\n'
      + '  empty the read models (account_projections, transaction_projections) and rebuild them from the\n'
      + '  event store, resumable; with --account or --since, only the rows of those accounts (--since: every\n'
      + '  account with an event recorded since then); asks first on a terminal, needs --yes otherwise',
    flags: { account: 'list', since: 'value', 'batch-size': 'number', yes: 'switch', ...CONFIG_FLAG }, positional: [0, 0],
  },
  dlq: {
    usage: 'dlq list|show|replay [--topic bank.commands.dlq] [--code CODE] [--since 2h|<ISO time>] [--until <ISO time>]\n'
      + '    [--partition n] [--offset n] [--from-offset n] [--to-offset n] [--source-partition n] [--limit n]\n'
      + '    [--value-file fixed.json] [--again] [--yes] [--config file.json]\n'
      + '  list: one JSON line per dead letter (default topic: the command DLQ); show: one letter whole, headers and\n'
      + '  value (--partition, --offset); replay: send the selected letters to their source topic marked\n'
      + '  banking-es.replayed-from, leaving out letters that carry that mark (a replay that failed again) unless\n'
      + '  --again; --value-file replaces the value of the one letter selected; asks first on a terminal, needs --yes otherwise',
    flags: {
      topic: 'value', code: 'value', since: 'value', until: 'value', partition: 'number', offset: 'number', 'from-offset': 'number',
      'to-offset': 'number', 'source-partition': 'number', limit: 'number', 'value-file': 'value', again: 'switch', yes: 'switch', ...CONFIG_FLAG,
    },
    positional: [1, 1],
  },
  account: { usage: 'account <id> [--limit 20] [--config file.json]\n  an account\'s projection and its latest transactions', flags: { limit: 'number', ...CONFIG_FLAG }, positional: [1, 1] },
};

interface Args { cmd: string; positional: string[]; flags: Map<string, string | true>; help: boolean }

/**
 * Parses `argv` against the subcommand's spec. `--help` / `-h` anywhere asks for its usage; an
 * unknown flag, a missing or non-numeric value, or a wrong number of arguments is a UsageError.
 */
export function parseArgs(argv: string[]): Args {
  const help = argv.includes('--help') || argv.includes('-h');
  const rest = argv.filter((a) => a !== '--help' && a !== '-h');
  const cmd = rest.shift() ?? 'help';
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const spec = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!spec) {
    if (cmd === 'help') return { cmd, positional: rest, flags, help: false }; // `banking-es`, `--help`, `help <command>`
    throw new UsageError(`unknown command "${cmd}"; banking-es --help lists them`);
  }
  if (help) return { cmd, positional: rest, flags, help };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--')) { positional.push(a); continue; }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const kind = spec.flags[name];
    if (!kind) throw new UsageError(`${cmd}: unknown option --${name}`);
    if (kind === 'switch') {
      if (eq > 0) throw new UsageError(`${cmd}: --${name} takes no value`);
      flags.set(name, true);
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : rest[++i];
    // `--account --amount 5` is a missing value, not an account named "--amount" (write --account=--x for that)
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) throw new UsageError(`${cmd}: --${name} needs a value`);
    if (kind === 'number' && !(/^\d+$/.test(value) && Number.isSafeInteger(Number(value)))) throw new UsageError(`${cmd}: --${name} must be a whole number, not "${value}"`);
    const before = flags.get(name);
    flags.set(name, kind === 'list' && typeof before === 'string' ? `${before},${value}` : value);
  }
  const [min, max] = spec.positional;
  if (positional.length < min) throw new UsageError(`${cmd}: missing argument (usage: banking-es ${spec.usage.split('\n')[0]})`);
  if (positional.length > max) throw new UsageError(`${cmd}: unexpected argument "${positional[max]}"`);
  return { cmd, positional, flags, help };
}

const text = (args: Args, k: string): string | undefined => {
  const v = args.flags.get(k);
  return typeof v === 'string' ? v : undefined;
};
const num = (args: Args, k: string, d: number): number => {
  const v = text(args, k);
  return v === undefined ? d : Number(v);
};

function load(args: Args): LoadedConfig {
  const file = text(args, 'config');
  const env = { ...process.env };
  const roles = text(args, 'roles');
  if (roles !== undefined) env.ROLES = roles;
  return loadConfig({ files: file ? [file] : [], env });
}

const HELP = `usage: banking-es <command> [options]     (banking-es <command> --help for one command)
${Object.values(COMMANDS).map((c) => c.usage.split('\n').map((l) => `  ${l}`).join('\n')).join('\n')}
Environment variables override config files; see docs/configuration.md.`;

/** host:port/database of a Postgres URL, never its credentials. */
function redactedDatabase(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'the configured database';
  }
}

/** On a terminal, asks; elsewhere (a script, CI, a pipe) a destructive command needs --yes. */
async function confirm(args: Args, what: string): Promise<void> {
  process.stderr.write(`${what}\n`);
  if (args.flags.has('yes')) return;
  if (!process.stdin.isTTY || !process.stderr.isTTY) throw new UsageError(`${args.cmd}: not on a terminal; pass --yes to go ahead`);
  const readline = await import('node:readline/promises');
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question('continue? [y/N] ');
    if (!/^y(es)?$/i.test(answer.trim())) throw Object.assign(new UsageError(`${args.cmd}: nothing done`), { exitCode: 1 });
  } finally {
    rl.close();
  }
}

async function dlqCommand(args: Args): Promise<number> {
  const action = args.positional[0];
  if (!['list', 'show', 'replay'].includes(action)) throw new UsageError(`dlq: "${action}" is not list, show or replay`);
  const n = (k: string) => (text(args, k) === undefined ? undefined : num(args, k, 0));
  const since = text(args, 'since');
  const until = text(args, 'until');
  const sel: Selection = {
    code: text(args, 'code'), sinceMs: since === undefined ? undefined : parseSince(since), untilMs: until === undefined ? undefined : parseSince(until),
    partition: n('partition'), offset: n('offset'), fromOffset: n('from-offset'), toOffset: n('to-offset'), sourcePartition: n('source-partition'), limit: n('limit'),
  };
  if (sel.offset !== undefined && sel.partition === undefined) throw new UsageError('dlq: --offset needs --partition');
  if (action === 'show' && (sel.partition === undefined || sel.offset === undefined)) throw new UsageError('dlq show: --partition and --offset name the letter');
  const selects = Object.entries(sel).some(([k, v]) => k !== 'limit' && v !== undefined);
  if (action === 'replay' && !selects) throw new UsageError('dlq replay: select the letters (--partition and --offset, --code, --since, --source-partition, …)');
  const valueFile = text(args, 'value-file');
  if (valueFile !== undefined && action !== 'replay') throw new UsageError('dlq: --value-file is for replay');
  const { config } = load(args);
  const topic = text(args, 'topic') ?? config.kafka.topics.commandsDlq;
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const letters = await readLetters(config, topic, sel);
  if (action === 'list') {
    for (const l of letters) out(summary(l, topic));
    process.stderr.write(`${letters.length} dead letters in ${topic}${selects ? ' matching' : ''}\n`);
    return 0;
  }
  if (action === 'show') {
    if (letters.length === 0) { process.stderr.write(`banking-es: no letter at ${topic}/${sel.partition}/${sel.offset}\n`); return 1; }
    out(whole(letters[0], topic));
    return 0;
  }
  const again = args.flags.has('again');
  const skipped = new Set(again ? [] : letters.filter((l) => header(l, REPLAYED_FROM) !== undefined));
  const chosen = letters.filter((l) => !skipped.has(l));
  if (valueFile !== undefined && chosen.length !== 1) throw new UsageError(`dlq replay: --value-file replaces one letter's value; ${chosen.length} are selected`);
  // only commands are replayed, to the command topic, and transfer steps from their own dead-letter topic
  // to bank.transfers (only banking-es writes either): an event lives in the event store (one sent to the
  // event topic by hand would be in the read models only), and a letter's source.topic header is the
  // producer's to forge, so it may name no other topic (outcomes, a dead-letter topic itself)
  const commandsTopic = topic === config.kafka.topics.transfersDlq ? config.kafka.topics.transfers : config.kafka.topics.commands;
  const toEvents = chosen.filter((l) => header(l, 'source.topic') === config.kafka.topics.events);
  if (toEvents.length) {
    throw new UsageError(`dlq replay: ${toEvents.length} letters came from the event topic ${config.kafka.topics.events}; events are not replayed by hand (the read models would hold what the event store does not): fix the relay or the stored event, or run rebuild-projections`);
  }
  const elsewhere = chosen.filter((l) => header(l, 'source.topic') !== commandsTopic);
  if (elsewhere.length) {
    const l = elsewhere[0];
    throw new UsageError(`dlq replay: ${elsewhere.length} letters name a source topic other than ${commandsTopic} (e.g. ${topic}/${l.partition}/${l.offset}: "${header(l, 'source.topic') ?? ''}"); only commands (from ${config.kafka.topics.commandsDlq}) and transfer steps (from ${config.kafka.topics.transfersDlq}) are replayed`);
  }
  // a letter too large to keep its value has none to send: only a fixed value can replay it
  const empty = valueFile === undefined ? chosen.filter((l) => l.value === null || header(l, 'error.value.bytes') !== undefined) : [];
  if (empty.length) throw new UsageError(`dlq replay: ${empty.length} letters have no value (too large to dead-letter whole, see error.value.bytes); replay each with --value-file`);
  const note = skipped.size ? `; ${skipped.size} letters that were replayed before and failed again are left out (--again includes them)` : '';
  if (chosen.length === 0) { process.stderr.write(`nothing to replay from ${topic}${note}\n`); return 0; }
  const value = valueFile === undefined ? undefined : readFileSync(valueFile);
  const msgs = chosen.map((l) => replayMessage(l, topic, value ?? l.value));
  const targets = [...new Set(msgs.map((m) => m.topic))].join(', ');
  await confirm(args, `dlq replay sends ${chosen.length} letters from ${topic} to ${targets}${valueFile ? ` with the value of ${valueFile}` : ' as they were'}${note}`);
  await produceAll(config, msgs);
  out({ replayed: chosen.length, from: topic, to: targets, letters: chosen.map((l) => `${topic}/${l.partition}/${l.offset}`), skipped: skipped.size });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.help) {
    const spec = COMMANDS[args.cmd];
    process.stdout.write(spec ? `usage: banking-es ${spec.usage}\n` : `${HELP}\n`);
    return 0;
  }
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
        const applied = await migrate(pool, undefined, (message) => process.stderr.write(`warning: ${message}\n`));
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
      const action = args.positional[0] ?? 'status';
      if (!['up', 'down', 'status'].includes(action)) throw new UsageError(`stack: "${action}" is not up, down or status`);
      const dir = text(args, 'dir') ?? loadConfig({ ignoreStack: true }).config.stack.dir;
      // the embedded stack is a development tool (dev/), loaded only for this command
      const { stackCommand } = await import('../dev/stack/stack-command.js');
      return stackCommand(action, dir, (l) => process.stdout.write(`${l}\n`));
    }
    case 'send': {
      const type = args.positional[0];
      const command = type === '-' ? 'stdin' : commandFromFlags(type, args.flags); // usage errors before connecting
      const { config } = load(args);
      const print = (l: string) => process.stdout.write(`${l}\n`);
      return send(config, command === 'stdin' ? 'stdin' : [command], num(args, 'timeout', 30000), print);
    }
    case 'demo': {
      const dir = loadConfig({ ignoreStack: true }).config.stack.dir;
      const { runDemo } = await import('../dev/demo.js');
      const transfers = Number(text(args, 'transfers') ?? '0.1');
      if (!(transfers >= 0 && transfers <= 1)) throw new UsageError('demo: --transfers is a share between 0 and 1');
      return runDemo({ dir, accounts: num(args, 'accounts', 2000), commands: num(args, 'commands', 100000), transfers, rate: num(args, 'rate', 0), workers: num(args, 'workers', 1), keepStack: args.flags.has('keep-stack') }, (l) => process.stdout.write(`${l}\n`));
    }
    case 'rebuild-projections': {
      // handles SIGINT/SIGTERM itself: the first stops after the current page (resumable), the second exits
      const accounts = text(args, 'account')?.split(',').map((a) => a.trim()).filter(Boolean);
      if (accounts !== undefined && accounts.length === 0) throw new UsageError('rebuild-projections: --account names no account');
      for (const a of accounts ?? []) if (!UUID.test(a)) throw new UsageError(`rebuild-projections: --account "${a}" is not a UUID`);
      if (text(args, 'batch-size') !== undefined && num(args, 'batch-size', 0) < 1) throw new UsageError('rebuild-projections: --batch-size must be at least 1');
      const sinceArg = text(args, 'since');
      const since = sinceArg === undefined ? undefined : new Date(parseSince(sinceArg));
      const { config } = load(args);
      const rows = accounts || since
        ? `the rows of ${[accounts ? `${accounts.length} accounts` : '', since ? `every account with an event recorded since ${since.toISOString()}` : ''].filter(Boolean).join(' and ')} in`
        : 'every row of';
      await confirm(args, `rebuild-projections empties ${rows} account_projections and transaction_projections in ${redactedDatabase(config.db.url)} and rebuilds them from the event store; `
        + 'reads of those rows answer from partial read models until it completes (it resumes if interrupted)');
      const log = createLogger({ level: config.log.level });
      const bs = text(args, 'batch-size');
      return runRebuildCommand(config, log, { batchSize: bs === undefined ? undefined : Number(bs), scope: accounts || since ? { accounts, since } : undefined });
    }
    case 'dlq':
      return dlqCommand(args);
    case 'account': {
      const { config } = load(args);
      return runAccountCommand(config, args.positional[0], process.stdout, { limit: num(args, 'limit', 20) });
    }
    case 'help':
      process.stdout.write(`${args.positional[0] && Object.hasOwn(COMMANDS, args.positional[0]) ? `usage: banking-es ${COMMANDS[args.positional[0]].usage}` : HELP}\n`);
      return 0;
    default:
      throw new UsageError(`unknown command "${args.cmd}"; banking-es --help lists them`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      if (e instanceof ConfigError || e instanceof UsageError) {
        process.stderr.write(`banking-es: ${e.message}\n`);
        process.exitCode = (e as { exitCode?: number }).exitCode ?? 2; // a declined prompt is 1: nothing wrong with the call
        return;
      }
      // one line; the stack only when asked for (LOG_LEVEL=debug or trace)
      const err = coerceError(e);
      const verbose = /^(debug|trace)$/.test(process.env.LOG_LEVEL ?? '');
      process.stderr.write(`banking-es: ${verbose ? err.stack ?? err.message : err.message}\n`);
      process.exitCode = 1;
    },
  );
}
