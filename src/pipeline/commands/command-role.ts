/**
 * The command role (docs/architecture.md §1): consume bank.commands, shard by
 * account, decide in workers, then in the core's one transaction per batch
 * write events and rejections; outcomes go to bank.command-results once it
 * commits. The partitioned-pipeline core (../partitioned-pipeline.ts) does
 * the rest.
 *
 * A batch is decided on the states and outcomes the batch before it was
 * decided into. It is redone carefully (states and known outcomes read from
 * Postgres) when the commit meets a key someone holds, when it decided now
 * what was decided before, refused on a state another writer moved past,
 * decided on a Redis state Postgres never held, closed an account with
 * transfers in flight or left one no room for their refunds, or when it
 * replays offsets whose outcomes may not have been published before a
 * crash.
 */
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { DaemonContext } from '../../daemon';
import type { Message } from '../../kafka/consumer';
import { copyIn } from '../../db/sql/copy-in';
import { checkCommit, findKnownOutcomes, type RedisStates, type RefusedOnState } from '../../db/sql/find-known-outcomes';
import type { WriteLock } from '../write-lock';
import { isUuid } from '../../codec/command';
import { shardOf } from '../../codec/hash';
import { coerceError } from '../../errors';
import type { AccountState } from '../../domain/types';
import { upsertOffsets } from '../../db/sql/consumer-offsets';
import type { DeadMessage, Headers } from '../dead-letter';
import { Packer, forEachRecord } from '../pack';
import { CANARY_PARTITION, type Batch, type DeadLetter, type PipelineRole, type Preparation, type RoleSettings, type WriteResult } from '../role';
import { createWorkerPool, type WorkerPool } from '../worker-pool';
import { AccountStates, StateCache } from './account-states';
import { EVENT_COLUMNS, REJECTION_COLUMNS, TRANSFER_COLUMNS } from '../../codec/rows';
import { transfersPending } from '../../db/sql/transfers';
import { decideShard, type KnownOutcome, type ShardResult, type ShardTask } from './decide-shard';
import { OutcomePublisher } from './outcome-publisher';
import { ResentCommands, scanCommandId, type Pairs } from './resent-commands';

/** A batch of consumed commands, in consume order. */
export class CommandBatch implements Batch {
  readonly next = new Map<number, number>();
  /** partition -> the batch's first offset there */
  readonly from = new Map<number, number>();
  constructor(readonly msgs: Message[]) {
    for (const m of msgs) {
      if ((this.next.get(m.partition) ?? -1) < m.offset + 1) this.next.set(m.partition, m.offset + 1);
      if ((this.from.get(m.partition) ?? Infinity) > m.offset) this.from.set(m.partition, m.offset);
    }
  }
  get count(): number { return this.msgs.length; }
}

/** What Postgres already holds for a batch redone carefully: accumulated over its redos. */
type Learned = Map<string, KnownOutcome>;

export interface DecidedBatch {
  seq: number;
  batch: CommandBatch;
  /** per shard: the messages it decided, in order (a dead letter's index is into these) */
  slices: Message[][];
  results: ShardResult[];
  careful: boolean;
  /** the batch replays offsets already committed */
  replay: boolean;
  accountIds: string[];
  changed: AccountState[];
  pairs: Pairs;
  accepted: { accounts: string[]; commands: string[] };
  rejected: { accounts: string[]; commands: string[] };
  /** the states the batch was decided on (absent: the account did not exist) */
  states: ReadonlyMap<string, AccountState>;
  /** the accounts whose state came from Redis: the commit checks Postgres holds them */
  fromRedis: ReadonlySet<string>;
  workerSeconds: number;
}

/**
 * What differs between the roles that decide commands on accounts: the
 * command role (bank.commands) and the transfer role (bank.transfers, whose
 * steps are commands of banking-es's own; ../transfers/transfer-role.ts).
 */
export interface DecidingKind {
  settings: RoleSettings;
  /** in dist/workers/, running `decide` on its task */
  workerFile: string;
  decide: (task: ShardTask) => ShardResult;
  /** ShardTask.transfers: Transfer is a command */
  transfers: boolean;
  canary(topic: string): CommandBatch;
  /** Writes the kind's own rows after events and rejections, in the same transaction. */
  write(client: PoolClient, p: DecidedBatch): Promise<WriteResult>;
  /** The batch committed: the kind's own metrics. */
  committed?(p: DecidedBatch): void;
}

/** The command role's kind: bank.commands, decideShard, its `transfers` rows and the close check. */
export function commandKind(ctx: DaemonContext): DecidingKind {
  const { config } = ctx;
  const p = config.pipeline;
  return {
    settings: {
      name: 'commands', noun: 'command', topic: config.kafka.topics.commands, group: config.kafka.groupId, dlqTopic: config.kafka.topics.commandsDlq,
      batchTimeMs: p.batchTimeMs, batchSize: p.batchSize, maxInFlight: p.maxInFlight,
      // each careful redo learns what Postgres holds; a streak past this means another writer keeps racing us
      maxRedos: 4,
    },
    workerFile: 'command-worker.js',
    decide: decideShard,
    transfers: config.transfers.enabled,
    canary: commandCanary,
    async write(client, d) {
      if (d.results.some((r) => r.transferCount)) await copyIn(client, 'transfers', TRANSFER_COLUMNS, d.results.map((r) => r.transferRows));
      // a close was decided on this batch's debits only: it stands if the source has none in flight now (a count only a credit or refund lowers)
      const closed = d.results.flatMap((r) => r.closedAccounts);
      if (closed.length && (await transfersPending(client, closed)).size > 0) return 'redo';
      return 'written';
    },
  };
}

/** An OpenAccount and a Deposit to an unknown account: an event row and a rejection row. */
function commandCanary(topic: string): CommandBatch {
  const accountId = randomUUID();
  const commands = [
    { commandId: randomUUID(), type: 'OpenAccount', accountId, ownerName: 'banking-es canary', currency: 'USD', initialBalance: '0' },
    { commandId: randomUUID(), type: 'Deposit', accountId: randomUUID(), amount: '1.00' },
  ];
  return new CommandBatch(commands.map((c, i): Message => ({
    topic, partition: CANARY_PARTITION, offset: i, key: Buffer.from(c.accountId), value: Buffer.from(JSON.stringify(c)), size: 0, timestamp: 0,
  })));
}

/**
 * The account a message is for, as the main thread sees it before any parse:
 * its key, else the value's accountId, lower-cased, and only when it is a
 * UUID. '' otherwise: such a message is sharded anywhere, and the worker
 * rejects or dead-letters it. Only a validated id reaches SQL, Redis or the
 * Bloom filter (docs/architecture.md §4).
 */
function accountOf(m: Message): string {
  let raw: string | undefined;
  if (m.key !== null && m.key !== undefined && m.key.length > 0) raw = m.key.toString('latin1');
  else {
    try {
      const v = JSON.parse(m.value?.toString() ?? 'null') as { accountId?: unknown };
      if (typeof v?.accountId === 'string') raw = v.accountId;
    } catch { /* unreadable: any shard will dead-letter it */ }
  }
  return raw !== undefined && isUuid(raw) ? raw.toLowerCase() : '';
}

/**
 * The accounts the batch refused a command on because of their state and
 * wrote no event to, with the version each refusal saw. If another writer
 * (the transfer role, or the command role for a credit's destination) has
 * moved one past it since, the refusal is stale and the batch is redone
 * (checkCommit). An account the batch wrote to is covered by the
 * events key instead. The accounts are validated UUIDs.
 */
function refusalsToRecheck(p: DecidedBatch): RefusedOnState {
  const accounts: string[] = [], versions: number[] = [];
  const wrote = new Set(p.accepted.accounts);
  for (const a of new Set(p.results.flatMap((r) => r.refusedOnState))) {
    if (wrote.has(a)) continue;
    accounts.push(a);
    versions.push(p.states.get(a)?.version ?? 0);
  }
  return { accounts, versions };
}

/**
 * The states from Redis the batch decided on, whatever it decided with them
 * (an event, a refusal, a dead letter): Postgres must hold each (checkCommit).
 * The in-process states need no check (AccountStates.load), nor does a
 * careful batch (it read Postgres). A later batch prepared on this one's
 * states is prepared again if this one is redone (CommitChain). The accounts
 * are validated UUIDs.
 */
function redisStatesDecidedOn(p: DecidedBatch): RedisStates {
  const accounts: string[] = [], versions: number[] = [], balances: string[] = [], currencies: string[] = [], closed: boolean[] = [];
  if (p.careful) return { accounts, versions, balances, currencies, closed };
  for (const id of p.fromRedis) {
    const s = p.states.get(id);
    if (s === undefined) continue;
    accounts.push(id);
    versions.push(s.version);
    balances.push(String(s.balance));
    currencies.push(s.currency);
    closed.push(s.status === 'closed');
  }
  return { accounts, versions, balances, currencies, closed };
}

/** Dead letters that depend on an account's state (a refund its balance cannot take), not on the message. */
const STATE_DEAD_LETTERS = new Set(['REFUND_IMPOSSIBLE']);

const deadMessage = (m: Message): DeadMessage => ({ key: m.key ?? null, value: m.value ?? null, headers: (m.headers as Headers | undefined) ?? [], partition: m.partition, offset: m.offset });

export class CommandRole implements PipelineRole<Message, CommandBatch, DecidedBatch, Learned> {
  readonly settings: RoleSettings;
  readonly workers: WorkerPool<ShardTask, ShardResult>;
  readonly writeLock: WriteLock | undefined;
  private readonly states: AccountStates;
  private readonly resent: ResentCommands;
  private readonly publisher: OutcomePublisher;
  private unknownSaidAt = -Infinity;

  constructor(private readonly ctx: DaemonContext, private readonly kind: DecidingKind = commandKind(ctx)) {
    const { config, log, metrics, redis, pool } = ctx;
    const p = config.pipeline;
    this.settings = kind.settings;
    // the command and transfer pipelines both append to accounts
    this.writeLock = ctx.accountWrites;
    this.workers = createWorkerPool(p.workers, kind.workerFile, kind.decide);
    // the committed states are the process's: what the other account writer committed is decided on here
    this.states = new AccountStates(ctx.accountStates ?? new StateCache(p.stateCacheSize, metrics), log, redis, config.redis.stateTtlMs, metrics);
    this.resent = new ResentCommands(pool, redis, config.redis.dedupWindowMs);
    this.publisher = new OutcomePublisher(ctx.producer, config.kafka.topics.results, metrics, log, this.settings.name, config.kafka.messageTimeoutMs);
  }

  itemsOf(msgs: Message[]): Message[] {
    return msgs;
  }

  batchOf(msgs: Message[]): CommandBatch {
    return new CommandBatch(msgs);
  }

  halves(b: CommandBatch): [CommandBatch, CommandBatch] {
    const mid = b.msgs.length >> 1;
    return [new CommandBatch(b.msgs.slice(0, mid)), new CommandBatch(b.msgs.slice(mid))];
  }

  first(b: CommandBatch): DeadMessage {
    return deadMessage(b.msgs[0]);
  }

  canary(): CommandBatch {
    return this.kind.canary(this.settings.topic);
  }

  /** Outcomes between the published and the committed offset may never have reached Kafka: start there and publish them again. */
  startFrom(s: { nextOffset: number; publishedOffset: number | null }): number {
    return s.publishedOffset !== null && s.publishedOffset < s.nextOffset ? s.publishedOffset : s.nextOffset;
  }

  assigned(partitions: number[]): void {
    this.publisher.assigned(partitions);
  }

  /** Packs each shard's slice, loads its accounts' states and the outcomes re-sent commands already have, and decides it in a worker. */
  async prepare(batch: CommandBatch, seq: number, how: Preparation<Learned>): Promise<DecidedBatch> {
    const { config, pool } = this.ctx;
    const shards = Math.max(1, config.pipeline.shards);
    const packers = Array.from({ length: shards }, () => new Packer(64 * 1024));
    const slices: Message[][] = Array.from({ length: shards }, () => []);
    const accountsByShard: Array<Set<string>> = Array.from({ length: shards }, () => new Set());
    const pairs = this.resent.pairs();
    let replay = false;
    for (const m of batch.msgs) {
      const acct = accountOf(m);
      const cmdId = acct ? scanCommandId(m.value) : null; // both validated UUIDs, or not used
      if (cmdId) this.resent.add(pairs, acct, cmdId, how.careful);
      const s = acct ? shardOf(acct, shards) : 0;
      packers[s].message(m.partition, m.offset, m.key ?? null, m.value);
      slices[s].push(m);
      if (acct) accountsByShard[s].add(acct);
      if (m.offset < (how.committedNext.get(m.partition) ?? -1)) replay = true;
    }
    const accountIds = accountsByShard.flatMap((s) => [...s]);
    // redone carefully, CloseAccount and a deposit or credit decide on the transfers in flight as Postgres has
    // them: the careful states carry them, read with the states (in one snapshot)
    const pendingCounted = how.careful;
    const [loaded, early] = await Promise.all([
      this.states.load(pool, accountIds, seq, how.careful),
      how.careful ? Promise.resolve(null) : this.resent.knownBefore(seq, pairs),
    ]);
    const states = loaded.states;
    const known = how.learned ?? early;
    const nowMs = Date.now();
    const t0 = performance.now();
    const results = await Promise.all(packers.map((p, i) => {
      const st: AccountState[] = [];
      for (const id of accountsByShard[i]) { const v = states.get(id); if (v) st.push(v); }
      return this.workers.run({
        msgs: p.finish(), states: st, known: known && known.size ? known : null,
        replayBelow: replay ? new Map(how.committedNext) : null, maxMessageBytes: config.limits.maxMessageBytes, nowMs,
        transfers: this.kind.transfers, pendingCounted, hashSeed: this.resent.seed,
      });
    }));
    const workerSeconds = (performance.now() - t0) / 1000;
    const changed = results.flatMap((r) => r.states);
    this.states.prepared(seq, changed);
    this.resent.decided(seq, results.map((r) => r.decided));
    return {
      seq, batch, slices, results, careful: how.careful, replay, accountIds, changed, pairs, workerSeconds, states, fromRedis: loaded.fromRedis,
      accepted: { accounts: results.flatMap((r) => r.acceptedAccounts), commands: results.flatMap((r) => r.acceptedCommands) },
      rejected: { accounts: results.flatMap((r) => r.rejectedAccounts), commands: results.flatMap((r) => r.rejectedCommands) },
    };
  }

  workerSeconds(p: DecidedBatch): number {
    return p.workerSeconds;
  }

  deadLetters(p: DecidedBatch): DeadLetter[] {
    return p.results.flatMap((r, i) => r.dlq.map((d) => ({ message: deadMessage(p.slices[i][d.index]), code: d.code, reason: d.message })));
  }

  /**
   * Replayed offsets: their outcomes are published again as Postgres has them, so the batch is decided
   * from there. So is a batch with a dead letter decided on a state: letters are sent before the commit's
   * check, so one is sent only on Postgres's state, never on a cached one that may be stale or forged.
   */
  mustRedo(p: DecidedBatch): boolean {
    return !p.careful && (p.replay || p.results.some((r) => r.dlq.some((d) => STATE_DEAD_LETTERS.has(d.code))));
  }

  async write(client: PoolClient, p: DecidedBatch): Promise<WriteResult> {
    const { results } = p;
    if (results.some((r) => r.eventCount)) await copyIn(client, 'events', EVENT_COLUMNS, results.map((r) => r.events));
    if (results.some((r) => r.rejectionCount)) await copyIn(client, 'command_rejections', REJECTION_COLUMNS, results.map((r) => r.rejections));
    // decided now, decided before: accepted now but rejected earlier, or the reverse (the unique keys catch the rest);
    // and, as two roles write to accounts (the transfer role runs wherever it is configured, whatever
    // transfers.enabled says here), a refusal decided on a state another writer moved on from
    // and a state from Redis that Postgres never held (newer, or another ledger's): deciding on it would leave a gap
    // and an account raised past what its transfers in flight leave room for (decided without them)
    const raised = { accounts: results.flatMap((r) => r.raisedAccounts), peaks: results.flatMap((r) => r.raisedPeaks) };
    const check = await checkCommit(client, p.accepted, p.rejected, refusalsToRecheck(p), redisStatesDecidedOn(p), raised);
    if (check.unknownStates.length) this.distrusted(check.unknownStates);
    if (check.decidedOtherwise) this.ctx.metrics.occConflicts.inc();
    if (check.overLimit) this.ctx.metrics.refundRoomRedos.inc({ pipeline: this.settings.name });
    if (check.decidedOtherwise || check.unknownStates.length || check.overLimit) return 'redo';
    return this.kind.write(client, p);
  }

  /** Cached states Postgres does not hold: dropped from both caches, counted, and said at most once a minute. */
  private distrusted(accounts: string[]): void {
    const { metrics, log } = this.ctx;
    metrics.statesUnknown.inc(accounts.length);
    this.states.distrust(accounts);
    const now = Date.now();
    if (now - this.unknownSaidAt < 60_000) return;
    this.unknownSaidAt = now;
    log.warn({ pipeline: this.settings.name, accounts: accounts.length, example: accounts[0] },
      'a cached account state is not one Postgres holds (a Redis shared with another ledger, or one that outlived a restore of Postgres): deciding again from Postgres');
  }

  /** What Postgres holds for every command of the batch; the next preparation decides on it. */
  async learn(p: DecidedBatch, before: Learned | undefined): Promise<Learned> {
    const known = await findKnownOutcomes(this.ctx.pool,
      [...p.accepted.accounts, ...p.rejected.accounts, ...p.pairs.accounts],
      [...p.accepted.commands, ...p.rejected.commands, ...p.pairs.commands]);
    return before ? new Map([...before, ...known]) : known;
  }

  committed(p: DecidedBatch, seq: number): void {
    const { metrics } = this.ctx;
    this.resent.committed(seq);
    this.states.committed(seq, p.changed);
    let events = 0;
    for (const r of p.results) {
      events += r.eventCount;
      for (const c of r.counts) metrics.commands.inc({ type: c.type, status: c.status }, c.count);
      for (const [reason, v] of Object.entries(r.rejectReasons)) metrics.rejections.inc({ reason }, v);
      if (r.republished) metrics.outcomesRepublished.inc(r.republished);
    }
    metrics.eventsAppended.inc(events);
    this.kind.committed?.(p);
    const outcomes = this.publisher.beginBatch(p.batch.next, p.batch.from);
    for (const r of p.results) forEachRecord(r.outcomes, (key, value) => outcomes.add(key, value));
    // the transfer steps to go on with: acknowledged before the published offset passes the batch, like the outcomes
    const steps = this.ctx.config.kafka.topics.transfers;
    for (const r of p.results) if (r.steps.byteLength) forEachRecord(r.steps, (key, value) => outcomes.add(key, value, steps));
    outcomes.end();
  }

  committedPast(_seq: number, next: ReadonlyMap<number, number>): void {
    // nothing to publish for a dead-lettered message, but the published offsets move past it
    // `next` is one message's (the dead letter's): it starts at next - 1
    this.publisher.beginBatch(new Map(next), new Map([...next].map(([partition, n]) => [partition, n - 1]))).end();
  }

  abandon(seq: number, discarded?: DecidedBatch): void {
    this.states.abandon(seq);
    this.resent.abandon(seq);
    // a failed attempt may have been decided on stale cached states: read them again
    if (discarded) this.states.forget(discarded.accountIds);
  }

  dueRewinds(): Array<{ partition: number; offset: number }> {
    return this.publisher.dueRewinds();
  }

  beginRewind(partition: number, logStart: number): number | undefined {
    return this.publisher.beginRewind(partition, logStart);
  }

  rewindFailed(partition: number): void {
    this.publisher.rewindFailed(partition);
  }

  publishedOffset(partition: number): number | null {
    return this.publisher.publishedOffsets().get(partition) ?? null;
  }

  /**
   * Publishes what is still unacknowledged and records how far outcomes reached Kafka. A quarter of
   * the shutdown budget: with Kafka unreachable nothing more will be acknowledged, and the
   * unacknowledged tail is published again after a restart anyway (published_offset).
   */
  async drained(committed: ReadonlyMap<number, number>): Promise<void> {
    const { config, pool, log } = this.ctx;
    await this.publisher.flushed(config.shutdown.timeoutMs / 4);
    const published = this.publisher.publishedOffsets();
    if (published.size === 0) return;
    const rows = [...published].map(([partition, p]) => ({ partition, next: committed.get(partition) ?? p, published: p }));
    await upsertOffsets(pool, this.settings.group, this.settings.topic, rows).catch((e: unknown) => log.warn({ err: coerceError(e) }, 'could not record published offsets at shutdown'));
  }
}
