/**
 * `node dist/dev/docs/config-table.js`: rewrites the "Keys" table of
 * docs/configuration.md from the convict schema (src/config.ts). The unit
 * test test/docs.unit.test.ts fails while the file and the schema differ.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configurationTable } from '../../src/config';
import { packageRoot } from '../../src/paths';

export const CONFIGURATION_MD = path.join(packageRoot(), 'docs', 'configuration.md');

/** The file's text with its table (from the `| key | env |` header to the first line that is not a row) replaced. */
export function withTable(text: string, table: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| key | env |'));
  if (start < 0) throw new Error('docs/configuration.md has no "| key | env |" table');
  let end = start;
  while (end < lines.length && lines[end].startsWith('|')) end++;
  return [...lines.slice(0, start), table, ...lines.slice(end)].join('\n');
}

if (require.main === module) {
  const before = fs.readFileSync(CONFIGURATION_MD, 'utf8');
  const after = withTable(before, configurationTable());
  fs.writeFileSync(CONFIGURATION_MD, after);
  process.stdout.write(before === after ? 'docs/configuration.md was up to date\n' : 'docs/configuration.md: table rewritten from the schema\n');
}
