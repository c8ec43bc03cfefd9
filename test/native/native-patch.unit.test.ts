/**
 * The postinstall patch of node-rdkafka's message conversion and delivery
 * reports (src/native/patch-node-rdkafka.cjs): after `npm ci` the installed
 * addon is the patched one, built after its sources were patched, and running
 * the script again changes nothing. The objects it builds are exercised by
 * every test that consumes from Kafka or waits for a delivery report.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { packageRoot } from '../../src/paths';

const script = path.join(packageRoot(), 'src', 'native', 'patch-node-rdkafka.cjs');
const dir = path.dirname(require.resolve('node-rdkafka/package.json'));
/** each patched file and the line its replacement starts with */
const PATCHED: Array<[string, string]> = [
  ['common.cc', '// banking-es: property names created once, message objects cloned from their shape'],
  ['callbacks.cc', '// banking-es: delivery report names created once'],
];

test('the installed node-rdkafka carries both patches, built after they were applied; the originals are kept', () => {
  const version = String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version).replace(/^v/, '');
  assert.is(version, '3.6.1', 'the patch is written for node-rdkafka 3.6.1; review it when upgrading');
  const addon = path.join(dir, 'build', 'Release', 'node-librdkafka.node');
  for (const [file, mark] of PATCHED) {
    const source = path.join(dir, 'src', file);
    assert.ok(fs.readFileSync(source, 'utf8').includes(mark), `${file} is patched`);
    assert.ok(fs.statSync(addon).mtimeMs >= fs.statSync(source).mtimeMs, `the addon was built from the patched ${file}`);
    assert.not.ok(fs.readFileSync(`${source}.orig`, 'utf8').includes(mark), `${file}.orig is the original`);
  }
});

test('running the script again finds both patches and leaves everything as it is', () => {
  const before = PATCHED.map(([file]) => fs.readFileSync(path.join(dir, 'src', file), 'utf8'));
  const out = execFileSync(process.execPath, [script], { encoding: 'utf8' });
  assert.match(out, /message conversion already patched/);
  assert.match(out, /delivery reports already patched/);
  assert.equal(PATCHED.map(([file]) => fs.readFileSync(path.join(dir, 'src', file), 'utf8')), before);
});

const scratchRoots: string[] = [];
test.after(() => { for (const root of scratchRoots) fs.rmSync(root, { recursive: true, force: true }); });

/** A scratch install: the script beside a node_modules/node-rdkafka holding `version`, `common.cc` and `callbacks.cc`. */
function scratch(version: string, common: string, callbacks: string | null, built: boolean): { pkg: string; run(): string; common(): string; callbacks(): string | null } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rdkpatch-'));
  scratchRoots.push(root);
  fs.mkdirSync(path.join(root, 'src', 'native'), { recursive: true });
  fs.copyFileSync(script, path.join(root, 'src', 'native', 'patch-node-rdkafka.cjs'));
  const pkg = path.join(root, 'node_modules', 'node-rdkafka');
  fs.mkdirSync(path.join(pkg, 'src'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'node-rdkafka', version }));
  fs.writeFileSync(path.join(pkg, 'src', 'common.cc'), common);
  if (callbacks !== null) fs.writeFileSync(path.join(pkg, 'src', 'callbacks.cc'), callbacks);
  if (built) { fs.mkdirSync(path.join(pkg, 'build')); fs.writeFileSync(path.join(pkg, 'build', 'Makefile'), 'all:\n\tfalse\n'); }
  return {
    pkg,
    run: () => execFileSync(process.execPath, [path.join(root, 'src', 'native', 'patch-node-rdkafka.cjs')], { encoding: 'utf8', env: { ...process.env, npm_config_node_gyp: '' } }),
    common: () => fs.readFileSync(path.join(pkg, 'src', 'common.cc'), 'utf8'),
    callbacks: () => (fs.existsSync(path.join(pkg, 'src', 'callbacks.cc')) ? fs.readFileSync(path.join(pkg, 'src', 'callbacks.cc'), 'utf8') : null),
  };
}

test('it never fails an install: another version, other source, no build, or a failed build leave the originals', () => {
  const common = fs.readFileSync(path.join(dir, 'src', 'common.cc.orig'), 'utf8');
  const callbacks = fs.readFileSync(path.join(dir, 'src', 'callbacks.cc.orig'), 'utf8');
  const otherCommon = common.replace('Nan::New<v8::Number>(message->offset())', 'Nan::New<v8::Number>(message->offset() + 1)');
  const otherCallbacks = callbacks.replace('Nan::New<v8::Number>(event.offset)', 'Nan::New<v8::Number>(event.offset + 1)');
  assert.is.not(otherCommon, common);
  assert.is.not(otherCallbacks, callbacks);
  // version, common.cc, callbacks.cc, a build directory (whose build fails), why each function is left as it is
  const cases: Array<[string, string, string | null, boolean, RegExp, RegExp]> = [
    ['3.7.0', common, callbacks, true, /node-rdkafka is 3\.7\.0, the patch is for 3\.6\.1/, /node-rdkafka is 3\.7\.0/],
    // each function is checked on its own: the other one is still tried (and put back when the build fails)
    ['3.6.1', otherCommon, callbacks, true, /source differs/, /the rebuild failed/],
    ['3.6.1', common, otherCallbacks, true, /the rebuild failed/, /source differs/],
    ['3.6.1', common, null, true, /the rebuild failed/, /source file src\/callbacks\.cc is missing/],
    ['3.6.1', common, callbacks, false, /not built from source here/, /not built from source here/],
    ['3.6.1', common, callbacks, true, /the rebuild failed/, /the rebuild failed/],
  ];
  for (const [version, c, cb, built, conversion, reports] of cases) {
    const s = scratch(version, c, cb, built);
    const out = s.run();
    const why = (what: string) => out.match(new RegExp(`node-rdkafka's ${what} left as it is \\((.*)\\); everything works`))?.[1] ?? `(no line for ${what}) ${out}`;
    assert.match(why('message conversion'), conversion, out);
    assert.match(why('delivery reports'), reports, out);
    assert.is(s.common(), c, 'common.cc is as it was');
    assert.is(s.callbacks(), cb, 'callbacks.cc is as it was');
  }
});

test('one function already patched: the other is still patched, and a failed build puts back only what this run changed', () => {
  const patchedCommon = fs.readFileSync(path.join(dir, 'src', 'common.cc'), 'utf8');
  const callbacks = fs.readFileSync(path.join(dir, 'src', 'callbacks.cc.orig'), 'utf8');
  const s = scratch('3.6.1', patchedCommon, callbacks, true);
  const out = s.run();
  assert.match(out, /message conversion already patched/);
  assert.match(out, /delivery reports left as it is \(the rebuild failed/);
  assert.is(s.common(), patchedCommon, 'the patched common.cc stays patched');
  assert.is(s.callbacks(), callbacks, 'callbacks.cc is as it was');
});

test('a source an earlier version of the script patched is patched again from its original', () => {
  const original = fs.readFileSync(path.join(dir, 'src', 'common.cc.orig'), 'utf8');
  const callbacks = fs.readFileSync(path.join(dir, 'src', 'callbacks.cc'), 'utf8');
  const earlier = original.replace('v8::Local<v8::Object> ToV8Object(RdKafka::Message *message,\n                                bool include_payload,', '// banking-es: property names created once (src/native/patch-node-rdkafka.cjs)\n$&');
  assert.is.not(earlier, original);
  const s = scratch('3.6.1', earlier, callbacks, true);
  fs.writeFileSync(path.join(s.pkg, 'src', 'common.cc.orig'), original);
  const out = s.run();
  assert.match(out, /message conversion carries an earlier banking-es patch; patching its original/);
  // the scratch build always fails: what this run changed is put back, which is the original, and it says so
  assert.match(out, /message conversion left as it is \(the rebuild failed/);
  assert.is(s.common(), original, 'common.cc is its original, never a half-patched mix');
  // without the original beside it, nothing is touched, and the reason is given
  const bare = scratch('3.6.1', earlier, callbacks, true);
  assert.match(bare.run(), /carries an earlier banking-es patch and its original src\/common\.cc\.orig is missing/);
  assert.is(bare.common(), earlier);
});

test.run();
