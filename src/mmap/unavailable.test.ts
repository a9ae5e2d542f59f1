import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** A copy of the built package without an addon: dist/ (less the tests) and a package.json. */
function packageWithoutAddon(): string {
  const root = mkdtempSync(join(tmpdir(), 'guestmem-noaddon-'));
  const dist = fileURLToPath(new URL('../', import.meta.url));
  cpSync(dist, join(root, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.test.js') });
  writeFileSync(join(root, 'package.json'), '{"type": "module"}');
  return root;
}

describe('where the addon cannot be loaded', () => {
  const roots: string[] = [];
  after(() => {
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  });
  /** A fresh copy, so that its modules evaluate anew (a failed module stays failed). */
  function copy(): (path: string) => string {
    const root = packageWithoutAddon();
    roots.push(root);
    return (path) => join(root, path);
  }

  test('importing guestmem/mmap throws ERR_NATIVE_UNAVAILABLE saying why', async () => {
    const at = copy();
    await assert.rejects(import(pathToFileURL(at('dist/mmap/index.js')).href), (e: Error & { code?: string }) => {
      assert.equal(e.name, 'MmapError');
      assert.equal(e.code, 'ERR_NATIVE_UNAVAILABLE');
      assert.match(e.message, /no addon binary for linux-x64 \(looked for .*native\/build\/Release\/guestmem\.node and .*prebuilds\/linux-x64/);
      assert.match(e.message, /and none was built from source; to build it, install a C compiler, make and python3, then run `npm rebuild guestmem`/);
      assert.equal((e.cause as { code?: string }).code, 'MODULE_NOT_FOUND');
      return true;
    });
    const guestmem = await import(pathToFileURL(at('dist/index.js')).href);
    assert.equal(typeof guestmem.GuestAddress, 'function', 'the rest of guestmem still loads');
    assert.equal(guestmem.MmapBackend, undefined);
  });

  test('a binary that does not load is the cause', async () => {
    const at = copy();
    mkdirSync(at(`prebuilds/${process.platform}-${process.arch}`), { recursive: true });
    writeFileSync(at(`prebuilds/${process.platform}-${process.arch}/guestmem.node`), 'not an ELF file');
    await assert.rejects(import(pathToFileURL(at('dist/mmap/index.js')).href), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_NATIVE_UNAVAILABLE');
      assert.match(String((e.cause as Error).message), /invalid ELF header|file too short/);
      assert.match(e.message, /the addon binary does not load on this system \(.*(invalid ELF header|file too short)/);
      assert.match(e.message, /npm rebuild guestmem/);
      return true;
    });
  });
});

describe('without a C compiler', () => {
  test('the install and build succeed, and guestmem/mmap says it is unavailable and why', (t) => {
    const source = fileURLToPath(new URL('../../', import.meta.url));
    const root = mkdtempSync(join(tmpdir(), 'guestmem-nocc-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    // A clone's files (what `npm ci` builds from), with the dependencies already installed.
    for (const path of ['package.json', 'tsconfig.json', 'tsconfig.base.json', 'tsconfig.tools.json', 'src', 'examples', 'bench']) {
      cpSync(join(source, path), join(root, path), { recursive: true, filter: (p) => !p.includes('/bench/results') });
    }
    cpSync(join(source, 'native'), join(root, 'native'), { recursive: true, filter: (p) => !p.includes('/native/build') });
    symlinkSync(join(source, 'node_modules'), join(root, 'node_modules'));
    // The lifecycle scripts `npm ci` runs after installing the dependencies, the compiler hidden.
    const env = { ...process.env, CC: 'false', CXX: 'false' };
    for (const script of ['install', 'prepare']) {
      const r = spawnSync('npm', ['run', script], { cwd: root, env, encoding: 'utf8' });
      assert.equal(r.status, 0, `npm run ${script}: ${r.stderr}`);
      if (script === 'install') assert.match(r.stderr, /the native addon \(guestmem\/mmap, guestmem\/vhost-user\) is not available: there is no C compiler/);
    }
    assert.match(readFileSync(join(root, 'native/build/install-error.txt'), 'utf8'), /there is no C compiler/);
    const probe = `
      const out = {};
      try { require('./dist/mmap/index.js'); } catch (e) { out.mmap = { code: e.code, message: e.message }; }
      const { GuestMemory, GuestAddress } = require('./dist/index.js');
      const memory = GuestMemory.fromRanges([[GuestAddress(0), 4096]]);
      memory.writeU32LE(GuestAddress(8), 7);
      out.core = memory.readU32LE(GuestAddress(8)) === 7;
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--no-warnings', '-e', probe], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { mmap?: { code: string; message: string }; core: boolean };
    assert.equal(out.core, true, 'the pure-TypeScript part works');
    assert.equal(out.mmap?.code, 'ERR_NATIVE_UNAVAILABLE');
    assert.match(out.mmap.message, /building it from source at install failed: there is no C compiler/);
    assert.match(out.mmap.message, /npm rebuild guestmem/);
    // The tour (npm start) says why the memfd example cannot run and runs the rest.
    const tour = spawnSync(process.execPath, ['build/examples/tour.js'], { cwd: root, encoding: 'utf8' });
    assert.equal(tour.status, 0, tour.stderr);
    assert.match(tour.stdout, /=== 3\/6 shared-worker: .*\n\nskipped: guestmem\/mmap is unavailable: no addon binary/);
    assert.match(tour.stdout, /Tour done: 4 of 6 examples ran/);
  });
});
