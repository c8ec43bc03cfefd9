/**
 * The postinstall patch of node-rdkafka's message conversion
 * (src/native/patch-node-rdkafka.cjs): after `npm ci` the installed addon is
 * the patched one, built after its source was patched, and running the
 * script again changes nothing. The objects it builds are exercised by every
 * test that consumes from Kafka.
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
const MARK = '// banking-es: property names created once';

test('the installed node-rdkafka carries the patch, built after it was applied; the original is kept', () => {
  const version = String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version).replace(/^v/, '');
  assert.is(version, '3.6.1', 'the patch is written for node-rdkafka 3.6.1; review it when upgrading');
  const source = path.join(dir, 'src', 'common.cc');
  assert.ok(fs.readFileSync(source, 'utf8').includes(MARK), 'common.cc is patched');
  const addon = path.join(dir, 'build', 'Release', 'node-librdkafka.node');
  assert.ok(fs.statSync(addon).mtimeMs >= fs.statSync(source).mtimeMs, 'the addon was built from the patched source');
  assert.not.ok(fs.readFileSync(`${source}.orig`, 'utf8').includes(MARK), 'common.cc.orig is the original');
});

test('running the script again finds the patch and leaves everything as it is', () => {
  const before = fs.readFileSync(path.join(dir, 'src', 'common.cc'), 'utf8');
  const out = execFileSync(process.execPath, [script], { encoding: 'utf8' });
  assert.match(out, /already patched/);
  assert.is(fs.readFileSync(path.join(dir, 'src', 'common.cc'), 'utf8'), before);
});

/** A scratch install: the script beside a node_modules/node-rdkafka holding `version` and `common.cc`. */
function scratch(version: string, common: string, built: boolean): { run(): string; common(): string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rdkpatch-'));
  fs.mkdirSync(path.join(root, 'src', 'native'), { recursive: true });
  fs.copyFileSync(script, path.join(root, 'src', 'native', 'patch-node-rdkafka.cjs'));
  const pkg = path.join(root, 'node_modules', 'node-rdkafka');
  fs.mkdirSync(path.join(pkg, 'src'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'node-rdkafka', version }));
  fs.writeFileSync(path.join(pkg, 'src', 'common.cc'), common);
  if (built) { fs.mkdirSync(path.join(pkg, 'build')); fs.writeFileSync(path.join(pkg, 'build', 'Makefile'), 'all:\n\tfalse\n'); }
  return {
    run: () => execFileSync(process.execPath, [path.join(root, 'src', 'native', 'patch-node-rdkafka.cjs')], { encoding: 'utf8', env: { ...process.env, npm_config_node_gyp: '' } }),
    common: () => fs.readFileSync(path.join(pkg, 'src', 'common.cc'), 'utf8'),
  };
}

test('it never fails an install: another version, other source, no build, or a failed build leave the original', () => {
  const original = fs.readFileSync(path.join(dir, 'src', 'common.cc.orig'), 'utf8');
  const cases: Array<[string, string, boolean, RegExp]> = [
    ['3.7.0', original, true, /node-rdkafka is 3\.7\.0, the patch is for 3\.6\.1/],
    ['3.6.1', original.replace('Nan::New<v8::Number>(message->offset())', 'Nan::New<v8::Number>(message->offset() + 1)'), true, /source differs/],
    ['3.6.1', original, false, /not built from source here/],
    ['3.6.1', original, true, /the rebuild failed/],
  ];
  for (const [version, common, built, why] of cases) {
    const s = scratch(version, common, built);
    const out = s.run();
    assert.match(out, why, out);
    assert.match(out, /left as it is/);
    assert.is(s.common(), common, 'the source is as it was');
  }
});

test.run();
