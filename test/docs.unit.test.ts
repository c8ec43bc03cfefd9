/**
 * Docs that stand alone (#16 item 9): every relative link in the project's
 * Markdown resolves to a file inside the repository (and a `#fragment` to a
 * heading of it), the configuration table is the schema's, and no doc names
 * the relay slot as the fixed `banking_es_relay` it no longer is.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configurationTable } from '../src/config';
import { packageRoot } from '../src/paths';
import { CONFIGURATION_MD, withTable } from '../dev/docs/config-table';

const root = packageRoot();

function markdownFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (['node_modules', 'dist', '.git', '.banking-es'].includes(e.name) || e.name.startsWith('.')) continue;
      const f = path.join(dir, e.name);
      if (e.isDirectory()) { if (path.relative(root, f) !== path.join('bench', 'results')) walk(f); } else if (e.name.endsWith('.md')) out.push(f);
    }
  };
  walk(root);
  return out;
}

/** GitHub's heading anchors: lower case, punctuation but hyphens and spaces dropped, spaces to hyphens. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const base = m[1].trim().toLowerCase().replace(/`/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

test('every relative link in the Markdown resolves inside the repository', () => {
  const files = markdownFiles();
  assert.ok(files.some((f) => f.endsWith('README.md')) && files.length > 8, `found ${files.length} Markdown files`);
  const broken: string[] = [];
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8').replace(/```[\s\S]*?```/g, '');
    for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const link = m[1];
      if (/^[a-z]+:/i.test(link)) continue; // http(s):, mailto:
      const [target, fragment] = link.split('#');
      const resolved = target ? path.resolve(path.dirname(f), target) : f;
      const where = `${path.relative(root, f)}: ${link}`;
      if (path.relative(root, resolved).startsWith('..')) { broken.push(`${where} (outside the repository)`); continue; }
      if (!fs.existsSync(resolved)) { broken.push(`${where} (no such file)`); continue; }
      if (fragment && resolved.endsWith('.md') && !anchors(fs.readFileSync(resolved, 'utf8')).has(fragment)) broken.push(`${where} (no such heading)`);
    }
  }
  assert.equal(broken, []);
});

test('docs/configuration.md lists exactly the schema (node dist/dev/docs/config-table.js rewrites it)', () => {
  const text = fs.readFileSync(CONFIGURATION_MD, 'utf8');
  assert.is(withTable(text, configurationTable()), text);
  for (const env of ['CDC_SLOT', 'CDC_PUBLICATION', 'DATABASE_URL', 'KAFKA_BROKERS']) assert.ok(text.includes(`\`${env}\``), env);
});

test('no doc names the relay slot as a fixed banking_es_relay (it is banking_es_relay_<database> unless CDC_SLOT says)', () => {
  const bad: string[] = [];
  for (const f of markdownFiles()) {
    if (f.endsWith(path.join('docs', 'reliability.md'))) continue; // its bug log quotes the old name on purpose
    fs.readFileSync(f, 'utf8').split('\n').forEach((l, i) => { if (/banking_es_relay(?![_a-z<])/.test(l)) bad.push(`${path.relative(root, f)}:${i + 1}`); });
  }
  assert.equal(bad, []);
});

test.run();
