/**
 * The end-to-end limit of the projection job on this machine: the least any
 * projector does per event, and nothing more. Consume an event, write one
 * transaction row per event with binary COPY, one folded account row per
 * account per flush through the same staging-table upsert, and the consumer
 * offsets, in ONE durable transaction per flush, rows in key order like the
 * projector's. Like the projector, a flush is encoded while the one before it
 * commits (the projector prepares ahead in workers), so the encoding is never
 * on Postgres's clock; and like limit.e2e, it never waits for itself:
 * partitions are split over LANES lanes, each with its own connection,
 * committing its own flushes (an account's events are all in one partition,
 * so lanes never touch the same rows): a ceiling of what Kafka and Postgres
 * allow for this work with two connections, where the projector commits one
 * flush at a time. No JSON parsing (the account comes from the key, the
 * version is counted), no validation, no skipping, no random ids per row;
 * amounts, ids and times are constants of realistic size; an account's id is
 * made into its 16 bytes once, and nothing of a message is kept past its
 * arrival but its account, partition and offset. The bench measures
 * it exactly as it measures the projector, and banking-es's projector beating
 * it means this limit is wrong. argv: brokers eventsTopic databaseUrl [lanes]
 */
import Kafka from 'node-rdkafka';
import { randomUUID } from 'node:crypto';
import { Client, type PoolClient } from 'pg';
import { CopyWriter } from '../src/codec/pgcopy';
import { copyIn } from '../src/db/sql/copy-in';
import { upsertOffsets } from '../src/db/sql/consumer-offsets';
import { upsertAccountProjections } from '../src/db/sql/upsert-account-projections';
import { TRANSACTION_COLUMNS } from '../src/codec/rows';

const [brokers, events, dbUrl, lanesArg] = process.argv.slice(2);
const LANES = Number(lanesArg ?? 2);
if (!Number.isInteger(LANES) || LANES < 1) throw new Error(`lanes must be a positive integer, not ${lanesArg}`);
const GROUP = `projection-limit-${process.pid}`;
// the projector's own defaults (projections.batchSize / batchTimeMs): a flush is 20,000 events or 50 ms after its first
const FLUSH = 20_000;
const FLUSH_MS = 50;
// event ids are not unique in transaction_projections (its key is account and version): a few suffice
const EVENT_IDS = Array.from({ length: 64 }, () => randomUUID());
const COMMAND_ID = randomUUID();

const c = new Kafka.KafkaConsumer({ 'bootstrap.servers': brokers, 'group.id': GROUP, 'enable.auto.commit': false, 'fetch.wait.max.ms': 10, 'fetch.queue.backoff.ms': 5, 'rebalance_cb': true } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });

/** An account seen: its id, its 16 bytes for COPY (made once), the last version counted, and its place (slot) in flush `flush`. */
interface Account { id: string; bytes: Buffer; version: number; flush: number; slot: number }
const known = new Map<string, Account>();
let flushIds = 0;

/**
 * A flush as it fills: nothing of a message is kept past its arrival (held
 * node-rdkafka messages cost the projector ~8 ms scavenges until it packed
 * them; see event-chunk.ts). An account's events are all in one partition,
 * so one lane, in order: a flush holds a run of consecutive versions per
 * account, `from[slot]` and `count[slot]`. Versions are counted per account
 * across flushes, in `known`.
 */
class Flush {
  readonly accounts: Account[] = [];
  readonly from: number[] = [];
  readonly count: number[] = [];
  readonly next = new Map<number, number>();
  n = 0;
  /** when its first event arrived */
  started = 0;
  private readonly id = ++flushIds;

  add(account: string, partition: number, offset: number): void {
    let a = known.get(account);
    if (!a) known.set(account, (a = { id: account, bytes: Buffer.from(account.replace(/-/g, ''), 'hex'), version: 0, flush: 0, slot: 0 }));
    a.version++;
    if (this.n === 0) this.started = Date.now();
    if (a.flush !== this.id) {
      a.flush = this.id;
      a.slot = this.accounts.length;
      this.accounts.push(a);
      this.from.push(a.version);
      this.count.push(0);
    }
    this.count[a.slot]++;
    this.n++;
    if ((this.next.get(partition) ?? -1) < offset + 1) this.next.set(partition, offset + 1);
  }
}

interface Encoded { tx: Buffer; accounts: Buffer; next: Map<number, number> }

// the row's constant fields, made once
const EVENT_ID_BYTES = EVENT_IDS.map((id) => Buffer.from(id.replace(/-/g, ''), 'hex'));
const COMMAND_ID_BYTES = Buffer.from(COMMAND_ID.replace(/-/g, ''), 'hex');

function encode(f: Flush): Encoded {
  const now = Date.now();
  // key order, as the projector writes them (project-shard.ts): Postgres inserts sorted keys faster
  const order = f.accounts.map((_, slot) => slot).sort((x, y) => (f.accounts[x].id < f.accounts[y].id ? -1 : 1));
  const tx = new CopyWriter(f.n * 160);
  const accounts = new CopyWriter(f.accounts.length * 120);
  let i = 0;
  for (const slot of order) {
    const a = f.accounts[slot];
    const last = f.from[slot] + f.count[slot] - 1;
    for (let v = f.from[slot]; v <= last; v++) {
      tx.row(11).bytes(a.bytes).int8(v).bytes(EVENT_ID_BYTES[i++ & 63]).text('MoneyDeposited').int8(123456).int8(98765432).text('USD').bytes(COMMAND_ID_BYTES).timestamptz(now).null().null();
    }
    accounts.row(9).bytes(a.bytes).text('Owner').text('USD').int8(98765432).text('open').int8(last).timestamptz(now).timestamptz(now).null();
  }
  return { tx: tx.finish(), accounts: accounts.finish(), next: f.next };
}

class Lane {
  readonly db = new Client({ connectionString: dbUrl });
  /** the flush filling, and the flushes full (FLUSH events) not yet encoded */
  filling = new Flush();
  readonly full: Flush[] = [];
  private sealing = false;

  add(account: string, partition: number, offset: number): void {
    this.filling.add(account, partition, offset);
    if (this.filling.n >= FLUSH) {
      this.full.push(this.filling);
      this.filling = new Flush();
    }
  }

  private async write(e: Encoded): Promise<void> {
    const client = this.db as unknown as PoolClient;
    await this.db.query('BEGIN');
    await copyIn(client, 'transaction_projections', TRANSACTION_COLUMNS, [e.tx]);
    await upsertAccountProjections(client, [e.accounts]);
    await upsertOffsets(client, GROUP, events, [...e.next].map(([partition, n]) => ({ partition, next: n, published: null })));
    await this.db.query('COMMIT');
  }

  /**
   * Seals flushes (full, or FLUSH_MS after their first event) and encodes each at once, then commits them
   * one transaction at a time: flush N+1 is encoded while N commits, and what arrives meanwhile is the flush
   * after. A flush that fills while the lane waits (out the age, or for a commit) is taken when the wait ends.
   */
  async seal(): Promise<void> {
    if (this.sealing) return;
    this.sealing = true;
    let committing: Promise<void> = Promise.resolve();
    while (this.full.length || this.filling.n) {
      if (!this.full.length) {
        const age = Date.now() - this.filling.started;
        if (age < FLUSH_MS) await new Promise((r) => setTimeout(r, FLUSH_MS - age));
      }
      let flush = this.full.shift();
      if (!flush) {
        flush = this.filling;
        this.filling = new Flush();
      }
      flushes++;
      flushed += flush.n;
      const encoded = encode(flush);
      await committing;
      committing = this.write(encoded);
    }
    await committing;
    this.sealing = false;
    // what arrived during the last commit found this lane sealing
    if (this.full.length || this.filling.n) void this.seal();
  }
}

let flushes = 0, flushed = 0;
const lanes = Array.from({ length: LANES }, () => new Lane());
void Promise.all(lanes.map((l) => l.db.connect())).then(() => c.connect({}, () => {
  c.subscribe([events]);
  c.setDefaultConsumeTimeout(10);
  c.on('rebalance', (err) => { if (err.code === -175) process.stdout.write('partitions assigned\n'); });
  const loop = () => c.consume(5000, (_e, msgs) => {
    for (const m of msgs ?? []) lanes[m.partition % LANES].add(m.key!.toString('latin1'), m.partition, m.offset);
    for (const l of lanes) if (l.filling.n || l.full.length) void l.seal();
    setImmediate(loop);
  });
  loop();
}));
process.on('SIGTERM', () => {
  process.stdout.write(`flushes ${flushes}, ${Math.round(flushed / Math.max(1, flushes))} events each on average\n`);
  void Promise.all(lanes.map((l) => l.db.end())).finally(() => process.exit(0));
});
