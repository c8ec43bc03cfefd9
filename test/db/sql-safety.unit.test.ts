/**
 * Every SQL statement is parameterized or a COPY (docs/reliability.md §8).
 * Parses src/**\/*.ts with the TypeScript compiler and fails on:
 *   - a template literal that reads as SQL and interpolates anything but the
 *     identifiers listed in ALLOWED_INTERPOLATIONS (table and column-list
 *     constants, quoted identifiers), each allowed in one file only;
 *   - SQL built by `+` concatenation with a non-literal;
 *   - a `.query(...)` whose text is neither a literal, a checked template, a
 *     COPY stream, nor one of ALLOWED_QUERY_TEXTS;
 *   - a copyIn(...) call whose table is not a string literal or whose column
 *     list is not a constant;
 *   - a Postgres array literal (`{a,b}`) assembled from strings, by a
 *     template or by `+`: arrays travel as arrays, which node-postgres
 *     encodes, or through COPY (an id with `,` `}` `"` once broke every
 *     partition this way).
 * A new interpolation must be added here, on purpose, with a reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { packageRoot } from '../../src/paths';

/** file (relative to src/) -> interpolations allowed in SQL there, with why. */
const ALLOWED_INTERPOLATIONS: Record<string, Record<string, string>> = {
  'db/sql/copy-in.ts': {
    table: 'table name; every caller passes a string literal (checked below)',
    columns: 'column list; every caller passes an UPPER_CASE constant (checked below)',
  },
  'db/sql/upsert-account-projections.ts': {
    ACCOUNT_STAGING_COLUMNS: 'column-list constant from codec/rows.ts',
  },
  'db/sql/poller-index.ts': {
    POLLER_INDEX: 'index-name constant',
  },
  'db/sql/transfers.ts': {
    BACKED: 'a constant condition shared by the settlement and its check; it holds no value',
  },
  'db/sql/replication-slot.ts': {
    'quoteIdent(name)': 'publication name, quoted as an identifier (identifiers cannot be bound)',
  },
  'dev/stack/postgres.ts': {
    'admin.escapeIdentifier(opts.database)': 'database name, escaped by node-postgres (CREATE DATABASE cannot be bound)',
  },
};

/** `.query(x)` arguments that are not literal SQL but are safe, per file. */
const ALLOWED_QUERY_TEXTS: Record<string, string[]> = {
  'db/migrate.ts': ['m.sql'], // the text of a migration file shipped in src/db/migrations
  'db/sql/copy-in.ts': ['copy'], // the COPY submittable; its statement's table and columns are checked at every copyIn call
};

const SQL = /\b(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|COPY\s|CREATE\s|DROP\s|ALTER\s|TRUNCATE\s|LOCK\s+TABLE|GRANT\s|WHERE\s|FROM\s+\w)/;

/** `{${…}}` or `'{' + … + '}'`: a Postgres array literal (or any brace-wrapped list) assembled from strings. */
function buildsArrayLiteral(n: ts.Node): boolean {
  if (ts.isTemplateExpression(n)) {
    const tail = n.templateSpans[n.templateSpans.length - 1].literal.text;
    return n.head.text === '{' && tail.endsWith('}');
  }
  if (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const lit = (x: ts.Node) => (ts.isStringLiteral(x) || ts.isNoSubstitutionTemplateLiteral(x)) ? x.text : undefined;
    return lit(n.left) === '{'; // `'{' + a + '}'` parses as ('{' + a) + '}'
  }
  return false;
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? walk(p) : d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [p] : [];
  });
}

// the daemon (src/) and the development tools beside it (dev/: the embedded stack, the load generator, the demo)
const srcDir = path.join(packageRoot(), 'src');
const files = [...walk(srcDir), ...walk(path.join(packageRoot(), 'dev'))];
const constants = new Map<string, string>(); // UPPER_CASE const with a literal value, anywhere in src

interface Finding { file: string; line: number; text: string; why: string }

function scan(): { findings: Finding[]; templates: number; queries: number; copies: number; used: Set<string> } {
  const findings: Finding[] = [];
  const used = new Set<string>();
  let templates = 0, queries = 0, copies = 0;
  const sources = files.map((f) => ts.createSourceFile(f, fs.readFileSync(f, 'utf8'), ts.ScriptTarget.ES2022, true));
  for (const sf of sources) {
    const visitConst = (n: ts.Node): void => {
      if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && /^[A-Z][A-Z0-9_]*$/.test(n.name.text) && n.initializer
        && (ts.isStringLiteral(n.initializer) || ts.isNoSubstitutionTemplateLiteral(n.initializer))
        && ts.isVariableDeclarationList(n.parent) && (n.parent.flags & ts.NodeFlags.Const)) constants.set(n.name.text, n.initializer.text);
      ts.forEachChild(n, visitConst);
    };
    visitConst(sf);
  }
  for (const sf of sources) {
    // paths relative to src/; a dev/ file keeps its dev/ prefix
    const rel = path.relative(srcDir, sf.fileName).split(path.sep).join('/').replace(/^\.\.\/dev\//, 'dev/');
    const allowed = ALLOWED_INTERPOLATIONS[rel] ?? {};
    const at = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
    const report = (n: ts.Node, why: string) => findings.push({ file: rel, line: at(n), text: n.getText(sf).slice(0, 160), why });
    const visit = (n: ts.Node): void => {
      if (buildsArrayLiteral(n)) report(n, 'a Postgres array literal assembled from strings; pass an array');
      if (ts.isTemplateExpression(n)) {
        const text = n.head.text + n.templateSpans.map((s) => s.literal.text).join(' ');
        if (SQL.test(text)) {
          templates++;
          for (const span of n.templateSpans) {
            const expr = span.expression.getText(sf);
            if (expr in allowed) used.add(`${rel}:${expr}`);
            else report(span.expression, `interpolated into SQL: \${${expr}}`);
          }
        }
      }
      if (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken) {
        const sides = [n.left, n.right];
        const sqlSide = sides.find((s) => (ts.isStringLiteral(s) || ts.isNoSubstitutionTemplateLiteral(s)) && SQL.test(s.text));
        const other = sides.find((s) => s !== sqlSide);
        if (sqlSide && other && !ts.isStringLiteral(other) && !ts.isNoSubstitutionTemplateLiteral(other)) report(n, 'SQL built by + concatenation');
      }
      if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'query' && n.arguments.length > 0) {
        queries++;
        const a = n.arguments[0];
        const text = a.getText(sf);
        const ok = ts.isStringLiteral(a) || ts.isNoSubstitutionTemplateLiteral(a) || ts.isTemplateExpression(a) // templates are checked above
          || (ts.isCallExpression(a) && /^(copyFrom|copyTo|from|to)$/.test(a.expression.getText(sf))) // COPY streams
          || (ts.isIdentifier(a) && constants.has(a.text))
          || (ALLOWED_QUERY_TEXTS[rel] ?? []).includes(text)
          || ts.isObjectLiteralExpression(a); // { text, values } config objects are checked by their own literals
        if (!ok) report(a, `query text is not a literal or an allowed constant: ${text}`);
        if (ts.isTemplateExpression(a) && !SQL.test(a.head.text + a.templateSpans.map((s) => s.literal.text).join(' '))) report(a, 'a template query the SQL pattern does not recognise');
      }
      if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 'copyIn' && n.arguments.length >= 3) {
        copies++;
        const [, table, columns] = n.arguments;
        if (!ts.isStringLiteral(table)) report(table, `copyIn table is not a string literal: ${table.getText(sf)}`);
        if (!(ts.isStringLiteral(columns) || (ts.isIdentifier(columns) && /^[A-Z][A-Z0-9_]*$/.test(columns.text)))) report(columns, `copyIn columns are not a constant: ${columns.getText(sf)}`);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  return { findings, templates, queries, copies, used };
}

test('every SQL statement in src/ is parameterized, a COPY, or interpolates only listed identifiers', () => {
  const { findings, templates, queries, copies, used } = scan();
  assert.equal(findings, [], `SQL built from data:\n${findings.map((f) => `  ${f.file.startsWith('dev/') ? '' : 'src/'}${f.file}:${f.line} ${f.why}`).join('\n')}`);
  console.log(`${files.length} files: ${queries} .query() calls, ${templates} SQL templates, ${copies} copyIn calls; interpolations used: ${[...used].join(', ')}`);
  assert.ok(queries > 20, `the scan found only ${queries} queries: is it looking at src/?`);
});

test('the column-list and index constants that reach SQL are plain identifiers', () => {
  for (const name of ['POLLER_INDEX', 'EVENT_COLUMNS', 'REJECTION_COLUMNS', 'ACCOUNT_STAGING_COLUMNS']) {
    const v = constants.get(name);
    if (v === undefined) continue; // a file being rewritten elsewhere; the scan above still guards its use
    assert.match(v.replace(/\s+/g, ' ').trim(), /^[a-z_][a-z0-9_]*( ?, ?[a-z_][a-z0-9_]*)*$/, `${name} = ${JSON.stringify(v)}`);
  }
});

test('the scanner catches what it is meant to catch', () => {
  const sample = [
    'const a = await client.query(`SELECT * FROM events WHERE account_id = \'${id}\'`);',
    "const b = await client.query('DELETE FROM events WHERE id = ' + id);",
    'const c = await client.query(text);',
    'const d = await client.query(\'SELECT 1 FROM unnest($1::uuid[])\', [`{${ids.join(\',\')}}`]);',
    "const e = '{' + ids.join(',') + '}';",
  ].join('\n');
  const sf = ts.createSourceFile('x.ts', sample, ts.ScriptTarget.ES2022, true);
  let hits = 0;
  const visit = (n: ts.Node): void => {
    if (ts.isTemplateExpression(n) && SQL.test(n.head.text)) hits++;
    if (ts.isBinaryExpression(n) && ts.isStringLiteral(n.left) && SQL.test(n.left.text)) hits++;
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'query' && ts.isIdentifier(n.arguments[0])) hits++;
    if (buildsArrayLiteral(n)) hits++;
    ts.forEachChild(n, visit);
  };
  visit(sf);
  assert.is(hits, 5);
});

test.run();
