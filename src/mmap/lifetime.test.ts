import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BackendError } from '../backend/errors.js';
import { MmapBackend, PAGE_SIZE } from './index.js';
import { isMapped } from './test-support/proc.js';

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('close', () => {
  test('empties every view handed out, and guestmem access throws ERR_BACKEND_CLOSED', () => {
    const b = MmapBackend.memfd(PAGE_SIZE);
    const v = b.views();
    const raw = new Uint32Array(v.buffer, 16, 4);
    v.u8[0] = 1;
    b.close();
    assert.equal(b.closed, true);
    assert.equal(v.u8.length, 0);
    assert.equal(raw.length, 0);
    assert.equal(v.u8[0], undefined, 'reads of a detached view touch nothing');
    v.u8[0] = 5; // writes are dropped
    assert.throws(() => v.dv.getUint8(0), TypeError);
    assert.throws(() => b.views(), (e) => e instanceof BackendError && e.code === 'ERR_BACKEND_CLOSED');
    assert.throws(() => b.chunks()[0].views(), { code: 'ERR_BACKEND_CLOSED' });
    assert.throws(() => b.discard(0, PAGE_SIZE), { code: 'ERR_BACKEND_CLOSED' });
    assert.throws(() => b.share(), { code: 'ERR_BACKEND_CLOSED' });
    b.close(); // twice is fine
  });

  test('unmaps at once when nothing else holds the memory, and closes the descriptor', async () => {
    const b = MmapBackend.memfd(PAGE_SIZE);
    b.views().u8[0] = 1;
    const { address } = b;
    const fd = b.fd as number;
    b.close();
    assert.equal(b.fd, undefined);
    assert.throws(() => fstatSync(fd), { code: 'EBADF' });
    await turn();
    await turn();
    assert.equal(isMapped(address), false);
  });

  test('using disposes', async () => {
    let address: bigint;
    let views;
    {
      using b = MmapBackend.anonymous(PAGE_SIZE);
      address = b.address;
      views = b.views();
    }
    assert.equal(views.u8.length, 0);
    await turn();
    await turn();
    assert.equal(isMapped(address), false);
  });

  test('a view of another backend of the same memory stays valid', () => {
    const b = MmapBackend.anonymous(PAGE_SIZE);
    using other = MmapBackend.fromShared(b.share());
    const mine = b.views().u8;
    const theirs = other.views().u8;
    mine[1] = 9;
    b.close();
    assert.equal(mine.length, 0);
    assert.equal(theirs[1], 9);
    assert.equal(isMapped(other.address), true);
  });
});

describe('nothing crashes', () => {
  test('close, GC and worker exit in the orders that crash a naive addon', (t) => {
    const child = fileURLToPath(new URL('./test-support/lifetime-child.js', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', child], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const checks = JSON.parse(r.stdout) as Record<string, boolean>;
    t.diagnostic(JSON.stringify(checks));
    for (const [name, ok] of Object.entries(checks)) assert.equal(ok, true, name);
    assert.equal(Object.keys(checks).length, 10);
  });
});
