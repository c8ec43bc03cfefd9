/**
 * Outcomes Kafka never acknowledged are published again by the running
 * daemon (docs/reliability.md §13). The daemon runs against a private mock
 * cluster with KAFKA_MESSAGE_TIMEOUT_MS 1500; the cluster's host is stopped
 * (SIGSTOP) for 4 s, three times, while the daemon answers a burst: longer than a delivery may take, so
 * outcomes fail, and shorter than the consumer's session, so the group does
 * not rebalance. Before, those outcomes waited for the next assignment (a
 * restart); now the partition is consumed again from the first lost outcome
 * and every command gets its outcome, without a restart. A re-published
 * outcome arrives after later ones that got through the first time (on its
 * account too), as the contract allows; an original answered again is
 * answered with its own status. The second test does the same to a daemon
 * running the transfer role: steps and final outcomes time out too, and no
 * transfer is left in flight.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandOracle } from '../helpers/oracle';
import { Rig, sleep } from '../helpers/reliability';
import { TransferLedger } from '../helpers/transfer-ledger';
import { until } from '../helpers/relay';
import { releaseMockKafka, startMockKafka, type MockKafka } from '../helpers/faults';

let kafka: MockKafka | undefined;
let rig: Rig | undefined;
let ledger: TransferLedger | undefined;
let passed = false;

test.after(async () => {
  if (kafka) { try { process.kill(kafka.pid, 'SIGCONT'); } catch { /* gone */ } }
  if (rig && !passed) console.log(`daemon logs: ${rig.dumpLogs('outcome-redelivery').join(' ')}`);
  await ledger?.close();
  await rig?.release();
  await releaseMockKafka(kafka);
});

/** Stops the cluster's host for 4 s: past KAFKA_MESSAGE_TIMEOUT_MS (1.5 s), within the consumers' session (6 s). */
async function stopKafka(k: MockKafka): Promise<void> {
  process.kill(k.pid, 'SIGSTOP');
  await sleep(4000);
  process.kill(k.pid, 'SIGCONT');
}

/** the warning of a rewind (the retention error's text also says "consuming the partition again") */
const REWOUND = 'never reached Kafka; consuming the partition again from the first of them';
const count = (out: string, text: string) => out.split('\n').filter((l) => l.includes(text)).length;

test('outcomes that time out while Kafka is stopped (three times) reach it without a restart; every command answered once the stream ends', async () => {
  kafka = await startMockKafka();
  rig = await Rig.create({ name: 'redeliver', brokers: kafka.brokers, env: { KAFKA_MESSAGE_TIMEOUT_MS: '1500' } });
  const oracle = new CommandOracle({ accounts: 200, seed: 13 });
  await rig.tap(oracle);
  const d = await rig.start();

  // three rounds: a burst of commands, and Kafka stopped while the daemon is answering it (its outcomes are
  // produced into a cluster that does not answer, and time out)
  let sent = 0;
  for (let round = 1; round <= 3; round++) {
    const before = oracle.received;
    sent += await rig.stream(oracle, { total: 4000, chunk: 500 });
    await until(() => oracle.received >= before + 200, 30000, 'the daemon to answer the burst');
    await stopKafka(kafka);
  }
  sent += await rig.stream(oracle, { total: 1000, chunk: 500 });
  const tookMs = await rig.complete(oracle, 60000).catch(async (e: unknown) => {
    const { rows } = await rig!.pg.query('SELECT partition, next_offset, published_offset FROM consumer_offsets ORDER BY partition');
    const published = (await d.get('/metrics')).body.split('\n').filter((l) => l.startsWith('banking_es_outcomes_published_total') || l.startsWith('banking_es_commands_total'));
    console.log(`stored offsets ${JSON.stringify(rows)}; ${published.join('; ')}`);
    throw e;
  });

  const out = d.output().split('\n');
  const episodes = out.filter((l) => l.includes('outcome delivery failed')).length;
  const rewinds = out.filter((l) => l.includes(REWOUND)).length;
  const assignments = out.filter((l) => l.includes('"partitions assigned"')).length;
  console.log(`${sent} commands; ${episodes} failure episodes (a partition's outcomes timing out), ${rewinds} partition rewinds, ${assignments} assignment(s); every outcome ${tookMs} ms after the last burst was sent`);
  assert.ok(episodes > 0, 'outcomes timed out while Kafka was stopped (else this test shows nothing)');
  // one error line per partition and episode, not one per lost outcome (thousands): at most one per partition
  // for each stop, and one more when a rewind's replay met the next stop
  assert.ok(episodes <= 4 * 3 * 2, `${episodes} 'outcome delivery failed' lines`);
  assert.ok(rewinds > 0, 'a partition was consumed again to publish them');
  assert.is(assignments, 1, 'no rebalance: the rewind, not a new assignment, published them again');
  // a lost outcome published again arrives after later outcomes that reached Kafka the first time, on its
  // account too: at least once, in order except around a failed delivery (docs/message-contracts.md)
  console.log(`${oracle.reorderCount} outcomes arrived after a later command's on their account`);
  assert.equal(oracle.mismatches.filter((m) => !m.endsWith('(reordered)')), [], 'every outcome as the oracle expects');
  assert.is(oracle.mismatchCount, oracle.reorderCount);
  // replayed copies of messages still committing when the partition was rewound are decided after them,
  // from Postgres: answered with their own status, never as re-sends of themselves
  assert.is(oracle.duplicateOfOriginal, 0, 'an original answered again as `duplicate`');
  assert.ok(d.alive, 'no restart');
  const { rows } = await rig.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM (SELECT command_id FROM events GROUP BY command_id HAVING count(*) > 1) x');
  assert.is(rows[0].n, 0, 'nothing applied twice');
  assert.equal(rig.errorLines().filter((l) => !l.includes('outcome delivery failed')), [], 'no other error-level lines');
  passed = true;
});

test('transfer steps and final outcomes that time out reach Kafka without a restart: nothing stuck in flight, the ledger exact', async () => {
  await rig?.release();
  await releaseMockKafka(kafka);
  passed = false;
  kafka = await startMockKafka();
  rig = await Rig.create({ name: 'redeliverxfer', brokers: kafka.brokers, env: { ROLES: 'commands,transfers', KAFKA_CREATE_TOPICS: 'true', KAFKA_MESSAGE_TIMEOUT_MS: '1500' } });
  // a seed no other test uses: the account ids follow from it, and the test stack's Redis (shared by every
  // test) would hand this test's account states to another test's database
  const l = ledger = await TransferLedger.open(rig, 4343);
  const d = await rig.start();
  await l.openAccounts();
  let stopped = 0;
  const stream = l.stream(9000, 20, () => stopped < 3);
  for (; stopped < 3; stopped++) {
    const before = l.answered();
    await until(() => l.answered() >= before + 300, 30000, 'the daemon to answer more commands');
    await stopKafka(kafka);
  }
  await stream;
  await l.drain();
  const { transfers, credited, refunded } = await l.check();
  const out = d.output();
  const episodes = count(out, 'outcome delivery failed'), rewinds = count(out, REWOUND);
  const stepRewinds = count(out, 'outcomes of the transfers pipeline never reached Kafka');
  console.log(`${l.size} commands (${transfers} transfers: ${credited} credited, ${refunded} refunded); ${episodes} failure episodes, ${rewinds} rewinds (${stepRewinds} of bank.transfers), ${count(out, '"partitions assigned"')} assignments`);
  assert.ok(episodes > 0 && rewinds > 0, 'outcomes or steps timed out and a partition was consumed again');
  assert.ok(stepRewinds > 0, 'the transfer pipeline rewound too (its steps and final outcomes)');
  assert.is(count(out, '"partitions assigned"'), 2, 'one assignment per consumer: the rewinds, not a rebalance, published them again');
  assert.ok(d.alive, 'no restart');
  assert.equal(rig.errorLines().filter((x) => !x.includes('outcome delivery failed')), [], 'no other error-level lines');
  passed = true;
});

test.run();
