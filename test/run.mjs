#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) in its own process,
// against one embedded stack started for the run (skipped with --unit), and
// ends with the line "N passed, M failed" summed from uvu's own totals.
// Usage: node test/run.mjs [--unit] [name-filter ...]
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => !a.startsWith('--'));
const FILE_TIMEOUT_MS = Number(process.env.TEST_FILE_TIMEOUT_MS ?? 300000);

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(path.join(dir, d.name)) : [path.join(dir, d.name)]));
}

const order = (f) => (f.includes('.unit.') ? 0 : f.includes('.int.') ? 1 : 2);
let files = walk(path.join(root, 'dist', 'test')).filter((f) => f.endsWith('.test.js'));
if (unitOnly) files = files.filter((f) => f.includes('.unit.'));
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
files.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
if (files.length === 0) {
  console.error('no test files found under dist/test; run npm run build first');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const needsStack = files.some((f) => !f.includes('.unit.'));
const stackDir = fs.mkdtempSync(path.join(os.tmpdir(), 'banking-es-test-'));
const cli = path.join(root, 'dist', 'src', 'cli.js');
if (needsStack) {
  const up = spawnSync(process.execPath, [cli, 'stack', 'up', '--dir', stackDir], { stdio: 'inherit' });
  if (up.status !== 0) {
    console.error('could not start the embedded test stack');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

function runFile(file) {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn(process.execPath, [file], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', NODE_ENV: 'test', BANKING_ES_STACK_DIR: stackDir, BANKING_ES_TEST_STACK: needsStack ? '1' : '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
    child.stderr.on('data', (d) => { out += d; process.stderr.write(d); });
    const timer = setTimeout(() => { out += `\n[runner] ${file} timed out after ${FILE_TIMEOUT_MS} ms\n`; child.kill('SIGKILL'); }, FILE_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // a test process that dies on a signal (e.g. SIGSEGV in a native client at teardown) prints nothing itself
      if (signal || code !== 0) console.log(`[runner] ${path.relative(root, file)} exited with ${signal ? `signal ${signal}` : `code ${code}`}`);
      const num = (label) => { const m = out.match(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm')); return m ? Number(m[1]) : undefined; };
      const total = num('Total');
      const passed = num('Passed');
      const skipped = num('Skipped') ?? 0;
      let failed;
      if (total === undefined || passed === undefined) failed = 1; // crashed before uvu's summary
      else failed = total - passed - skipped;
      if (code !== 0 && failed === 0) failed = 1;
      resolve({ file: path.relative(root, file), passed: passed ?? 0, failed, skipped, ms: Date.now() - start });
    });
  });
}

const results = [];
try {
  for (const f of files) {
    console.log(`\n── ${path.relative(root, f)}`);
    results.push(await runFile(f));
  }
} finally {
  if (needsStack) spawnSync(process.execPath, [cli, 'stack', 'down', '--dir', stackDir], { stdio: 'inherit' });
  fs.rmSync(stackDir, { recursive: true, force: true });
}

console.log('\nfile'.padEnd(58) + 'passed failed   seconds');
for (const r of results) console.log(`${r.file.padEnd(57)} ${String(r.passed).padStart(6)} ${String(r.failed).padStart(6)} ${(r.ms / 1000).toFixed(1).padStart(9)}`);
const passed = results.reduce((s, r) => s + r.passed, 0);
const failed = results.reduce((s, r) => s + r.failed, 0);
const skipped = results.reduce((s, r) => s + r.skipped, 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
