/**
 * The end-to-end limit of the command job on this machine: the least any
 * implementation of the contract must do per command, and nothing more.
 * Consume a command, write one event row per command with binary COPY and
 * the consumer offsets in ONE durable transaction per batch, then produce an
 * outcome per command and learn that Kafka acknowledged it (a delivery
 * report each, counted per batch; the acknowledged offsets go into the
 * lane's next transaction as its published offsets). Outcomes are
 * at-least-once in the contract, and only a delivery report tells an
 * implementation that an outcome was not lost: librdkafka reports a message
 * it gave up on in no other way. No parsing beyond the ids, no state, no decision;
 * re-sent commands are recognised by an in-memory set only (no row); the
 * payload is one pre-encoded envelope of realistic size.
 *
 * To be a ceiling rather than one more implementation, it does not wait for
 * itself: partitions are split over LANES lanes, each with its own Postgres
 * connection, committing its partitions' batches one after another (so
 * per-account order holds) while the other lanes commit theirs; each lane
 * collects its next batch while its commit runs. The load driver against it
 * shows what Kafka, Postgres and the driver leave for banking-es's own work.
 * argv: brokers commandsTopic resultsTopic databaseUrl [lanes]
 */
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../src/kafka/client-config';
import { randomUUID } from 'node:crypto';
import { Client, type PoolClient } from 'pg';
import { CopyWriter } from '../src/codec/pgcopy';
import { encodeEnvelope } from '../src/codec/envelope';
import { copyIn } from '../src/db/sql/copy-in';
import { upsertOffsets } from '../src/db/sql/consumer-offsets';

const [brokers, commands, results, dbUrl, lanesArg] = process.argv.slice(2);
const LANES = Number(lanesArg ?? 2);
const GROUP = `e2e-limit-${process.pid}`;
const BATCH = 5000;
const COLUMNS = 'account_id, version, event_id, event_type, payload, command_id, recorded_at';
const payload = encodeEnvelope({ eventId: randomUUID(), accountId: randomUUID(), version: 1, type: 'MoneyDeposited',
  data: { amount: '1234.56', balanceAfter: '987654.32', currency: 'USD' }, commandId: randomUUID(), recordedAt: new Date().toISOString() });

const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': GROUP, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
const p = new Kafka.Producer({ 'bootstrap.servers': brokers, 'dr_cb': true, 'linger.ms': 2, 'batch.num.messages': 10000, 'queue.buffering.max.messages': 1_000_000, 'compression.type': 'lz4' } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
const versions = new Map<string, number>();
const seen = new Set<string>();

/** One committed batch's outcomes: once all are acknowledged, and every batch before them, its offsets are published. */
interface Sent { lane: Lane; next: Map<number, number>; remaining: number; failed: boolean }

p.on('delivery-report', (err, report) => {
  const t = report.opaque as Sent;
  if (err) t.failed = true;
  t.remaining--;
  t.lane.settle();
});

class Lane {
  readonly db = new Client({ connectionString: dbUrl });
  batch: Kafka.Message[] = [];
  /** partition -> the offset below which every outcome was acknowledged */
  readonly published = new Map<number, number>();
  /** committed batches whose outcomes are not all acknowledged yet, in commit order */
  readonly sent: Sent[] = [];
  private stopped = false;
  private committing = false;

  /**
   * Batches are acknowledged in any order (their outcomes go to several partitions): the published
   * offsets pass a batch only once it and every batch before it were. A batch that failed stops them
   * for good here; the daemon would publish its outcomes again (a rewind), which a limit never needs.
   */
  settle(): void {
    while (this.sent.length && this.sent[0].remaining === 0) {
      if (this.sent[0].failed) {
        if (!this.stopped) process.stderr.write('an outcome was not acknowledged: the published offsets stop here\n');
        this.stopped = true;
        return;
      }
      for (const [partition, n] of this.sent.shift()!.next) this.published.set(partition, Math.max(n, this.published.get(partition) ?? 0));
    }
  }

  /** Commits what has been collected, one transaction at a time; what arrives meanwhile is the next batch. */
  async drain(): Promise<void> {
    if (this.committing) return;
    this.committing = true;
    while (this.batch.length) {
      const msgs = this.batch.length > BATCH ? this.batch.splice(0, BATCH) : this.batch;
      if (msgs === this.batch) this.batch = [];
      await this.commit(msgs);
    }
    this.committing = false;
  }

  private async commit(msgs: Kafka.Message[]): Promise<void> {
    const rows = new CopyWriter(msgs.length * (payload.length + 160));
    const next = new Map<number, number>();
    const now = Date.now();
    for (const m of msgs) {
      const account = m.key!.toString();
      const command = m.value!.toString('latin1', 14, 50); // {"commandId":"<uuid>"…
      if (!seen.has(command)) {
        seen.add(command);
        const v = (versions.get(account) ?? 0) + 1;
        versions.set(account, v);
        rows.row(7).uuid(account).int8(v).uuid(randomUUID()).text('MoneyDeposited').jsonb(payload).uuid(command).timestamptz(now);
      }
      if ((next.get(m.partition) ?? -1) < m.offset + 1) next.set(m.partition, m.offset + 1);
    }
    const client = this.db as unknown as PoolClient;
    await this.db.query('BEGIN');
    await copyIn(client, 'events', COLUMNS, [rows.finish()]);
    await upsertOffsets(client, GROUP, commands, [...next].map(([partition, n]) => ({ partition, next: n, published: this.published.get(partition) ?? null })));
    await this.db.query('COMMIT');
    const sent: Sent = { lane: this, next, remaining: msgs.length, failed: false };
    if (!this.stopped) this.sent.push(sent); // stopped: nothing after the failed batch is ever published, so nothing is kept
    for (const m of msgs) {
      const id = m.value!.toString('latin1', 14, 50);
      for (;;) {
        try {
          p.produce(results, null, Buffer.from(`{"commandId":"${id}","status":"accepted"}`), m.key ?? undefined, null, sent);
          break;
        } catch (e) {
          // only a full local queue is waited out (serving delivery reports drains it); anything else is a bug here
          if ((e as { code?: number }).code !== Kafka.CODES.ERRORS.ERR__QUEUE_FULL) throw e;
          p.poll();
        }
      }
    }
  }
}

const lanes = Array.from({ length: LANES }, () => new Lane());
void Promise.all(lanes.map((l) => l.db.connect())).then(() => p.connect({}, () => {
  p.setPollInterval(5);
  c.connect({}, () => {
    c.subscribe([commands]);
    c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
    // the daemon's consume loop (src/kafka/consumer.ts): wait for one message, then drain what is queued.
    // consume(n) with a timeout holds messages until n arrive or one wait times out: 70 ms p50 at 1,000/s
    let idle = true;
    const loop = () => {
      c.setDefaultConsumeTimeout(idle ? 50 : 0);
      c.consume(idle ? 1 : 2000, (_e, msgs) => {
        idle = !msgs || msgs.length === 0;
        for (const m of msgs ?? []) lanes[m.partition % LANES].batch.push(m);
        for (const l of lanes) if (l.batch.length) void l.drain();
        setImmediate(loop);
      });
    };
    loop();
  });
}));
process.on('SIGTERM', () => p.flush(2000, () => void Promise.all(lanes.map((l) => l.db.end())).finally(() => process.exit(0))));
