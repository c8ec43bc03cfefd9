/**
 * Counts that mean what they say across graceful hand-overs (#16 item 6):
 * when a second instance joins, the first one's partitions are revoked; it
 * lets what it consumed commit and records how far its outcomes reached
 * Kafka before it lets go, so the new owner re-publishes nothing. When an
 * instance is stopped with SIGTERM the same holds. Every command is then
 * answered exactly once, banking_es_commands_total over the instances adds
 * up to the commands sent, and banking_es_outcomes_republished_total stays 0.
 * (After a crash re-publication is expected; it is counted there and only
 * there: decide-shard.unit.test.ts.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { cmd, PipelineFixture, type Cmd } from '../../helpers/pipeline';
import type { Daemon } from '../../helpers/daemon';

const WAIT_MS = 60000;
let f: PipelineFixture;

test.before(async () => {
  f = await PipelineFixture.create('handover_counts');
});

test.after(async () => {
  await f?.release();
});

/** Every command of `cs` has exactly one outcome on the topic. */
async function exactlyOnce(cs: Cmd[]): Promise<void> {
  await f.outcomeFor(cs, WAIT_MS);
  await new Promise((r) => setTimeout(r, 1500)); // a re-published copy would come within this
  const want = new Set(cs.map((c) => c.commandId));
  const n = new Map<string, number>();
  for (const m of f.outcomes.messages) if (m.value?.commandId && want.has(m.value.commandId)) n.set(m.value.commandId, (n.get(m.value.commandId) ?? 0) + 1);
  const twice = [...n].filter(([, k]) => k > 1);
  assert.is(twice.length, 0, `${twice.length} commands answered more than once, e.g. ${twice.slice(0, 3).map(([id, k]) => `${id} ×${k}`).join(', ')}`);
}

test('a joining instance and a SIGTERM hand partitions over with nothing re-published and every command counted once', async () => {
  const a = await f.start();
  const accts = Array.from({ length: 40 }, () => randomUUID());
  const opens = accts.map((x) => cmd.open(x, '0'));
  await f.sendAll(opens);
  await exactlyOnce(opens);

  // under load, a second instance joins: deposits keep coming, 100 every 20 ms, from before it starts
  // until both own their half and for a while after, so the first one's partitions are revoked mid-stream
  const burst: Cmd[] = [];
  let n = 0;
  const chunk = async () => {
    const c = Array.from({ length: 100 }, () => cmd.deposit(accts[n++ % accts.length], '0.01'));
    burst.push(...c);
    await f.sendAll(c);
    await new Promise((r) => setTimeout(r, 20));
  };
  for (let i = 0; i < 10; i++) await chunk();
  const b: Daemon = f.join();
  let joined = false;
  const joining = b.assigned(2, WAIT_MS).then(() => a.assigned(2, WAIT_MS)).then(() => { joined = true; });
  while (!joined) await Promise.race([chunk(), joining]);
  const duringJoin = burst.length;
  for (let i = 0; i < 10; i++) await chunk();
  await joining;
  assert.ok(duringJoin >= 1500, `commands kept coming while the second instance joined (${duringJoin})`);
  await exactlyOnce(burst);
  const revoked = await a.metricSum('banking_es_outcomes_republished_total') + await b.metricSum('banking_es_outcomes_republished_total');
  assert.is(revoked, 0, 'nothing re-published after the revoke');
  const beforeStop = await b.metricSum('banking_es_commands_total');

  // the second instance is stopped gracefully: the first takes every partition back
  const r = await b.stop();
  assert.is(r.code, 0);
  await a.assigned(4, WAIT_MS);
  const tail: Cmd[] = accts.map((x) => cmd.deposit(x, '1.00'));
  await f.sendAll(tail);
  await exactlyOnce(tail);
  assert.is(await a.metricSum('banking_es_outcomes_republished_total'), 0, 'nothing re-published after the SIGTERM');
  const counted = await a.metricSum('banking_es_commands_total') + beforeStop;
  assert.is(counted, opens.length + burst.length + tail.length, 'banking_es_commands_total over both instances is the commands sent');

  const { rows: [bal] } = await f.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE account_id = ANY($1::uuid[])', [accts]);
  assert.is(bal.n, opens.length + burst.length + tail.length, 'one event per command');
});

test.run();
