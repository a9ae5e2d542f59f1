import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
      assert.match(e.message, /no loadable addon .*native\/build\/Release\/guestmem\.node.*prebuilds\/linux-x64/);
      assert.match(e.message, /npm run build:native/);
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
      return true;
    });
  });
});
