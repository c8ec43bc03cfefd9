import * as fs from 'node:fs';
import * as path from 'node:path';

let root: string | undefined;

/** The directory holding package.json, found from this file whether run from src/ (tsx) or dist/src/. */
export function packageRoot(): string {
  if (root) return root;
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = up;
  }
  root = dir;
  return dir;
}

/** Where compiled JavaScript lives (dist/), for worker and child-process entry points. */
export function distDir(): string {
  return path.join(packageRoot(), 'dist');
}
