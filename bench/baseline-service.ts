/**
 * The baseline: the same job written the way a typical Node service would
 * write it. One message at a time: decode, look for the commandId, load the
 * account's latest event, decide (the same domain code, so the comparison is
 * about the pipeline, not the rules), one INSERT, store the offset, COMMIT
 * (durable), produce the outcome. Honest, not sabotaged: prepared statements
 * via pg, an index for every lookup, librdkafka batching for outcomes.
 * argv: brokers commandsTopic resultsTopic databaseUrl groupId
 */
import Kafka from 'node-rdkafka';
import { PRODUCER_TOPIC_CONFIG } from '../src/kafka/client-config';
import { Client } from 'pg';
import { decodeCommand } from '../src/codec/command';
import { encodeEnvelope, newEventId } from '../src/codec/envelope';
import { decide, stateFromLatestEvent } from '../src/domain/decider';
import { fractionDigits } from '../src/domain/currency';
import { formatMoney, parseMinor } from '../src/domain/money';
import type { EventType } from '../src/domain/types';

const [brokers, commands, results, url, group] = process.argv.slice(2);
const EVENT_OF = { OpenAccount: 'AccountCreated', Deposit: 'MoneyDeposited', Withdraw: 'MoneyWithdrawn', CloseAccount: 'AccountClosed' } as const;

async function main() {
  const db = new Client({ connectionString: url });
  await db.connect();
  const p = new Kafka.Producer({ 'bootstrap.servers': brokers, 'linger.ms': 2 } as Kafka.ProducerGlobalConfig, PRODUCER_TOPIC_CONFIG);
  await new Promise<void>((res, rej) => p.connect({}, (e) => (e ? rej(e) : res())));
  p.setPollInterval(10);
  const offsets = new Map<number, number>();
  const c = new Kafka.KafkaConsumer({
    'bootstrap.servers': brokers, 'group.id': group, 'enable.auto.commit': false,
    'rebalance_cb': async function (this: Kafka.KafkaConsumer, err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) {
      if (err.code === -175) {
        const { rows } = await db.query('SELECT partition, next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2', [group, commands]);
        for (const r of rows) offsets.set(r.partition, Number(r.next_offset));
        this.assign(assignment.map((a) => ({ ...a, offset: offsets.get(a.partition) ?? -2 })));
        process.stdout.write('partitions assigned\n');
      } else this.unassign();
    },
  } as unknown as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((res, rej) => c.connect({}, (e) => (e ? rej(e) : res())));
  c.subscribe([commands]);
  c.setDefaultConsumeTimeout(50);
  const publish = (accountId: string, o: Record<string, unknown>) => p.produce(results, null, Buffer.from(JSON.stringify(o)), accountId);
  let running = true;
  process.on('SIGTERM', () => { running = false; });
  while (running) {
    const [m] = await new Promise<Kafka.Message[]>((res) => c.consume(1, (_e, msgs) => res(msgs ?? [])));
    if (!m) continue;
    const d = decodeCommand(m.key as Buffer | null, m.value, 65536);
    await db.query('BEGIN');
    if (d.kind === 'ok') {
      const cmd = d.command;
      const processedAt = new Date().toISOString();
      const dup = await db.query('SELECT version, payload FROM events WHERE account_id = $1 AND command_id = $2', [cmd.accountId, cmd.commandId]);
      const dupRej = dup.rowCount ? dup : await db.query('SELECT reason FROM command_rejections WHERE account_id = $1 AND command_id = $2', [cmd.accountId, cmd.commandId]);
      if (dup.rowCount) {
        const data = dup.rows[0].payload.data;
        publish(cmd.accountId, { commandId: cmd.commandId, accountId: cmd.accountId, type: cmd.type, status: 'duplicate', originalStatus: 'accepted', version: Number(dup.rows[0].version), balance: formatMoney(parseMinor(data.balanceAfter) ?? 0, fractionDigits(data.currency) ?? 2), processedAt });
      } else if (dupRej.rowCount) {
        publish(cmd.accountId, { commandId: cmd.commandId, accountId: cmd.accountId, type: cmd.type, status: 'duplicate', originalStatus: 'rejected', reason: dupRej.rows[0].reason, processedAt });
      } else {
        const latest = await db.query('SELECT version, event_type, payload FROM events WHERE account_id = $1 ORDER BY version DESC LIMIT 1', [cmd.accountId]);
        const state = latest.rowCount ? stateFromLatestEvent(cmd.accountId, Number(latest.rows[0].version), latest.rows[0].event_type as EventType, latest.rows[0].payload.data) : null;
        const dec = decide(state, cmd);
        if (dec.accepted) {
          const eventId = newEventId();
          const payload = encodeEnvelope({ eventId, accountId: cmd.accountId, version: dec.event.version, type: dec.event.type, data: dec.event.data as unknown as Record<string, unknown>, commandId: cmd.commandId, recordedAt: processedAt });
          await db.query('INSERT INTO events (account_id, version, event_id, event_type, payload, command_id, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
            [cmd.accountId, dec.event.version, eventId, EVENT_OF[cmd.type], payload, cmd.commandId, processedAt]);
          publish(cmd.accountId, { commandId: cmd.commandId, accountId: cmd.accountId, type: cmd.type, status: 'accepted', version: dec.event.version, balance: formatMoney(dec.state.balance, fractionDigits(dec.state.currency) ?? 2), processedAt });
        } else {
          await db.query('INSERT INTO command_rejections (account_id, command_id, command_type, reason, detail, rejected_at) VALUES ($1, $2, $3, $4, $5, $6)',
            [cmd.accountId, cmd.commandId, cmd.type, dec.rejected, dec.detail ?? null, processedAt]);
          publish(cmd.accountId, { commandId: cmd.commandId, accountId: cmd.accountId, type: cmd.type, status: 'rejected', reason: dec.rejected, processedAt });
        }
      }
    } else if (d.kind === 'invalid') {
      await db.query('INSERT INTO command_rejections (account_id, command_id, command_type, reason, detail, rejected_at) VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING', [d.accountId, d.commandId, d.type, 'INVALID_COMMAND', d.message]);
      publish(d.accountId, { commandId: d.commandId, accountId: d.accountId, type: d.type, status: 'rejected', reason: 'INVALID_COMMAND', processedAt: new Date().toISOString() });
    }
    await db.query(`INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
      ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset`, [group, commands, m.partition, m.offset + 1]);
    await db.query('COMMIT');
  }
  await new Promise<void>((r) => p.flush(5000, () => r()));
  c.disconnect();
  p.disconnect();
  await db.end();
  process.exit(0);
}
main().catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1); });
