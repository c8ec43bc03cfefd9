/**
 * The built-in logical-replication relay (cdc.mode = relay, docs/architecture.md §1, §3):
 * streams committed inserts of `events` from a pgoutput slot and publishes
 * each row's payload (the §2.4 envelope, as stored) to the event topic, key =
 * account_id, in commit order. It confirms an LSN to Postgres only after
 * Kafka acknowledged every event up to it (CommitTracker), so a crash or a
 * dropped connection re-sends from the last confirmed transaction: at least
 * once, never a gap. The slot is exclusive, so a second relay instance keeps
 * failing to attach and retrying with backoff: a warm standby for free.
 *
 * Library: pg-logical-replication (MIT, ~400 lines, depends only on `pg`,
 * which we already use). It gives the replication connection (node-postgres
 * with `replication: 'database'`) and a pgoutput decoder; writing our own
 * decoder would be the same code. We use it narrowly, because two of its
 * defaults would confirm LSNs that Kafka has not acknowledged:
 *   - auto-acknowledge (every message acked on receipt): off;
 *   - the periodic status update, which reports the last LSN *received*:
 *     off (timeoutSeconds 0); we send our own standby status updates with
 *     the confirmable LSN, on a timer and whenever the server asks;
 *   - its flow control queues data but not keepalives, which would reorder
 *     them against data: off; we pause the socket ourselves instead.
 * It also re-subscribes from the last LSN it *received* when reused, so each
 * connection gets a fresh service that starts at 0/0 (= the slot's
 * confirmed_flush_lsn). Standby status updates are written by us on the
 * library's (private) node-postgres connection rather than through its
 * acknowledge(), which adds one to the LSN and cannot send "nothing
 * confirmed yet" (flush 0/0, which the server ignores): we report exactly
 * the confirmed commit end LSN, as pg_recvlogical does, and never an LSN
 * below the slot's position.
 *
 * States: starting → streaming ⇄ reconnecting (backoff) → stopping → stopped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import type { DaemonContext } from '../daemon';
import { BankingError, backoffMs, classifyError, coerceError } from '../errors';
import { RetryBudget } from '../retry-budget';
import { CommitTracker, type TxEntry } from './commit-tracker';
import { formatLsn, parseLsn } from './lsn';
import { RawPgoutputPlugin } from './raw-pgoutput';
import { ensurePublication, ensureSlot, readSlot, RELAY_PUBLICATION, RELAY_SLOT } from '../db/sql/replication-slot';
import { backfill, backfillPending, markBackfillPending } from './backfill';

export interface LogicalRelayOptions {
  /** Replication slot name (pgoutput); distinct from Debezium's. */
  slot: string;
  /** Publication of the events table (inserts only). */
  publication: string;
  /** How often slot lag is read into relaySlotLagBytes. */
  lagPollMs: number;
  /** Standby status cadence; must stay well under the server's wal_sender_timeout (60 s by default). */
  feedbackMs: number;
  /** Events sent but not acknowledged before the replication socket is paused. */
  maxInFlight: number;
  /** How long stop() waits for in-flight events to be acknowledged. */
  drainTimeoutMs: number;
  /** How long start() waits for the stream to begin before leaving it to the background retries. */
  startTimeoutMs: number;
}

export const LOGICAL_RELAY_DEFAULTS: LogicalRelayOptions = {
  slot: RELAY_SLOT,
  publication: RELAY_PUBLICATION,
  lagPollMs: 5000,
  feedbackMs: 1000,
  maxInFlight: 50_000,
  drainTimeoutMs: 10_000,
  startTimeoutMs: 15_000,
};

type EventRow = Record<string, string | null>;
type Connection = { stream?: { pause(): void; resume(): void }; sendCopyFromChunk(chunk: Buffer): void };

const PG_EPOCH_MS = 946_684_800_000n; // 2000-01-01T00:00:00Z

/** Standby status update ('r'): written, flushed and applied up to `lsn`; 0 reports nothing. */
export function standbyStatusUpdate(lsn: bigint, replyRequested = false, nowMs = Date.now()): Buffer {
  const b = Buffer.alloc(34);
  b.write('r', 0, 'latin1');
  b.writeBigUInt64BE(lsn, 1);
  b.writeBigUInt64BE(lsn, 9);
  b.writeBigUInt64BE(lsn, 17);
  b.writeBigInt64BE((BigInt(nowMs) - PG_EPOCH_MS) * 1000n, 25);
  b.writeUInt8(replyRequested ? 1 : 0, 33);
  return b;
}

/** One replication connection, from START_REPLICATION until it ends. */
class ReplicationSession {
  readonly tracker: CommitTracker;
  private readonly service: LogicalReplicationService;
  private readonly plugin: RawPgoutputPlugin;
  private draining = false;
  private closed = false;
  private paused = false;
  private ackScheduled = false;
  private streaming = false;
  private lastAck: bigint;
  private readonly startLsn: bigint;
  private failure: ((e: Error) => void) | undefined;
  private onIdle: (() => void) | undefined;

  constructor(private readonly relay: LogicalRelay, startLsn: bigint, private readonly opts: LogicalRelayOptions, url: string) {
    this.tracker = new CommitTracker(startLsn);
    this.startLsn = startLsn;
    this.lastAck = startLsn;
    this.plugin = new RawPgoutputPlugin({ protoVersion: 1, publicationNames: [opts.publication] });
    this.service = new LogicalReplicationService(
      { connectionString: url, application_name: 'banking-es-relay', replication: 'database' } as ConstructorParameters<typeof LogicalReplicationService>[0],
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service.on('error', (e) => this.fail(e));
    this.service.on('data', (lsn, msg) => {
      try {
        this.onMessage(lsn, msg as Pgoutput.Message);
      } catch (e) {
        this.fail(coerceError(e));
      }
    });
    this.service.on('heartbeat', (lsn, _ts, shouldRespond) => {
      if (this.draining) return;
      if (this.tracker.keepalive(parseLsn(lsn))) this.scheduleAck();
      if (shouldRespond) this.sendAck(true);
    });
  }

  /** Streams until the connection ends; rejects on a connection, protocol or delivery failure. */
  async run(onStreaming: () => void): Promise<void> {
    const failed = new Promise<never>((_, reject) => { this.failure = reject; });
    failed.catch(() => undefined);
    this.service.on('start', () => {
      this.streaming = true; // CopyBoth mode: status updates may flow from now on
      onStreaming();
    });
    const feedback = setInterval(() => this.sendAck(true), this.opts.feedbackMs);
    try {
      const subscribed = this.service.subscribe(this.plugin, this.opts.slot, '0/0');
      subscribed.catch(() => undefined);
      await Promise.race([subscribed, failed]);
    } finally {
      clearInterval(feedback);
      await this.close();
    }
  }

  /** Stops taking data, waits (bounded) until Kafka acknowledged what was sent, confirms it, disconnects. */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    if (this.tracker.inFlight > 0) {
      await Promise.race([new Promise<void>((r) => { this.onIdle = r; }), sleep(timeoutMs)]);
    }
    this.sendAck(true);
    await this.close();
  }

  private onMessage(lsn: string, msg: Pgoutput.Message): void {
    if (this.draining) return; // not confirmed, so Postgres sends it again next time
    switch (msg.tag) {
      case 'begin':
        this.tracker.begin();
        break;
      case 'insert': {
        if (msg.relation.name !== 'events') return; // the publication holds only events
        const row = msg.new as EventRow;
        if (row.account_id === null || row.payload === null) throw new Error('events row without account_id or payload');
        const tx = this.tracker.event();
        this.relay.publish(row.account_id, row.payload).then(() => this.delivered(tx), (e) => this.fail(coerceError(e)));
        if (!this.paused && this.tracker.inFlight >= this.opts.maxInFlight) this.setPaused(true);
        break;
      }
      case 'commit':
        // the Commit's end LSN is where the next transaction's decoding may start
        if (this.tracker.commit(parseLsn(msg.commitEndLsn ?? lsn))) this.scheduleAck();
        break;
      default:
        break; // relation, type, origin: metadata only
    }
  }

  private delivered(tx: TxEntry): void {
    if (this.closed) return;
    if (this.tracker.delivered(tx)) this.scheduleAck();
    if (this.paused && this.tracker.inFlight <= this.opts.maxInFlight / 2) this.setPaused(false);
    if (this.tracker.inFlight === 0 && this.onIdle) this.onIdle();
  }

  /** Coalesces the acks of many small transactions into one status update per event-loop turn. */
  private scheduleAck(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.sendAck(false);
    });
  }

  private sendAck(force: boolean): void {
    if (this.closed || !this.streaming) return;
    const lsn = this.tracker.confirmed;
    if (!force && lsn === this.lastAck) return;
    this.lastAck = lsn;
    const conn = this.connection();
    if (!conn) return;
    // before this session confirmed anything, report 0/0 (ignored) rather than the slot position we read, which may be stale
    conn.sendCopyFromChunk(standbyStatusUpdate(lsn > this.startLsn ? lsn : 0n));
    if (lsn > this.startLsn) this.relay.confirmed(lsn);
  }

  private setPaused(paused: boolean): void {
    const stream = this.connection()?.stream;
    if (!stream) return;
    this.paused = paused;
    if (paused) stream.pause();
    else stream.resume();
  }

  /** The library keeps its node-postgres connection private; its own flow control and acknowledge() use the same field. */
  private connection(): Connection | undefined {
    return (this.service as unknown as { _connection?: Connection | null })._connection ?? undefined;
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.failure?.(e);
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // client.end() can wait forever for an 'end' a dead socket already emitted
    await Promise.race([this.service.stop().catch(() => undefined), sleep(3000)]);
  }
}

/** object_in_use: the slot is streaming to another connection (the active relay of another instance). */
const SLOT_IN_USE = '55006';

export class LogicalRelay {
  private readonly opts: LogicalRelayOptions;
  private readonly abort = new AbortController();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private session: ReplicationSession | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private isStreaming = false;
  private lastConfirmed = 0n;
  private resumedFrom = '0/0';
  private publishedCount = 0;
  private sessionCount = 0;
  private signalStreaming: (() => void) | undefined;
  private budget: RetryBudget | undefined;

  constructor(private readonly ctx: DaemonContext, opts: Partial<LogicalRelayOptions> = {}) {
    this.opts = { ...LOGICAL_RELAY_DEFAULTS, ...opts };
  }

  /** Creates the publication and slot when missing, then streams in the background; resolves once streaming (or after startTimeoutMs). */
  async start(): Promise<void> {
    const { pool, log } = this.ctx;
    if (await ensurePublication(pool, this.opts.publication)) log.info({ publication: this.opts.publication }, 'publication created');
    const marker = `logical-backfill:${this.opts.slot}`;
    if (!(await readSlot(pool, this.opts.slot))) await markBackfillPending(pool, marker);
    if (await ensureSlot(pool, this.opts.slot)) log.info({ slot: this.opts.slot }, 'replication slot created');
    if (await backfillPending(pool, marker)) {
      const n = await backfill(this.ctx, marker);
      log.info({ slot: this.opts.slot, events: n }, 'published the events written before the slot existed');
    }
    this.budget = new RetryBudget('relay', this.ctx, this.ctx.config.pipeline.maxRetries);
    void this.pollLag();
    this.lagTimer = setInterval(() => void this.pollLag(), this.opts.lagPollMs);
    const streaming = new Promise<void>((r) => { this.signalStreaming = r; });
    this.loop = this.run();
    const started = await Promise.race([streaming.then(() => true), sleep(this.opts.startTimeoutMs, false, { signal: this.abort.signal }).catch(() => false)]);
    if (!started && !this.stopping) log.warn({ slot: this.opts.slot }, 'relay is not streaming yet; it keeps retrying in the background');
  }

  /** Drains in-flight events (bounded), confirms what Kafka acknowledged, closes the replication connection. */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      if (this.lagTimer) clearInterval(this.lagTimer);
      this.abort.abort();
      await this.session?.drain(this.opts.drainTimeoutMs);
    }
    await this.loop;
  }

  /**
   * confirmedLsn: the newest LSN this relay confirmed to Postgres; resumedFrom:
   * the slot position the latest connection started from (events after it may
   * be published again); sessions: connections that reached streaming.
   */
  get stats(): { streaming: boolean; confirmedLsn: string; resumedFrom: string; published: number; sessions: number; inFlight: number } {
    return {
      streaming: this.isStreaming,
      resumedFrom: this.resumedFrom,
      confirmedLsn: formatLsn(this.lastConfirmed),
      published: this.publishedCount,
      sessions: this.sessionCount,
      inFlight: this.session?.tracker.inFlight ?? 0,
    };
  }

  /** @internal sessions publish through here */
  async publish(accountId: string, payload: string): Promise<void> {
    await this.ctx.producer.send({ topic: this.ctx.config.kafka.topics.events, key: accountId, value: Buffer.from(payload, 'utf8') });
    this.publishedCount++;
    this.ctx.metrics.relayEventsPublished.inc({ mode: 'relay' });
  }

  /** @internal a session confirmed `lsn` to Postgres */
  confirmed(lsn: bigint): void {
    if (lsn > this.lastConfirmed) this.lastConfirmed = lsn;
  }

  private async run(): Promise<void> {
    const { log, metrics } = this.ctx;
    metrics.relayStreaming.set({ slot: this.opts.slot }, 0);
    for (let attempt = 0; !this.stopping; ) {
      try {
        const slot = await readSlot(this.ctx.pool, this.opts.slot);
        if (!slot || slot.confirmedFlushLsn === null) {
          // recreating it silently would skip every event written while it was gone
          throw new BankingError('INTERNAL', `replication slot ${this.opts.slot} is missing; events written since it was dropped were not relayed. Recreate it (restart the relay) and backfill with the poller or a re-publish.`);
        }
        const session = new ReplicationSession(this, parseLsn(slot.confirmedFlushLsn), this.opts, this.ctx.config.db.url);
        this.session = session;
        if (this.stopping) { await session.drain(0); break; }
        await session.run(() => {
          attempt = 0;
          this.budget?.succeeded();
          this.sessionCount++;
          this.isStreaming = true;
          metrics.relayStreaming.set({ slot: this.opts.slot }, 1);
          this.resumedFrom = slot.confirmedFlushLsn ?? '0/0';
          log.info({ slot: this.opts.slot, from: slot.confirmedFlushLsn }, 'relay streaming');
          this.signalStreaming?.();
        });
        if (!this.stopping) log.warn({ slot: this.opts.slot }, 'replication stream ended; reconnecting');
      } catch (e) {
        if (this.stopping) break;
        const err = coerceError(e);
        if ((e as { code?: unknown }).code === SLOT_IN_USE) {
          // another instance's relay streams from the slot: this one is its warm standby, not failing
          metrics.retries.inc({ component: 'relay', code: SLOT_IN_USE });
          log.warn({ err, attempt, slot: this.opts.slot }, 'replication stream failed; reconnecting with backoff');
        } else {
          const errorClass = classifyError(e);
          this.budget?.failed(e, errorClass, 'the replication stream');
          if (errorClass === 'fatal') break; // not ready until restarted: retrying cannot bring back what it needs
        }
      } finally {
        this.session = undefined;
        this.isStreaming = false;
        metrics.relayStreaming.set({ slot: this.opts.slot }, 0);
      }
      if (this.stopping) break;
      await sleep(Math.max(250, backoffMs(attempt++, 250, 10_000)), undefined, { signal: this.abort.signal }).catch(() => undefined);
    }
  }

  private async pollLag(): Promise<void> {
    try {
      const slot = await readSlot(this.ctx.pool, this.opts.slot);
      if (slot?.lagBytes !== null && slot?.lagBytes !== undefined) this.ctx.metrics.relaySlotLagBytes.set({ slot: this.opts.slot }, slot.lagBytes);
    } catch (e) {
      this.ctx.log.debug({ err: coerceError(e) }, 'could not read replication slot lag');
    }
  }
}
