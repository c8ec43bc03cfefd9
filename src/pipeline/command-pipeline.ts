/**
 * The command pipeline (docs/architecture.md §1): consume bank.commands, batch, shard by
 * account, decide in workers, then ONE Postgres transaction per batch (events,
 * rejections, consumer offsets), then outcomes to bank.command-results.
 *
 * Batch N+1 is decided while batch N commits, on the states and outcomes N
 * was decided into; it commits only if N committed exactly that.
 *
 * Re-sent commands are recognised before deciding: the main thread scans each
 * message's commandId, and those an in-process Bloom filter (or Redis's shared
 * window) has seen are looked up in Postgres, so their original outcomes go
 * into the first decision (an original still committing in the previous
 * batch is found among that batch's decided outcomes). A batch is redone
 * "carefully" (state and known outcomes read from Postgres) only when the
 * commit still meets a key someone holds, or when it replays offsets whose
 * outcomes may not have been published before a crash.
 */
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { DaemonContext } from '../daemon';
import { GroupConsumer, type Message, type StartOffset, type Tp } from '../kafka/consumer';
import { readOffsets, upsertOffsets } from '../db/sql/consumer-offsets';
import { copyIn } from '../db/sql/copy-in';
import { anyAlreadyIn, findKnownOutcomes } from '../db/sql/find-known-outcomes';
import { isUuid } from '../codec/command';
import { classifyError, coerceError, errorCodeOf, isRetryablePgError, isUniqueViolation } from '../errors';
import { RetryBudget } from '../retry-budget';
import { redisIsReady } from '../redis';
import { AccountStates } from './account-states';
import { BatchSink } from './batch-sink';
import { CommitChain } from './commit-chain';
import type { KnownOutcome, ShardResult } from './decide-shard';
import type { AccountState } from '../domain/types';
import { Packer, forEachRecord } from './pack';
import { createShardPool, type ShardPool } from './shard-pool';
import { OutcomePublisher } from './outcome-publisher';
import { DeadLettered, sendDeadLetter, type Headers } from './dead-letter';
import { RecentCommands, scanCommandId } from './recent-commands';

const EVENT_COLUMNS = 'account_id, version, event_id, event_type, payload, command_id, recorded_at, source_partition, source_offset';
const REJECTION_COLUMNS = 'account_id, command_id, command_type, reason, detail, rejected_at, source_partition, source_offset';

class RedoCarefully extends Error {}

/** How a batch (or part of one) ended: committed as first decided, committed after a redo or retry, or not committed at all. */
type PartResult = 'clean' | 'committed' | 'abandoned';

/** The canary's messages claim a partition no topic has (partitions are int32 and counted from 0); its transaction is rolled back. */
const CANARY_PARTITION = 0x7fffffff;
/** How long a canary that committed vouches for the schema. */
const CANARY_VALID_MS = 5000;

interface Prepared {
  seq: number;
  msgs: Message[];
  slices: Message[][];
  results: ShardResult[];
  next: Map<number, number>;
  replay: boolean;
  fresh: boolean;
  allIds: string[];
  changed: Record<string, AccountState>;
  accA: string[]; accC: string[]; rejA: string[]; rejC: string[];
  /** every (account, command) pair found by the scan, known or not */
  pairAccounts: string[]; pairCommands: string[];
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The outcome a batch still committing decided for `key` ("accountId/commandId"), from its ShardResult.decided lines. */
function pendingOutcome(decided: string[], key: string): KnownOutcome | undefined {
  const needle = `\n${key}\t`;
  for (const d of decided) {
    const at = d.indexOf(needle);
    if (at >= 0) return JSON.parse(d.slice(at + needle.length, d.indexOf('\n', at + needle.length))) as KnownOutcome;
  }
  return undefined;
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

/** One message's place in its topic, for logs. */
const placeOf = (m: Message): string => `${m.partition}:${m.offset}`;

export class CommandPipeline {
  private readonly consumer: GroupConsumer;
  private readonly sink: BatchSink<Message>;
  private readonly pool: ShardPool;
  private readonly states: AccountStates;
  private readonly publisher: OutcomePublisher;
  private readonly recent = new RecentCommands();
  private readonly topic: string;
  private readonly group: string;
  /** partition -> first offset not yet committed in Postgres (as stored when assigned, then as we commit). */
  private readonly committedNext = new Map<number, number>();
  /** next offsets stored in Postgres, as read by the latest resolveStart */
  private storedNext = new Map<number, number>();
  private inFlight = 0;
  private stopping = false;
  private readonly utilTimer: NodeJS.Timeout;
  private readonly budget: RetryBudget;
  /** resolves when stop() begins: a role halted by a fatal error waits for it instead of retrying */
  private stopped!: () => void;
  private readonly stopRequested = new Promise<void>((r) => { this.stopped = r; });
  /** set once a batch was abandoned (a fatal error, or giving up at shutdown): nothing after it may commit */
  private halted = false;
  private canaryPassedAt = 0;
  /** Messages dead-lettered by this process and not yet committed past: a redo or retry does not send them again. */
  private readonly deadLettered = new DeadLettered();

  constructor(private readonly ctx: DaemonContext) {
    const { config, log, metrics, redis } = ctx;
    this.topic = config.kafka.topics.commands;
    this.group = config.kafka.groupId;
    this.pool = createShardPool(config.pipeline.workers);
    this.states = new AccountStates(config.pipeline.stateCacheSize, log, redis, config.redis.stateTtlMs);
    this.publisher = new OutcomePublisher(ctx.producer, config.kafka.topics.results, metrics, log);
    this.budget = new RetryBudget('commands', ctx, config.pipeline.maxRetries);
    this.sink = new BatchSink<Message>(config.pipeline.batchTimeMs, config.pipeline.batchSize, (b) => this.handleBatch(b));
    this.consumer = new GroupConsumer(config, log, metrics, { groupId: this.group, topic: this.topic, name: 'commands' }, {
      resolveStart: (tps) => this.resolveStart(tps),
      onAssigned: (starts) => this.onAssigned(starts),
      onRevoke: () => this.drain(30_000),
      onMessages: (msgs) => this.onMessages(msgs),
    });
    this.utilTimer = setInterval(() => {
      metrics.workerUtilization.set({ pipeline: 'commands' }, this.pool.utilization());
      metrics.workerQueue.set({ pipeline: 'commands' }, this.pool.queueSize());
      this.updateLag();
    }, 1000);
    this.utilTimer.unref();
  }

  async start(): Promise<void> {
    await this.consumer.serve(this.ctx.health, 'commands-consumer');
  }

  /** Stop consuming, let every consumed message commit, publish outcomes, record what was published. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped();
    clearInterval(this.utilTimer);
    await this.consumer.stop();
    await this.drain(this.ctx.config.shutdown.timeoutMs);
    this.sink.close();
    // a quarter of the budget: with Kafka unreachable nothing more will be acknowledged, and the
    // unacknowledged tail is re-published after restart anyway (published_offset)
    await this.publisher.flushed(this.ctx.config.shutdown.timeoutMs / 4);
    await this.recordPublished().catch((e) => this.ctx.log.warn({ err: coerceError(e) }, 'could not record published offsets at shutdown'));
    await this.consumer.close();
    await this.pool.close();
    this.ctx.health.remove('commands-pipeline');
  }

  private async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await this.sink.idle(this.ctx.config.pipeline.batchTimeMs);
  }

  private async resolveStart(tps: Tp[]): Promise<StartOffset[]> {
    const stored = await readOffsets(this.ctx.pool, this.group, this.topic, tps.map((t) => t.partition));
    this.storedNext = new Map([...stored].map(([p, s]) => [p, s.nextOffset]));
    return tps.map((tp) => {
      const s = stored.get(tp.partition);
      if (!s) return { ...tp, offset: this.ctx.config.kafka.autoOffsetReset === 'earliest' ? 'beginning' : 'end', stored: false };
      // outcomes between published and next may never have reached Kafka: start there and re-publish them
      const from = s.publishedOffset !== null && s.publishedOffset < s.nextOffset ? s.publishedOffset : s.nextOffset;
      return { ...tp, offset: from, stored: true };
    });
  }

  private onAssigned(starts: StartOffset[]): void {
    // resolveStart read the stored next offsets just before: no second query (whose late answer
    // could also have moved committedNext back after a batch committed)
    this.committedNext.clear();
    this.publisher.assigned(starts.map((s) => s.partition));
    for (const s of starts) {
      const next = this.storedNext.get(s.partition);
      if (next !== undefined) this.committedNext.set(s.partition, next);
    }
    this.deadLettered.keepAbove(this.committedNext, starts.map((s) => s.partition));
  }

  private onMessages(msgs: Message[]): void {
    this.inFlight += msgs.length;
    this.ctx.metrics.inFlight.set({ pipeline: 'commands' }, this.inFlight);
    if (this.inFlight >= this.ctx.config.pipeline.maxInFlight) {
      this.consumer.setPaused(true);
      this.ctx.metrics.paused.set({ pipeline: 'commands' }, 1);
    }
    for (const m of msgs) this.sink.push(m);
  }

  /**
   * Two stages: batch N+1 is decided (packed, decided in workers, on the
   * states and outcomes batch N was decided into, kept pending) while batch N
   * commits; batches commit strictly in order. N+1 is committed only if N
   * committed exactly what it was decided into; otherwise (a redo, a retry)
   * N+1 is decided again on what N committed. That fences what no key can: a
   * rejection decided on a state that never became final.
   */
  private careful = new WeakMap<Message[], { known: Record<string, KnownOutcome> }>();
  /** seq -> what that batch decided (ShardResult.decided per shard), until it commits */
  private readonly pendingDecided = new Map<number, string[]>();
  private readonly chain = new CommitChain<Prepared>((seq) => this.abandon(seq));

  private async handleBatch(msgs: Message[]): Promise<void> {
    const started = process.hrtime.bigint();
    await this.chain.next((seq) => this.prepare(msgs, seq), (seq, first) => this.commitStage(msgs, seq, first, started));
  }

  /** Batch `seq` did not commit as decided: forget the pending states and outcomes of it and every later batch. */
  private abandon(seq: number): void {
    this.states.abandon(seq);
    for (const k of this.pendingDecided.keys()) if (k >= seq) this.pendingDecided.delete(k);
  }

  /** Commits one decided batch, redoing, retrying and isolating poison as needed; resolves true when it committed as first decided. Never rejects. */
  private async commitStage(msgs: Message[], seq: number, first: Prepared | undefined, started: bigint): Promise<boolean> {
    const { metrics } = this.ctx;
    const result = await this.commitPart(msgs, seq, first);
    this.inFlight -= msgs.length;
    metrics.inFlight.set({ pipeline: 'commands' }, this.inFlight);
    metrics.batchSize.observe({ sink: 'commands' }, msgs.length);
    metrics.flushDuration.observe({ sink: 'commands' }, Number(process.hrtime.bigint() - started) / 1e9);
    if (this.inFlight <= this.ctx.config.pipeline.maxInFlight / 2 && !this.halted) {
      this.consumer.setPaused(false);
      metrics.paused.set({ pipeline: 'commands' }, 0);
    }
    return result === 'clean';
  }

  /**
   * Commits `msgs` (a batch, or part of one being narrowed down), acting on
   * each failure by its class: a conflict is redone carefully, a transient or
   * unknown fault is retried with backoff (the role turns stalled past
   * pipeline.maxRetries), poison is isolated, a fatal error halts the role.
   * Once anything was abandoned (a fatal error, or giving up at shutdown)
   * nothing after it commits: a later commit would move the offsets past it.
   */
  private async commitPart(msgs: Message[], seq: number, first?: Prepared): Promise<PartResult> {
    let prepared = first;
    let clean = first !== undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.halted) return 'abandoned';
      try {
        prepared ??= await this.prepare(msgs, seq);
        await this.commit(prepared);
        this.budget.succeeded();
        return clean ? 'clean' : 'committed';
      } catch (e) {
        clean = false;
        this.abandon(seq);
        if (prepared) this.states.forget(prepared.allIds);
        prepared = undefined;
        if (e instanceof RedoCarefully) continue;
        let errorClass = classifyError(e);
        if (this.stopping && (attempt > 3 || errorClass === 'fatal')) return this.halt(e, 'giving up on a batch at shutdown; its offsets and every later batch\'s were not committed, so they are redone on restart');
        if (errorClass === 'poison') {
          if (msgs.length > 1) return this.isolate(msgs, seq, e);
          if (await this.canaryCommits(seq)) return this.deadLetterPoison(msgs[0], seq, e);
          // a known-good message fails too: the schema or the database is at fault, not this message
          errorClass = 'unknown';
        }
        const wait = this.budget.failed(e, errorClass, `a batch of ${msgs.length} commands`);
        if (errorClass === 'fatal') {
          this.consumer.setPaused(true);
          this.ctx.metrics.paused.set({ pipeline: 'commands' }, 1);
          await this.stopRequested;
          return this.halt(e, 'stopped by a fatal error; the batch and every later one are redone on restart');
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private halt(e: unknown, why: string): PartResult {
    if (!this.halted) this.ctx.log.error({ err: coerceError(e), errorClass: classifyError(e) }, why);
    this.halted = true;
    return 'abandoned';
  }

  /**
   * A part failed because of one message's content ("poison"): commit it in
   * two halves, in offset order (so per-account and per-partition order
   * hold), splitting again whichever half fails the same way, until the
   * culprit stands alone; it is dead-lettered and its offset committed past
   * (Kafka Connect's sinks "unwrap the batch" the same way). Every other
   * message commits.
   */
  private async isolate(msgs: Message[], seq: number, cause: unknown): Promise<PartResult> {
    this.ctx.log.warn({ err: coerceError(cause), messages: msgs.length, from: placeOf(msgs[0]) }, 'a batch failed on its content; splitting it to isolate the message');
    const mid = msgs.length >> 1;
    if ((await this.commitPart(msgs.slice(0, mid), seq)) === 'abandoned') return 'abandoned';
    return (await this.commitPart(msgs.slice(mid), seq)) === 'abandoned' ? 'abandoned' : 'committed';
  }

  /**
   * Before one message is dead-lettered for its content, a known-good batch
   * (an OpenAccount and a Deposit to an unknown account: an event row and a
   * rejection row) is decided and committed the same way, then rolled back.
   * If it fails too, the fault is the schema's or the database's (a column
   * type changed, a constraint added): dead-lettering would drain every
   * message to the DLQ one by one, so the pipeline retries and stalls instead.
   */
  private async canaryCommits(seq: number): Promise<boolean> {
    // many poison messages in a row: one canary in a few seconds is enough
    if (Date.now() - this.canaryPassedAt < CANARY_VALID_MS) return true;
    const accountId = randomUUID();
    const canary = [
      { commandId: randomUUID(), type: 'OpenAccount', accountId, ownerName: 'banking-es canary', currency: 'USD', initialBalance: '0' },
      { commandId: randomUUID(), type: 'Deposit', accountId: randomUUID(), amount: '1.00' },
    ].map((c, i): Message => ({ topic: this.topic, partition: CANARY_PARTITION, offset: i, key: Buffer.from(c.accountId), value: Buffer.from(JSON.stringify(c)), size: 0, timestamp: 0 }));
    try {
      await this.commit(await this.prepare(canary, seq), { dryRun: true });
      this.canaryPassedAt = Date.now();
      return true;
    } catch (e) {
      this.ctx.log.warn({ err: coerceError(e) }, 'a known-good batch fails to commit too: not dead-lettering the message');
      return false;
    } finally {
      this.abandon(seq);
    }
  }

  /** Dead-letters one poison message (docs/architecture.md §2.3 headers, plus its error class and SQLSTATE), then commits its offset alone. */
  private async deadLetterPoison(m: Message, seq: number, cause: unknown): Promise<PartResult> {
    const err = coerceError(cause);
    const sqlstate = errorCodeOf(cause);
    // a replayed offset was dead-lettered before the offset past it committed
    const replayed = m.offset < (this.committedNext.get(m.partition) ?? -1);
    if (!replayed) this.ctx.log.error({ err, sqlstate, partition: m.partition, offset: m.offset }, 'poison message isolated: its content fails the commit; dead-lettered, the partition goes on');
    const next = new Map([[m.partition, m.offset + 1]]);
    const failure = await this.budget.untilDone('dead-lettering a poison message', async () => {
      if (!replayed) await this.sendDeadLetter(m, 'POISON', err.message, sqlstate);
      await upsertOffsets(this.ctx.pool, this.group, this.topic, [{ partition: m.partition, next: m.offset + 1, published: this.publisher.publishedOffsets().get(m.partition) ?? null }]);
    }, () => this.stopping || this.halted);
    if (failure !== undefined) return this.halt(failure, 'could not commit past a dead-lettered message; it and every later batch are redone on restart');
    this.afterCommit(seq, next, {});
    this.publisher.beginBatch(next).end();
    return 'committed';
  }

  /**
   * Sends one message to bank.commands.dlq with its original key, value and
   * headers plus why (docs/architecture.md §2.3), unless this process already did: a redo or
   * retry of its batch does not send it twice. Resolves once Kafka acknowledged it.
   */
  private async sendDeadLetter(m: Message, code: string, message: string, sqlstate?: string): Promise<void> {
    const { config, metrics } = this.ctx;
    if (this.deadLettered.has(m.partition, m.offset)) return;
    const dead = { key: m.key, value: m.value, headers: (m.headers as Headers | undefined) ?? [], partition: m.partition, offset: m.offset };
    await sendDeadLetter(this.ctx.producer, config.kafka.topics.commandsDlq, m.topic, dead, { code, message, sqlstate });
    this.deadLettered.add(m.partition, m.offset);
    metrics.dlq.inc({ topic: config.kafka.topics.commandsDlq, reason: code });
  }

  /** A batch (or a part of one) committed up to `next`: the caches, the offsets we know and the dead-letter bookkeeping follow. */
  private afterCommit(seq: number, next: Map<number, number>, changed: Record<string, AccountState>): void {
    this.states.committed(seq, changed);
    for (const [part, n] of next) this.committedNext.set(part, Math.max(n, this.committedNext.get(part) ?? 0));
    this.deadLettered.keepAbove(this.committedNext);
    this.consumer.commitToKafka([...next].map(([partition, offset]) => ({ topic: this.topic, partition, offset })));
  }

  private async prepare(msgs: Message[], seq: number): Promise<Prepared> {
    const { config, pool } = this.ctx;
    const shardCount = Math.max(1, config.pipeline.shards);
    const packers = Array.from({ length: shardCount }, () => new Packer(64 * 1024));
    const slices: Message[][] = Array.from({ length: shardCount }, () => []);
    const accountsByShard: Array<Set<string>> = Array.from({ length: shardCount }, () => new Set());
    const next = new Map<number, number>();
    let replay = false;
    const carefulState = this.careful.get(msgs);
    const fresh = carefulState !== undefined;
    const pairAccounts: string[] = [], pairCommands: string[] = [], bloomHits: number[] = [];
    for (const m of msgs) {
      const acct = accountOf(m);
      const cmdId = acct ? scanCommandId(m.value) : null; // both validated UUIDs, or not used
      if (cmdId) {
        const key = `${acct}/${cmdId}`;
        if (!fresh && this.recent.mightHave(key)) bloomHits.push(pairAccounts.length);
        this.recent.add(key);
        pairAccounts.push(acct);
        pairCommands.push(cmdId);
      }
      const s = acct ? hash(acct) % shardCount : 0;
      packers[s].message(m.partition, m.offset, m.key ?? null, m.value);
      slices[s].push(m);
      if (acct && isUuid(acct)) accountsByShard[s].add(acct);
      if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
      const committed = this.committedNext.get(m.partition);
      if (committed !== undefined && m.offset < committed) replay = true;
    }
    const allIds = accountsByShard.flatMap((s) => [...s]);
    const [states, early] = await Promise.all([
      this.states.load(pool, allIds, seq, fresh),
      fresh ? Promise.resolve(null) : this.knownBeforeDeciding(seq, pairAccounts, pairCommands, bloomHits),
    ]);
    const replayBelow = replay ? Object.fromEntries(this.committedNext) : null;
    const knownMap = carefulState?.known ?? early;
    const known = knownMap && Object.keys(knownMap).length ? JSON.stringify(knownMap) : null;
    const nowMs = Date.now();
    const results: ShardResult[] = await Promise.all(packers.map((p, i) => {
      const st: Record<string, unknown> = {};
      for (const id of accountsByShard[i]) { const v = states.get(id); if (v) st[id] = v; }
      return this.pool.run({ msgs: p.finish(), states: JSON.stringify(st), known, replayBelow, maxMessageBytes: config.limits.maxMessageBytes, nowMs });
    }));
    const changed: Record<string, AccountState> = Object.assign({}, ...results.map((r) => JSON.parse(r.states) as object));
    this.states.prepared(seq, changed);
    this.pendingDecided.set(seq, results.map((r) => r.decided));
    return {
      seq, msgs, slices, results, next, replay, fresh, allIds, changed, pairAccounts, pairCommands,
      accA: results.flatMap((r) => r.acceptedAccounts),
      accC: results.flatMap((r) => r.acceptedCommands),
      rejA: results.flatMap((r) => r.rejectedAccounts),
      rejC: results.flatMap((r) => r.rejectedCommands),
    };
  }

  /** Writes one decided batch in one transaction; `dryRun` rolls it back instead (the canary). */
  private async commit(p: Prepared, opts: { dryRun?: boolean } = {}): Promise<void> {
    const { metrics, pool } = this.ctx;
    const { results, slices, next } = p;
    // replayed offsets: their outcomes are re-published as Postgres has them
    if (!p.fresh && p.replay) return this.redoCarefully(p);

    // dead letters are acknowledged before their offsets commit, so none is lost
    await Promise.all(results.flatMap((r, i) => r.dlq.map((d) => this.sendDeadLetter(slices[i][d.index], d.code, d.message))));

    const client: PoolClient = await pool.connect();
    const eventCount = results.reduce((s, r) => s + r.eventCount, 0);
    try {
      await client.query('BEGIN');
      const rejectionCount = results.reduce((s, r) => s + r.rejectionCount, 0);
      if (eventCount) await copyIn(client, 'events', EVENT_COLUMNS, results.map((r) => r.events));
      if (rejectionCount) await copyIn(client, 'command_rejections', REJECTION_COLUMNS, results.map((r) => r.rejections));
      // decided now, decided before: accepted now but rejected earlier, or the reverse (the unique keys catch the rest)
      if ((await anyAlreadyIn(client, 'command_rejections', p.accA, p.accC)) || (await anyAlreadyIn(client, 'events', p.rejA, p.rejC))) {
        throw new RedoCarefully();
      }
      const published = this.publisher.publishedOffsets();
      await upsertOffsets(client, this.group, this.topic, [...next].map(([partition, n]) => ({ partition, next: n, published: published.get(partition) ?? null })));
      if (opts.dryRun) await client.query('ROLLBACK');
      else await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (e instanceof RedoCarefully || isUniqueViolation(e)) {
        metrics.occConflicts.inc();
        client.release();
        return this.redoCarefully(p);
      }
      client.release(isRetryablePgError(e) ? (e as Error) : undefined);
      throw e;
    }
    client.release();
    if (opts.dryRun) return;
    this.careful.delete(p.msgs);

    // committed: caches, metrics, outcomes, lag tooling
    this.pendingDecided.delete(p.seq);
    this.afterCommit(p.seq, next, p.changed);
    metrics.eventsAppended.inc(eventCount);
    for (const r of results) {
      for (const [k, v] of Object.entries(r.counts)) { const [type, status] = k.split('|'); metrics.commands.inc({ type, status }, v); }
      for (const [reason, v] of Object.entries(r.rejectReasons)) metrics.rejections.inc({ reason }, v);
      if (r.republished) metrics.outcomesRepublished.inc(r.republished);
    }
    const batchOutcomes = this.publisher.beginBatch(next);
    for (const r of results) forEachRecord(r.outcomes, (key, value) => batchOutcomes.add(key, value));
    batchOutcomes.end();
  }

  /** Reads what Postgres already holds for this batch's commands; the batch is then decided again from Postgres state. */
  private async redoCarefully(p: Prepared): Promise<never> {
    const client = await this.ctx.pool.connect();
    try {
      const known = await findKnownOutcomes(client, [...p.accA, ...p.rejA, ...p.pairAccounts], [...p.accC, ...p.rejC, ...p.pairCommands]);
      const prev = this.careful.get(p.msgs)?.known;
      this.careful.set(p.msgs, { known: prev ? { ...prev, ...known } : known });
    } finally {
      client.release();
    }
    throw new RedoCarefully();
  }

  /**
   * Outcomes Postgres already holds for the commands that look re-sent: the
   * in-process filter's hits plus, when Redis is up, the commands its shared
   * SET NX window has seen (so a re-send that reaches another instance after
   * a rebalance is recognised too). Only those pairs are probed.
   */
  private async knownBeforeDeciding(seq: number, accounts: string[], commands: string[], bloomHits: number[]): Promise<Record<string, KnownOutcome> | null> {
    // the outcomes of earlier batches still committing, taken before Postgres is asked: a batch that
    // commits meanwhile is then either in this snapshot or visible to the probe
    const pending = [...this.pendingDecided].filter(([k]) => k < seq).flatMap(([, d]) => d);
    const suspects = new Set(bloomHits);
    if (redisIsReady(this.ctx.redis) && commands.length) {
      try {
        const p = this.ctx.redis!.pipeline();
        for (let i = 0; i < commands.length; i++) p.set(`bes:cmd:${accounts[i]}:${commands[i]}`, '1', 'PX', this.ctx.config.redis.dedupWindowMs, 'NX');
        const res = await p.exec();
        (res ?? []).forEach(([err, v], i) => { if (!err && v === null) suspects.add(i); });
      } catch {
        // Redis is only a filter: the unique keys still decide at commit
      }
    }
    if (suspects.size === 0) return null;
    const idx = [...suspects];
    const known = await findKnownOutcomes(this.ctx.pool, idx.map((i) => accounts[i]), idx.map((i) => commands[i]));
    if (pending.length) {
      for (const i of idx) {
        const key = `${accounts[i]}/${commands[i]}`;
        if (known[key]) continue;
        const o = pendingOutcome(pending, key);
        if (o) known[key] = o;
      }
    }
    return known;
  }

  private async recordPublished(): Promise<void> {
    const published = this.publisher.publishedOffsets();
    if (published.size === 0) return;
    const client = await this.ctx.pool.connect();
    try {
      const rows = [...published].map(([partition, p]) => ({ partition, next: this.committedNext.get(partition) ?? p, published: p }));
      await upsertOffsets(client, this.group, this.topic, rows);
    } finally {
      client.release();
    }
  }

  private updateLag(): void {
    for (const tp of this.consumer.assignment) {
      const hi = this.consumer.cachedHighWatermark(tp.topic, tp.partition);
      const nx = this.committedNext.get(tp.partition);
      if (hi !== undefined && nx !== undefined) this.ctx.metrics.consumerLag.set({ group: this.group, topic: tp.topic, partition: String(tp.partition) }, Math.max(0, hi - nx));
    }
  }
}
