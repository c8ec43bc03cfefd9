/**
 * The message contracts in contracts/ (JSON Schema 2020-12), compiled once, for the
 * tests that check what the daemon produces and what it accepts against them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { packageRoot } from '../../src/paths';

export const CONTRACTS = path.join(packageRoot(), 'contracts');
const SCHEMAS = ['command', 'outcome', 'event', 'dead-letter-headers', 'transfer-step'] as const;
export type SchemaName = (typeof SCHEMAS)[number];

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
addFormats(ajv);
for (const s of SCHEMAS) ajv.addSchema(JSON.parse(fs.readFileSync(path.join(CONTRACTS, 'schemas', `${s}.json`), 'utf8')) as object, `${s}.json`);

/** null when `value` satisfies the schema, else what is wrong (every error, one line each). */
export function violation(schema: SchemaName, value: unknown): string | null {
  const v = ajv.getSchema(`${schema}.json`)!;
  if (v(value)) return null;
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');
}

/** Violations of a topic reader's messages, as "offset: problem", for assertions. */
export function violations(schema: SchemaName, messages: Array<{ partition: number; offset: number; value?: unknown; headers?: Record<string, string> }>, of: 'value' | 'headers' = 'value'): string[] {
  const out: string[] = [];
  for (const m of messages) {
    const problem = violation(schema, of === 'value' ? m.value : m.headers);
    if (problem) out.push(`${m.partition}/${m.offset}: ${problem} in ${JSON.stringify(of === 'value' ? m.value : m.headers).slice(0, 300)}`);
  }
  return out;
}
