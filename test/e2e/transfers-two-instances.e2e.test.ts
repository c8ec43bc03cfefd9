/**
 * Transfers on two instances (docs/transfers.md, #17), each running the
 * command and transfer roles: the second daemon joins mid-stream and takes
 * over some partitions of both groups (bank.commands and bank.transfers), so
 * a transfer's debit and its credit are decided by different processes; then
 * the first is SIGKILLed and its partitions of both topics move to the
 * second. The stream (test/helpers/transfer-ledger.ts: deposits, withdrawals,
 * transfers between random accounts, some refused at the destination, closes
 * racing them, re-sends) goes on throughout, and the ledger's algebra holds
 * exactly: every command's outcomes agree, every balance, nothing in flight,
 * each currency conserved, nothing applied twice.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rig, sleep } from '../helpers/reliability';
import { TransferLedger } from '../helpers/transfer-ledger';

const COMMANDS = Number(process.env.TRANSFER_TWO_COMMANDS ?? 16000);

let rig: Rig | undefined;
let ledger: TransferLedger | undefined;
let failed = true;

test.after(async () => {
  if (failed && rig) console.log(`daemon logs: ${rig.dumpLogs('transfers-two-instances').join(' ')}`);
  await ledger?.close();
  await rig?.release();
});

test(`two instances share both topics, one is SIGKILLed mid-stream: at least ${COMMANDS} commands, every balance, outcome and transfer exact`, async () => {
  const t0 = Date.now();
  rig = await Rig.create({ name: 'xfertwo', env: { ROLES: 'commands,transfers', KAFKA_CREATE_TOPICS: 'true' } });
  const r = rig;
  const l = ledger = await TransferLedger.open(r, 7777);
  const first = await r.start();
  await l.openAccounts();
  let killed = 0;
  // at least COMMANDS, and on for 4 s after the kill, however long the partitions took to be shared
  const stream = l.stream(COMMANDS, 250, () => killed === 0 || Date.now() - killed < 4000);
  await sleep(2000);

  const second = await r.start({}, { partitions: null });
  const sharedBy = async (consumer: string) => {
    const [a, b] = await Promise.all([first.partitionsOwned(consumer), second.partitionsOwned(consumer)]);
    return a > 0 && b > 0 && a + b === 4;
  };
  const deadline = Date.now() + 45000;
  while (!((await sharedBy('commands').catch(() => false)) && (await sharedBy('transfers').catch(() => false)))) {
    if (Date.now() > deadline) throw new Error(`partitions were not shared: commands ${first.owned()} / ${second.owned()}, transfers ${first.owned('transfers')} / ${second.owned('transfers')}`);
    await sleep(100);
  }
  const shared = { commands: [first.owned(), second.owned()], transfers: [first.owned('transfers'), second.owned('transfers')] };
  const before = l.answered();
  await sleep(4000);
  assert.ok(l.answered() > before, 'outcomes flow while both share the partitions');

  await first.kill();
  const killedAt = killed = Date.now();
  const since = (p: Promise<unknown>) => p.then(() => Date.now() - killedAt);
  const [commandsMs, transfersMs] = await Promise.all([since(second.assigned(4, 45000)), since(second.assigned(4, 45000, 'transfers'))]);
  await stream;
  await l.drain();
  const { transfers, credited, refunded } = await l.check();
  assert.is((await second.get('/readyz')).status, 200, 'the survivor is ready');
  assert.equal(r.errorLines(), [], 'no error-level log lines');
  console.log(`shared (commands ${JSON.stringify(shared.commands)}, transfers ${JSON.stringify(shared.transfers)}); after the SIGKILL the survivor owned every command partition in ${commandsMs} ms and every transfer partition in ${transfersMs} ms; ` +
    `${l.size} commands (${transfers} transfers: ${credited} credited, ${refunded} refunded at the destination) in ${((Date.now() - t0) / 1000).toFixed(0)} s; every balance, outcome and transfer exact`);
  const exit = await second.stop();
  assert.is(exit.code, 0);
  failed = false;
});

test.run();
