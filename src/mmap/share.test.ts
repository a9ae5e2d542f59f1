import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MmapBackend, type MmapSharedDescription, PAGE_SIZE } from './index.js';

const ROUNDS = 200_000;

/** Shares `b` with a worker: each side sees the other's writes and counts on one word. */
async function withWorker(b: MmapBackend): Promise<void> {
  const { u8, i32 } = b.views();
  u8.set([1, 2, 3, 4, 5, 6, 7, 8]);
  const description = b.share();
  const worker = new Worker(new URL('./test-support/share-worker.js', import.meta.url), {
    workerData: { description, rounds: ROUNDS },
  });
  const reply = once(worker, 'message');
  const exit = once(worker, 'exit');
  const deadline = Date.now() + 10_000;
  while (Atomics.load(i32, 4) === 0 && Date.now() < deadline); // the worker is ready
  Atomics.store(i32, 5, 1);
  for (let i = 0; i < ROUNDS; i++) Atomics.add(i32, 6, 1);
  const [{ seen, address }] = await reply;
  assert.deepEqual(await exit, [0]);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8], 'the worker sees the owner');
  assert.deepEqual(Array.from(u8.subarray(8, 12)), [9, 8, 7, 6], 'the owner sees the worker');
  assert.equal(i32[6], 2 * ROUNDS, 'Atomics.add from both threads lost nothing');
  assert.equal(address, b.address, 'one mapping, at one address');
}

describe('sharing with a worker thread', () => {
  test('anonymous private memory (threads share an address space)', async () => {
    using b = MmapBackend.anonymous(1 << 20);
    await withWorker(b);
  });

  test('a memfd', async () => {
    using b = MmapBackend.memfd(1 << 20);
    await withWorker(b);
  });

  test('the description survives structured cloning and JSON', () => {
    using b = MmapBackend.memfd(PAGE_SIZE);
    const d = b.share();
    assert.deepEqual(structuredClone(d), d);
    using again = MmapBackend.fromShared(JSON.parse(JSON.stringify(d)));
    assert.equal(again.address, b.address);
    assert.deepEqual(again.file, b.file);
    assert.equal(again.fd, undefined, 'a rebuilt backend owns no descriptor');
  });

  test('each rebuilt backend is an owner: the memory stays until the last one closes', () => {
    const b = MmapBackend.anonymous(PAGE_SIZE);
    const d = b.share();
    const other = MmapBackend.fromShared(d);
    b.views().u8[0] = 42;
    b.close();
    assert.equal(other.views().u8[0], 42);
    using third = MmapBackend.fromShared(d);
    other.close();
    assert.equal(third.views().u8[0], 42);
  });

  test('once every owner closed, the description is dead', () => {
    const b = MmapBackend.anonymous(PAGE_SIZE);
    const d = b.share();
    b.close();
    assert.throws(() => MmapBackend.fromShared(d), { name: 'BackendError', code: 'ERR_BACKEND_CLOSED' });
    assert.throws(() => b.share(), { code: 'ERR_BACKEND_CLOSED' });
  });

  test('forged or foreign descriptions are refused', () => {
    using b = MmapBackend.anonymous(2 * PAGE_SIZE);
    const d = b.share();
    assert.throws(() => MmapBackend.fromShared({ ...d, process: d.process + 1 }), { code: 'ERR_MMAP_NOT_SHAREABLE' });
    assert.throws(() => MmapBackend.fromShared({ ...d, size: PAGE_SIZE }), { code: 'ERR_MMAP_NOT_SHAREABLE' });
    assert.throws(() => MmapBackend.fromShared({ ...d, id: 2 ** 40 }), { code: 'ERR_BACKEND_CLOSED' });
    const bad: unknown[] = [
      null,
      {},
      { ...d, type: 'other' },
      { ...d, source: 'heap' },
      { ...d, size: -1 },
      { ...d, chunkSize: 0 },
      { ...d, chunkSize: 100 },
      { ...d, pageSize: 3 * PAGE_SIZE },
      { ...d, readOnly: 'no' },
      { ...d, dev: '1x' },
    ];
    for (const x of bad) {
      assert.throws(() => MmapBackend.fromShared(x as MmapSharedDescription), { code: 'ERR_MMAP_INVALID_ARGUMENT' });
    }
  });
});

describe('sharing with another process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-share-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const child = fileURLToPath(new URL('./test-support/share-child.js', import.meta.url));

  /** Runs share-child.js with `fd` inherited as its fd 3. */
  function runChild(description: MmapSharedDescription, fd: number): Record<string, unknown> {
    const r = spawnSync(process.execPath, [child, JSON.stringify(description)], {
      stdio: ['ignore', 'pipe', 'pipe', fd],
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  test('a child maps the memfd it inherited and shares the writes both ways', () => {
    using b = MmapBackend.memfd(1 << 20);
    const u8 = b.views().u8;
    u8.set([11, 12, 13, 14, 15, 16, 17, 18]);
    const reply = runChild(b.share(), b.fd as number);
    assert.deepEqual(reply.seen, [11, 12, 13, 14, 15, 16, 17, 18]);
    assert.deepEqual(Array.from(u8.subarray(8, 12)), [1, 2, 3, 4]);
    assert.equal(reply.source, 'memfd');
    assert.equal(reply.size, 1 << 20);
    assert.notEqual(reply.fd, undefined, 'the child owns a duplicate');
  });

  test('a shared file mapping at an offset', () => {
    const path = join(dir, 'ram');
    writeFileSync(path, new Uint8Array(4 * PAGE_SIZE).fill(0x33));
    using b = MmapBackend.file({ path, offset: PAGE_SIZE, size: 2 * PAGE_SIZE });
    b.views().u8[0] = 0x44;
    const reply = runChild(b.share(), b.fd as number);
    assert.deepEqual(reply.seen, [0x44, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
    assert.deepEqual(Array.from(b.views().u8.subarray(8, 12)), [1, 2, 3, 4]);
  });

  test('memory another process cannot see is refused', () => {
    using anon = MmapBackend.anonymous(PAGE_SIZE, { shared: true });
    assert.throws(() => MmapBackend.fromShared(anon.share(), { fd: 0 }), { code: 'ERR_MMAP_NOT_SHAREABLE' });
    const path = join(dir, 'private');
    writeFileSync(path, new Uint8Array(PAGE_SIZE));
    using priv = MmapBackend.file({ path, size: PAGE_SIZE, shared: false });
    assert.throws(() => MmapBackend.fromShared(priv.share(), { fd: priv.fd }), { code: 'ERR_MMAP_NOT_SHAREABLE' });
  });
});
