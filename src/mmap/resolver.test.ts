import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { GuestAddress } from '../address/address.js';
import { sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { type GuestMemoryDescription, rebuildGuestMemory, shareGuestMemory } from '../memory/share.js';
import { GuestMemoryRegion } from '../region/region.js';
import { type ExchangePlan, type ExchangeReport, isDirty, layoutOf } from '../test-support/share-exchange.js';
import { MmapBackend, type MmapChunkDescription, mmapFds, mmapGuestMemory, MmapResolver, PAGE_SIZE } from './index.js';

const G = GuestAddress;
const CHUNK = 16 * PAGE_SIZE;

/** A region per chunk of `backend`, `gap` bytes apart from `start` on, each with a shared bitmap when `track`. */
function regionsOf(backend: MmapBackend, start: number, gap: number, track: boolean): GuestMemoryRegion[] {
  return backend
    .chunks()
    .map(
      (c, i) =>
        new GuestMemoryRegion(G(start + i * (c.size + gap)), c, { bitmap: track ? new AtomicBitmap(c.size, { shared: true }) : undefined }),
    );
}

type Reply = ExchangeReport & { mappings: number };

/**
 * Writes a value into each writable region, lets the other side read it (and the first word of
 * each read-only region) and write values of its own, then checks both directions.
 */
async function checkExchange(mem: GuestMemory, run: (plan: ExchangePlan) => Promise<Reply> | Reply, tracked: boolean): Promise<Reply> {
  const writable = mem.regions().filter((r) => !r.readOnly);
  const theirs = writable.map((r, i): [number, number] => [r.end - 4, 0xbeef0000 + i]);
  writable.forEach((r, i) => mem.writeU32LE(G(r.start + 8), 0x1000 + i));
  const read = mem.regions().map((r) => r.start + (r.readOnly ? 0 : 8));
  const expected = read.map((a) => mem.readU32LE(G(a)));
  const report = await run({ read, write: theirs });
  assert.deepEqual(report.layout, layoutOf(mem), 'the same layout, read-only regions included');
  assert.deepEqual(report.seen, expected, 'the other side sees the owner');
  for (const [a, v] of theirs) assert.equal(mem.readU32LE(G(a)), v, 'the owner sees the other side');
  assert.deepEqual(report.dirty, mem.regions().map((r) => tracked && !r.readOnly), 'the other side sees the owner’s dirty marks');
  for (const [a] of theirs) assert.equal(isDirty(mem, a), tracked, 'and marks into the owner’s bitmaps');
  return report;
}

async function inWorker(description: GuestMemoryDescription, plan: ExchangePlan): Promise<Reply> {
  const worker = new Worker(new URL('./test-support/memory-worker.js', import.meta.url), { workerData: { description, plan } });
  const [reply] = await once(worker, 'message');
  assert.deepEqual(await once(worker, 'exit'), [0]);
  return reply;
}

describe('sharing mmap’d guest memory with a worker', () => {
  test('chunks of a memfd, anonymous memory and a SharedArrayBuffer, with shared bitmaps', async () => {
    using memfd = MmapBackend.memfd(4 * CHUNK, { chunkSize: CHUNK });
    using anon = MmapBackend.anonymous(CHUNK);
    const mem = GuestMemory.fromRegions([
      ...regionsOf(memfd, 0, PAGE_SIZE, true),
      new GuestMemoryRegion(G(0x100000), anon, { bitmap: new AtomicBitmap(CHUNK, { shared: true }) }),
      new GuestMemoryRegion(G(0x200000), sharedBackend(CHUNK), { bitmap: new AtomicBitmap(CHUNK, { shared: true }) }),
    ]);
    const description = shareGuestMemory(mem);
    assert.deepEqual(
      description.backends.map((b) => b.kind),
      ['mmap-chunk', 'mmap-chunk', 'mmap-chunk', 'mmap-chunk', 'mmap', 'shared-array-buffer'],
    );
    const reply = await checkExchange(mem, (plan) => inWorker(description, plan), true);
    assert.equal(reply.mappings, 2, 'the four chunks rebuilt as chunks of one mapping');
  });

  test('the rebuilt memory is the same mapping; closing the resolver closes it, not the owner', () => {
    using memfd = MmapBackend.memfd(2 * CHUNK, { chunkSize: CHUNK });
    const mem = GuestMemory.fromRegions(regionsOf(memfd, 0x10000, 0, false));
    const mmap = new MmapResolver();
    const copy = rebuildGuestMemory(JSON.parse(JSON.stringify(shareGuestMemory(mem))), { resolvers: mmap.resolvers });
    const [backend] = mmap.backends();
    assert.equal(backend.address, memfd.address, 'one mapping, at one address');
    assert.equal(copy.regions()[1].backend, backend.chunks()[1]);
    mmap.close();
    assert.equal(backend.closed, true);
    assert.throws(() => copy.readU32LE(G(0x10000)), { name: 'BackendError', code: 'ERR_BACKEND_CLOSED' });
    mem.writeU32LE(G(0x10000), 1);
    assert.equal(mem.readU32LE(G(0x10000)), 1, 'the owner’s memory lives on');
  });
});

describe('sharing mmap’d guest memory with another process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-share-memory-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const child = fileURLToPath(new URL('./test-support/memory-child.js', import.meta.url));

  /** Runs memory-child.js with the owner's descriptors inherited from fd 3 on and the description as JSON. */
  function inChild(description: GuestMemoryDescription, plan: ExchangePlan): Reply {
    const owned = mmapFds(description);
    const fds = Object.fromEntries(owned.map((fd, i) => [fd, 3 + i]));
    const r = spawnSync(process.execPath, [child, JSON.stringify({ description, fds, plan })], {
      stdio: ['ignore', 'pipe', 'pipe', ...owned],
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  test('a chunked memfd and a shared file at an offset, bitmaps in a memfd: the child sees and makes writes and marks', async () => {
    using memfd = MmapBackend.memfd(2 * CHUNK, { chunkSize: CHUNK });
    const path = join(dir, 'ram');
    writeFileSync(path, new Uint8Array(4 * PAGE_SIZE));
    using file = MmapBackend.file({ path, offset: PAGE_SIZE, size: 2 * PAGE_SIZE });
    using words = MmapBackend.memfd(PAGE_SIZE);
    const romPath = join(dir, 'rom');
    writeFileSync(romPath, new Uint8Array(PAGE_SIZE).fill(0xc3));
    using rom = MmapBackend.file({ path: romPath, size: PAGE_SIZE, readOnly: true });
    const mem = mmapGuestMemory([[G(0), memfd], [G(0x80000), file], [G(0xf0000), rom]], { bitmap: { words } });
    const description = shareGuestMemory(mem);
    assert.deepEqual(mmapFds(description), [memfd.fd, words.fd, file.fd, rom.fd], 'each descriptor once, in order of appearance');
    const reply = await checkExchange(mem, (plan) => inChild(description, plan), true);
    assert.equal(reply.mappings, 4);
    assert.equal(reply.seen.at(-1), 0xc3c3c3c3, 'the child reads the read-only file');
    assert.equal(readFileSync(path).readUInt32LE(PAGE_SIZE + 2 * PAGE_SIZE - 4), 0xbeef0002, 'the child’s write reached the file');
  });

  test('memory the child cannot reach is refused with a typed error', () => {
    using anon = MmapBackend.anonymous(PAGE_SIZE, { shared: true });
    using memfd = MmapBackend.memfd(PAGE_SIZE);
    const anonymous = shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), anon)]));
    assert.throws(() => rebuildGuestMemory(anonymous, { resolvers: new MmapResolver({ fds: {} }).resolvers }), {
      name: 'MmapError',
      code: 'ERR_MMAP_NOT_SHAREABLE',
      message: /no descriptor/,
    });
    const d = shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), memfd)]));
    assert.throws(() => rebuildGuestMemory(d, { resolvers: new MmapResolver({ fds: { 999: 3 } }).resolvers }), {
      code: 'ERR_MMAP_NOT_SHAREABLE',
      message: new RegExp(`fd ${memfd.fd} is not among`),
    });
  });
});

describe('mmap sharing errors', () => {
  test('a closed mapping cannot be shared; the region is named', () => {
    const b = MmapBackend.anonymous(PAGE_SIZE);
    const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0x4000), b)]);
    b.close();
    assert.throws(
      () => shareGuestMemory(mem),
      (e: Error & { code: string; cause: { code: string } }) =>
        e.code === 'ERR_REGION_NOT_SHAREABLE' && /0x4000/.test(e.message) && e.cause.code === 'ERR_BACKEND_CLOSED',
    );
  });

  test('a chunk the mapping does not have, and mapping descriptions that are not ones', () => {
    using b = MmapBackend.anonymous(2 * CHUNK, { chunkSize: CHUNK });
    using mmap = new MmapResolver();
    const chunk = b.chunks()[1].share();
    const resolve = mmap.resolvers['mmap-chunk'];
    assert.equal(resolve(chunk), mmap.backends()[0].chunks()[1]);
    const wrong: MmapChunkDescription[] = [
      { ...chunk, offset: PAGE_SIZE },
      { ...chunk, size: PAGE_SIZE },
    ];
    for (const d of wrong) assert.throws(() => resolve(d), { name: 'MmapError', code: 'ERR_MMAP_INVALID_ARGUMENT' });
    assert.throws(() => resolve({ kind: 'mmap-chunk' } as never), { code: 'ERR_MMAP_INVALID_ARGUMENT' });
    assert.throws(() => mmap.resolvers.mmap({ kind: 'mmap' }), { code: 'ERR_MMAP_INVALID_ARGUMENT' });
  });

  test('a rebuild that fails half-way leaves its mappings with the resolver, which closes them', () => {
    using b = MmapBackend.anonymous(PAGE_SIZE);
    const d = shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), b)]));
    const overlapping = { ...d, regions: [d.regions[0], { ...d.regions[0], start: PAGE_SIZE / 2 }] };
    const mmap = new MmapResolver();
    assert.throws(() => rebuildGuestMemory(overlapping, { resolvers: mmap.resolvers }), { code: 'ERR_REGION_OVERLAP' });
    const [opened] = mmap.backends();
    assert.equal(opened.closed, false);
    mmap.close();
    assert.equal(opened.closed, true);
    assert.deepEqual(mmap.backends(), []);
  });
});
