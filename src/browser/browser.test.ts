/**
 * guestmem in a real browser: Debian's headless chromium loads the compiled package as native ES
 * modules (an import map from package.json's `browser` conditions; no bundler) and runs
 * test-support/page.ts, once on a cross-origin-isolated page and once on an ordinary one.
 * Skips, saying why, where there is no chromium.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findChromium, openPage } from './test-support/chromium.js';
import { servePages } from './test-support/server.js';

const chromium = findChromium();
const skip = 'missing' in chromium ? chromium.missing : false;

/** Opens `page` (served with `options`) in chromium and returns what it reported. */
async function report(options: Parameters<typeof servePages>[0], page = '/'): Promise<Record<string, any>> {
  const server = await servePages(options);
  const browser = openPage((chromium as { path: string }).path, `${server.origin}${page}`);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the page reported nothing in 90 s; chromium said:\n${browser.output()}`)), 90_000);
    });
    const result = (await Promise.race([server.nextResult(), timeout])) as Record<string, any>;
    assert.equal(result.loadError, undefined, 'the page loaded');
    assert.equal(result.error, undefined, 'the page ran');
    return result;
  } finally {
    clearTimeout(timer);
    await browser.close();
    await server.close();
  }
}

const runPage = (isolated: boolean) => report({ pages: { '/': 'src/browser/test-support/page.html' }, isolated });

/** What both pages must show: nothing here needs SharedArrayBuffer. */
function assertCore(r: Record<string, any>): void {
  const m = r.multiRegion;
  assert.equal(m.memory, 'GuestMemory([0x0, 0x8000), [0x8000, 0x10000), [0x11000, 0x21000))');
  assert.equal(m.straddling, '0x66554433');
  assert.equal(m.f64be, Math.PI);
  assert.equal(m.i16le, -2);
  assert.deepEqual(m.struct, { addr: 0x11400, len: 512, flags: 1, next: 1 });
  assert.equal(m.partialAtHole, 16);
  assert.equal(m.exactAtHole, 'ERR_GUEST_ADDRESS_INVALID');
  assert.deepEqual(m.dirty, [
    ['0x7000', '0x2000'],
    ['0x11000', '0x1000'],
  ]);
  assert.deepEqual(m.dirtyAfterHarvest, []);
  const v = r.virtqueue;
  assert.deepEqual(v.used, [{ id: v.head, len: 'pong to "ping from the driver"'.length }]);
  assert.equal(v.reply, 'pong to "ping from the driver"');
}

describe('guestmem in headless chromium', () => {
  test('a cross-origin-isolated page: regions, typed access, dirty tracking, a virtqueue, and memory shared with a worker', { skip }, async () => {
    const r = await runPage(true);
    assert.equal(r.isolated, true);
    assert.equal(r.sharedArrayBuffer, 'function');
    assertCore(r);
    assert.match(r.shared.worker, /^rebuilt GuestMemory\(\[0x100000, 0x140000\)\), read 0xc0ffee$/);
    assert.equal(r.shared.seen, '0x55667788', "the page reads the worker's write");
    assert.deepEqual(r.shared.dirty, [
      ['0x120000', '0x1000'],
      ['0x130000', '0x3000'],
    ], "the page harvests the pages the worker dirtied");
  });

  test('an ordinary page: everything but shared memory works, which is a typed error naming the headers', { skip }, async () => {
    const r = await runPage(false);
    assert.equal(r.isolated, false);
    assert.equal(r.sharedArrayBuffer, 'undefined');
    assertCore(r);
    for (const [what, name] of [['backend', 'BackendError'], ['bitmap', 'BitmapError']] as const) {
      const e = r.refused[what];
      assert.equal(e.typed, true, what);
      assert.equal(e.name, name);
      assert.equal(e.code, 'ERR_SHARED_MEMORY_UNAVAILABLE');
      assert.match(e.message, /Cross-Origin-Opener-Policy: same-origin/);
      assert.match(e.message, /Cross-Origin-Embedder-Policy: require-corp/);
    }
  });
});

describe('the browser demo (npm run demo:browser)', () => {
  test('draws the memory map and harvests dirty pages frame after frame', { skip }, async () => {
    const r = await report({ pages: { '/': 'examples/browser/index.html' }, dirs: ['dist', 'examples/browser'], isolated: true }, '/?selftest');
    assert.equal(r.frames, 30);
    assert.equal(r.regions, 5, 'three regions and the two holes between them');
    assert.ok(r.dirtyPages >= 30 * 6, `${r.dirtyPages} dirty pages harvested in 30 frames`);
    assert.ok(r.lit > 0);
  });
});
