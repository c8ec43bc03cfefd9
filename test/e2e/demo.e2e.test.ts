/**
 * The README's quick start, as a user on a fresh machine runs it: `demo` with
 * no stack running brings up its own (Postgres, the Kafka mock cluster,
 * Redis) in a directory of its own, runs every role, sends a mix of
 * deposits, withdrawals and transfers (some to closed or missing accounts,
 * across currencies, invalid ones, re-sends), checks every outcome (status
 * and reason), every balance, every transfer and each currency's sum against
 * the generator's model, waits for the projections, and takes the stack down
 * again. Smaller than the default run (10,000 commands), same path.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnCli, waitForExit } from '../helpers/stack';

test('demo on a cold machine: its own stack up, every outcome, balance, transfer and projection as the model says, its stack down', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-demo-'));
  fs.chmodSync(dir, 0o755); // embedded Postgres runs as the postgres user when started by root
  const env = { BANKING_ES_STACK_DIR: dir };
  try {
    const demo = spawnCli(['demo', '--commands', '10000', '--accounts', '300', '--transfers', '0.2'], env);
    const exit = await waitForExit(demo, 240_000);
    const out = demo.output();
    assert.is(exit.code, 0, out);
    assert.match(out, /outcomes {5}accepted (\d+), rejected (\d+), duplicate (\d+) {2}\(expected \1 \/ \2 \/ \3\)/, out);
    assert.match(out, /balances {5}300\/300 accounts in the event store match/, out);
    assert.match(out, /transfers {4}\d+ credited, \d+ refused at the destination and refunded, 0 in flight \(model: .*\); USD conserved, EUR conserved/, out);
    assert.match(out, /projections {2}300\/300 accounts in account_projections match too/, out);
    assert.match(out, /all outcomes and balances as expected/, out);
    // it started the stack, so it took it down: nothing of it still answers
    const status = spawnCli(['stack', 'status'], env);
    assert.is((await waitForExit(status, 30_000)).code, 1, status.output());
    assert.match(status.output(), /stack is not up/, status.output());
  } finally {
    const down = spawnCli(['stack', 'down'], env);
    await waitForExit(down, 60_000).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
