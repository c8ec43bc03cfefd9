/**
 * `npm run demo`: the daemon's main job on the embedded stack. Starts the
 * stack (unless it is up), the daemon as a child process, and a load
 * generator with a progress bar; then prints what happened and checks
 * balances in Postgres against the generator's own model, and shuts down.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import { stackUp, stackDown, readStack, stackStatus, stackPaths } from './stack/stack';
import { Workload } from './loadgen/generator';
import { drive, ensureTopics, percentile, type Progress } from './loadgen/driver';
import { checkStore } from './loadgen/store-check';
import { distDir } from '../src/paths';
import { waitForExitCode } from './stack/process';

export interface DemoOptions { dir: string; accounts: number; commands: number; rate: number; keepStack: boolean; workers: number; /** share of transfers */ transfers: number }

function bar(p: Progress): string {
  const width = 30;
  const frac = p.total ? p.answered / p.total : 0;
  const filled = Math.round(frac * width);
  const rate = p.elapsedMs > 0 ? Math.round(p.answered / (p.elapsedMs / 1000)) : 0;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  sent ${p.sent}  answered ${p.answered}/${p.total}  ${rate.toLocaleString('en-US')} cmd/s`;
}

export async function runDemo(o: DemoOptions, say: (s: string) => void): Promise<number> {
  const wasUp = stackStatus(o.dir).up;
  const stack = wasUp ? readStack(o.dir)! : await stackUp(o.dir, (l) => say(`  ${l}`));
  const topics = { commands: 'bank.commands', results: 'bank.command-results', dlq: 'bank.commands.dlq', transfers: 'bank.transfers', transfersDlq: 'bank.transfers.dlq', events: 'bank.events', eventsDlq: 'bank.events.dlq' };
  await ensureTopics(stack.kafka.brokers, Object.values(topics));
  const logFile = path.join(stackPaths(o.dir).logs, 'demo-daemon.log');
  say(`starting the daemon (logs: ${logFile})`);
  const out = fs.openSync(logFile, 'a');
  const daemon = spawn(process.execPath, [path.join(distDir(), 'src', 'cli.js'), 'start'], {
    env: { ...process.env, BANKING_ES_STACK_DIR: o.dir, ROLES: 'commands,transfers,relay,projections', CDC_MODE: 'relay', METRICS_PORT: '0', LOG_LEVEL: 'info', PIPELINE_WORKERS: String(o.workers), NODE_ENV: 'development' },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  let code = 0;
  try {
    const deadline = Date.now() + 60_000;
    // the three consumer groups (commands, transfers, projections) own their partitions
    while ((fs.readFileSync(logFile, 'utf8').match(/partitions assigned/g) ?? []).length < 3) {
      if (daemon.exitCode !== null) throw new Error(`the daemon exited with ${daemon.exitCode}; see ${logFile}`);
      if (Date.now() > deadline) throw new Error(`the daemon did not get its partitions within 60 s; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const w = new Workload({ accounts: o.accounts, commands: o.commands, invalidRatio: 0.01, duplicateRatio: 0.01, transferRatio: o.transfers, seed: 7 });
    say(`sending ${o.commands.toLocaleString('en-US')} commands over ${o.accounts.toLocaleString('en-US')} accounts in USD and EUR (${o.rate ? `${o.rate}/s` : 'as fast as it goes'}; ~${Math.round(o.transfers * 100)}% transfers, some to closed or missing accounts or across currencies; ~1% invalid, ~1% re-sent)`);
    const tty = process.stderr.isTTY;
    let lastLine = 0;
    const r = await drive(w, {
      brokers: stack.kafka.brokers, commandsTopic: topics.commands, resultsTopic: topics.results, rate: o.rate, window: 20_000, timeoutMs: 300_000,
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r${bar(p)}`);
        else if (Date.now() - lastLine > 2000 || p.answered === p.total) { lastLine = Date.now(); process.stderr.write(`${bar(p)}\n`); }
      },
    });
    if (tty) process.stderr.write('\n');
    const secs = r.elapsedMs / 1000;
    say('');
    say(`outcomes     accepted ${r.byStatus.accepted ?? 0}, rejected ${r.byStatus.rejected ?? 0}, duplicate ${r.byStatus.duplicate ?? 0}  (expected ${r.expectedByStatus.accepted ?? 0} / ${r.expectedByStatus.rejected ?? 0} / ${r.expectedByStatus.duplicate ?? 0})`);
    if (r.republished) say(`re-published ${r.republished} copies of outcomes already received (a hand-over or restart re-sends what it could not prove published: at-least-once, not a difference)`);
    say(`throughput   ${Math.round(r.answered / secs).toLocaleString('en-US')} commands/s end to end (${r.answered} in ${secs.toFixed(1)} s)`);
    say(`latency      produce→outcome p50 ${percentile(r.latenciesMs, 50).toFixed(1)} ms, p99 ${percentile(r.latenciesMs, 99).toFixed(1)} ms`);
    const db = new Client({ connectionString: stack.postgres.url });
    await db.connect();
    let wrong = 0;
    let projWrong = 0;
    let transfersWrong = 0;
    try {
      const c = await checkStore(db, w);
      const got = c.balances;
      wrong = c.wrongBalances;
      transfersWrong = c.transfersWrong;
      const sample = w.accountIds.slice(0, 3).map((id) => `${id.slice(0, 8)}… ${((got.get(id) ?? NaN) / 100).toFixed(2)} (expected ${((w.expected.get(id) ?? NaN) / 100).toFixed(2)})`);
      say(`balances     ${w.accountIds.length - wrong}/${w.accountIds.length} accounts in the event store match the generator's model; e.g. ${sample.join(', ')}`);
      // transfers: every one settled as the model says, nothing left in flight, and each currency conserved
      const t = c.transfers, conserved = c.conservation;
      say(`transfers    ${t.credited} credited, ${t.refunded} refused at the destination and refunded, ${t.open} in flight (model: ${w.transfers.credited} / ${w.transfers.refunded} / 0); ${conserved.join(', ')}`);
      // the read model trails the event store by the relay and the projector: wait for it to catch up
      const projDeadline = Date.now() + 60_000;
      const t0 = Date.now();
      for (;;) {
        const pr = await db.query<{ account_id: string; balance: string }>('SELECT account_id, balance FROM account_projections WHERE account_id = ANY($1::uuid[])', [w.accountIds]);
        const pg = new Map(pr.rows.map((x) => [x.account_id, Number(x.balance)]));
        projWrong = w.accountIds.filter((id) => pg.get(id) !== w.expected.get(id)).length;
        if (projWrong === 0 || Date.now() > projDeadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      say(`projections  ${w.accountIds.length - projWrong}/${w.accountIds.length} accounts in account_projections match too (caught up ${((Date.now() - t0) / 1000).toFixed(1)} s after the last outcome; relay → bank.events → projector)`);
    } finally {
      await db.end();
    }
    if (r.timedOut || r.mismatches || wrong || projWrong || transfersWrong) {
      say(`PROBLEM: ${r.timedOut ? `${r.sent - r.answered} commands unanswered; ` : ''}${r.mismatches} outcomes differ from the model; ${wrong} event-store balances and ${projWrong} projected balances differ; ${transfersWrong} transfer checks failed`);
      code = 1;
    } else say('all outcomes and balances as expected');
  } finally {
    daemon.kill('SIGTERM');
    const exit = await waitForExitCode(daemon, 20_000);
    say(`daemon stopped (exit ${exit})`);
    if (!wasUp && !o.keepStack) await stackDown(o.dir, () => undefined);
    else say(`the stack stays up (banking-es stack down to stop it)`);
  }
  return code;
}
