/**
 * Where there is no SharedArrayBuffer (a web page that is not cross-origin isolated; here a Node
 * process that deletes it before loading guestmem), guestmem loads and works, and shared memory
 * is a typed error naming the headers that bring it. The browser test shows the same in chromium.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('without SharedArrayBuffer: everything loads, heap memory works, shared memory is ERR_SHARED_MEMORY_UNAVAILABLE', () => {
  const dist = new URL('../', import.meta.url).href;
  const script = `
    delete globalThis.SharedArrayBuffer;
    const g = await import('${dist}index.js');
    await import('${dist}virtio/index.js');
    const memory = g.GuestMemory.fromRegions([new g.GuestMemoryRegion(g.GuestAddress(0), g.heapBackend(0x2000), { bitmap: new g.AtomicBitmap(0x2000) })]);
    memory.writeU32LE(g.GuestAddress(0x1000), 7);
    const errors = [() => g.sharedBackend(4096), () => new g.AtomicBitmap(4096, { shared: true })].map((fn) => {
      try { fn(); return 'no error'; } catch (e) { return { name: e.name, code: e.code, message: e.message }; }
    });
    console.log(JSON.stringify({ value: memory.readU32LE(g.GuestAddress(0x1000)), dirty: memory.harvestDirty(), errors }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  assert.equal(out.value, 7);
  assert.deepEqual(out.dirty, [{ start: 0x1000, length: 0x1000 }]);
  assert.deepEqual(out.errors.map((e: { name: string }) => e.name), ['BackendError', 'BitmapError']);
  for (const e of out.errors) {
    assert.equal(e.code, 'ERR_SHARED_MEMORY_UNAVAILABLE');
    assert.match(e.message, /`Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`/);
  }
});
