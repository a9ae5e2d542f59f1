/**
 * guestmem/migrate: a source process whose workers keep writing memory through three write paths
 * migrates it over loopback TCP to this process; connections killed in each phase, layouts that
 * differ, corrupted and hostile frames, and bad options, each with its typed error.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { MigrateError, MigrationReceiver, type ReceiveProgress, sendMigration, type SendProgress } from './index.js';
import { duplexPair } from './test-support/pair.js';
import type { SenderPlan, SenderReport } from './test-support/sender-process.js';
import { ChunkHashes } from './layout.js';
import { FrameType, frame, rangeFixed, writeU64 } from './wire.js';

const G = GuestAddress;
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-migrate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Tracked heap memory over `[start, length]` regions. */
function memory(...ranges: [number, number][]): GuestMemory {
  return GuestMemory.fromRegions(ranges.map(([s, n]) => new GuestMemoryRegion(G(s), heapBackend(n), { bitmap: new AtomicBitmap(n) })));
}

/** The source's memory layout (test-support/sender-process.ts): two adjacent 16 MiB regions. */
const SOURCE: [number, number][] = [
  [0, 16 << 20],
  [16 << 20, 16 << 20],
];

/** Runs the source process against a receiver here; resolves with both sides' outcome. */
async function twoProcesses(plan: Omit<SenderPlan, 'port' | 'dump'>, dest = memory(...SOURCE)) {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const dump = join(dir, `source-${plan.kill ?? 'full'}.bin`);
  const received: ReceiveProgress[] = [];
  const incoming = new Promise<{ receiver: MigrationReceiver; outcome: Promise<unknown>; socket: Socket }>((resolve) =>
    server.once('connection', (socket) => {
      socket.on('error', () => {});
      const receiver = new MigrationReceiver(dest, socket, { onProgress: (p) => received.push(p) });
      resolve({ receiver, outcome: receiver.done.then(() => undefined, (e: unknown) => e), socket });
    }),
  );
  const child = fork(new URL('./test-support/sender-process.js', import.meta.url), [JSON.stringify({ ...plan, port, dump })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const report = await new Promise<SenderReport>((resolve, reject) => {
    child.once('message', (m) => resolve(m as SenderReport));
    child.once('exit', (code) => reject(new Error(`the source process exited with ${code} before reporting`)));
  });
  clearTimeout(timer);
  const { receiver, outcome, socket } = await incoming;
  socket.destroy(); // as a real destination would once the source is done with it
  const error = await outcome;
  server.close();
  return { report, receiver, error, dest, source: readFileSync(dump), received };
}

/** Pages of `dest` that differ from `source` (the bytes of the same layout, back to back). */
function differingPages(dest: GuestMemory, source: Uint8Array): number {
  const mine = new Uint8Array(dest.totalSize);
  dest.readSlice(G(0), mine);
  let n = 0;
  for (let at = 0; at < mine.length; at += PAGE) if (Buffer.compare(mine.subarray(at, at + PAGE), source.subarray(at, at + PAGE)) !== 0) n++;
  return n;
}

describe('migration between two processes over loopback TCP', () => {
  test('the destination equals the source byte for byte while writers dirty it through typed writes, virtio-blk requests and slice views', async (t) => {
    // No downtime budget: dirty rounds go on (up to 8) while the writers write.
    const { report, receiver, error, dest, source, received } = await twoProcesses({ downtimeMs: 0, maxRounds: 8, bandwidthLimit: 64 << 20, warmupMs: 100 });
    const differing = differingPages(dest, source);
    assert.equal(differing, 0, `pages that differ between source and destination; the source: ${JSON.stringify(report).slice(0, 200)}`);
    assert.ok(report.ok, `the source failed: ${JSON.stringify(report)}; the receiver: ${String(error)}`);
    assert.equal(error, undefined);
    const { result, writes, progress } = report;
    t.diagnostic(
      `rounds ${result.rounds}, pages sent ${result.pagesSent} (${result.zeroPages} zero), final round ${result.finalPages} pages, ` +
        `downtime ${result.downtimeMs.toFixed(1)} ms, total ${result.totalMs.toFixed(0)} ms; writes ${JSON.stringify(writes)}`,
    );
    assert.equal(receiver.state, 'complete');
    for (const path of ['bytes', 'blk', 'view']) assert.ok(writes[path] > 0, `the ${path} writer wrote during the migration`);
    assert.ok(result.rounds >= 3, `dirty rounds ran while the writers wrote: ${result.rounds} rounds`);
    assert.deepEqual(progress.map((p) => p.round), Array.from({ length: result.rounds }, (_, i) => i));
    assert.equal(progress[0].phase, 'first');
    assert.equal(progress.at(-1)?.phase, 'final');
    assert.ok(progress.every((p) => p.mbPerSecond > 0 && p.dirtyPagesLeft >= 0));
    assert.equal(progress[0].pagesSent, (32 << 20) / PAGE, 'the first pass sends every page');
    assert.deepEqual(received.map((p) => p.round), progress.map((p) => p.round));
    assert.equal(received.at(-1)?.pagesReceived, result.pagesSent);
  });

  for (const kill of ['layout', 'first', 'dirty', 'final'] as const) {
    test(`a connection killed in the ${kill} phase is ERR_MIGRATE_CLOSED on both sides and leaves the receiver incomplete`, async () => {
      const { report, receiver, error } = await twoProcesses({ kill, downtimeMs: 0, maxRounds: 3, bandwidthLimit: 64 << 20, warmupMs: 50 });
      assert.equal(report.ok, false, 'the source failed');
      assert.equal((report as { code: string }).code, 'ERR_MIGRATE_CLOSED', JSON.stringify(report));
      assert.ok(error instanceof MigrateError);
      assert.equal(error.code, 'ERR_MIGRATE_CLOSED');
      assert.equal(receiver.state, kill === 'layout' ? 'waiting' : 'incomplete');
    });
  }
});

/** Migrates `src` into `dst` in-process; `tamper` may change the sender's bytes on the way. */
async function inProcess(src: GuestMemory, dst: GuestMemory, tamper?: (chunk: Buffer, offset: number) => Buffer, options = {}) {
  const [a, b] = duplexPair(tamper);
  const receiver = new MigrationReceiver(dst, b);
  const [sent, got] = await Promise.allSettled([sendMigration(src, a, options), receiver.done]);
  return { sent, got, receiver };
}

function codeOf(r: PromiseSettledResult<unknown>): string | undefined {
  return r.status === 'rejected' ? (r.reason as MigrateError).code : undefined;
}

describe('migration in one process', () => {
  test('regions of any whole-page size, adjacent or apart, data and zero pages: the receiver ends equal', async () => {
    const layout: [number, number][] = [
      [0, 0x3000],
      [0x3000, 0x11000],
      [0x100000000, 0x21000],
    ];
    const src = memory(...layout);
    for (let a = 0; a < 0x14000; a += 0x1800) src.writeU32LE(G(a), a + 1);
    src.writeU32LE(G(0x100020ffc), 0xfeedface);
    const dst = memory(...layout);
    dst.fill(G(0x1000), 0x1000, 0xee); // a page the sender sends as zeros
    const { sent, got, receiver } = await inProcess(src, dst);
    assert.equal(sent.status, 'fulfilled');
    assert.equal(got.status, 'fulfilled');
    assert.equal(receiver.state, 'complete');
    for (const [start, length] of layout) {
      const a = new Uint8Array(length);
      const b = new Uint8Array(length);
      src.readSlice(G(start), a);
      dst.readSlice(G(start), b);
      assert.deepEqual(b, a, `region at ${start}`);
    }
  });
});

describe('migration refusals', () => {
  const filled = (mem: GuestMemory, byte: number) => {
    for (const r of mem.regions()) mem.fill(G(r.start), r.length, byte);
    return mem;
  };

  test('a receiver whose layout differs refuses it before writing a byte: ERR_MIGRATE_LAYOUT on both sides', async () => {
    const src = filled(memory([0, 0x10000]), 7);
    for (const layout of [[[0, 0x8000]], [[0x1000, 0x10000]], [[0, 0x8000], [0x8000, 0x8000]]] as [number, number][][]) {
      const dst = filled(memory(...layout), 0xaa);
      const { sent, got, receiver } = await inProcess(src, dst);
      assert.equal(codeOf(sent), 'ERR_MIGRATE_LAYOUT');
      assert.equal(codeOf(got), 'ERR_MIGRATE_LAYOUT');
      assert.equal(receiver.state, 'refused');
      const bytes = new Uint8Array(dst.totalSize);
      dst.readSlice(G(layout[0][0]), bytes);
      assert.ok(bytes.every((x) => x === 0xaa), 'the receiver wrote nothing');
    }
  });

  test('a receiver with a read-only region refuses the layout', async () => {
    const src = memory([0, 0x10000]);
    const dst = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), heapBackend(0x10000), { readOnly: true })]);
    const { sent, got, receiver } = await inProcess(src, dst);
    assert.equal(codeOf(sent), 'ERR_MIGRATE_LAYOUT');
    assert.equal(codeOf(got), 'ERR_MIGRATE_LAYOUT');
    assert.equal(receiver.state, 'refused');
  });

  test("a corrupted page is caught by the checksum: ERR_MIGRATE_CHECKSUM on both sides, the receiver incomplete", async () => {
    const src = filled(memory([0, 0x40000]), 3);
    // The first PAGES frame's data starts after HELLO (8 + 36) and its header (8 + 16).
    const { sent, got, receiver } = await inProcess(src, memory([0, 0x40000]), (c, offset) => {
      const at = 44 + 24 + 100 - offset;
      if (at >= 0 && at < c.length) c[at] ^= 0x40;
      return c;
    });
    assert.equal(codeOf(got), 'ERR_MIGRATE_CHECKSUM');
    assert.equal(codeOf(sent), 'ERR_MIGRATE_CHECKSUM');
    assert.equal(receiver.state, 'incomplete');
  });

  test('a corrupted frame header is refused: ERR_MIGRATE_PROTOCOL on both sides, the receiver incomplete', async () => {
    const src = filled(memory([0, 0x40000]), 3);
    const { sent, got, receiver } = await inProcess(src, memory([0, 0x40000]), (c, offset) => {
      const at = 44 + 2 - offset; // the type byte of the first frame after HELLO
      if (at >= 0 && at < c.length) c[at] = 0x7f;
      return c;
    });
    assert.equal(codeOf(got), 'ERR_MIGRATE_PROTOCOL');
    assert.equal(codeOf(sent), 'ERR_MIGRATE_PROTOCOL');
    assert.equal(receiver.state, 'incomplete');
  });

  const hello = (regions: [number, number][]) => {
    const p = Buffer.alloc(20 + 16 * regions.length);
    p.write('GMMIGRAT', 0, 'latin1');
    p.writeUInt32LE(1, 8);
    p.writeUInt32LE(PAGE, 12);
    p.writeUInt32LE(regions.length, 16);
    regions.forEach(([s, n], i) => {
      writeU64(p, s, 20 + 16 * i);
      writeU64(p, n, 28 + 16 * i);
    });
    return frame(FrameType.HELLO, p.length, p);
  };
  const round = (r: number, pages: number) => {
    const p = Buffer.alloc(8);
    p.writeUInt32LE(r, 0);
    p.writeUInt32LE(pages, 4);
    return frame(FrameType.ROUND, 8, p);
  };
  const ok = hello([[0, 0x10000]]);
  const hostile: [string, Buffer[], 'waiting' | 'incomplete'][] = [
    ['bad magic', [Buffer.from('XXXXXXXX')], 'waiting'],
    ['an unknown frame type', [frame(9 as FrameType, 0)], 'waiting'],
    ['non-zero flags', [Buffer.from([0x47, 0x4d, 1, 1, 0, 0, 0, 0])], 'waiting'],
    ['pages before the layout', [frame(FrameType.ZERO, 16, rangeFixed(0, 1, 0))], 'waiting'],
    ['a HELLO of another version', [(() => { const h = Buffer.from(ok); h.writeUInt32LE(2, 16); return h; })()], 'waiting'],
    ['a HELLO whose region count does not match its length', [(() => { const h = Buffer.from(ok); h.writeUInt32LE(3, 24); return h; })()], 'waiting'],
    ['a region start of 2^53 or more', [(() => { const h = Buffer.from(ok); h.writeUInt32LE(0x200000, 32); return h; })()], 'waiting'],
    ['a PAGES frame longer than the most', [ok, Buffer.from([0x47, 0x4d, 2, 0, 0xff, 0xff, 0xff, 0x7f])], 'incomplete'],
    ['a PAGES frame whose length is not its pages', [ok, frame(FrameType.PAGES, 16 + 100, rangeFixed(0, 1, 0)), Buffer.alloc(100)], 'incomplete'],
    ['pages outside memory', [ok, frame(FrameType.ZERO, 16, rangeFixed(0x10000, 1, 0))], 'incomplete'],
    ['pages crossing the end of a region', [ok, frame(FrameType.ZERO, 16, rangeFixed(0xf000, 2, 0))], 'incomplete'],
    ['an unaligned page address', [ok, frame(FrameType.ZERO, 16, rangeFixed(0x800, 1, 0))], 'incomplete'],
    ['zero pages', [ok, frame(FrameType.ZERO, 16, rangeFixed(0, 0, 0))], 'incomplete'],
    ['pages of a later round', [ok, frame(FrameType.ZERO, 16, rangeFixed(0, 1, 1))], 'incomplete'],
    ['a round that ends out of order', [ok, round(1, 0)], 'incomplete'],
    ['a round whose page count differs', [ok, round(0, 1)], 'incomplete'],
    ['DONE after the wrong number of rounds', [ok, round(0, 0), frame(FrameType.DONE, 40, Buffer.alloc(40))], 'incomplete'],
    ['a second HELLO', [ok, ok], 'incomplete'],
    ['a RESULT from the sender', [ok, frame(FrameType.RESULT, 4, Buffer.alloc(4))], 'incomplete'],
    ['a HELLO without its magic', [(() => { const h = Buffer.from(ok); h.write('XX', 8, 'latin1'); return h; })()], 'waiting'],
    ['a HELLO of another page size', [(() => { const h = Buffer.from(ok); h.writeUInt32LE(8192, 20); return h; })()], 'waiting'],
    ['a HELLO shorter than its fixed part', [frame(FrameType.HELLO, 4, Buffer.alloc(4))], 'waiting'],
    ['a HELLO longer than the most regions', [Buffer.from([0x47, 0x4d, 1, 0, 0xff, 0xff, 0x01, 0x00])], 'waiting'],
    ['a region length of 2^53 or more', [(() => { const h = Buffer.from(ok); h.writeUInt32LE(0x200000, 40); return h; })()], 'waiting'],
    ['a ROUND before the layout', [round(0, 0)], 'waiting'],
    ['a PAGES frame shorter than its fixed part', [ok, Buffer.from([0x47, 0x4d, 2, 0, 8, 0, 0, 0])], 'incomplete'],
    ['a ZERO frame of the wrong length', [ok, frame(FrameType.ZERO, 8, Buffer.alloc(8))], 'incomplete'],
    ['a ROUND frame of the wrong length', [ok, frame(FrameType.ROUND, 4, Buffer.alloc(4))], 'incomplete'],
    ['a DONE frame of the wrong length', [ok, round(0, 0), frame(FrameType.DONE, 8, Buffer.alloc(8))], 'incomplete'],
    ['a DONE whose reserved word is not zero', [ok, round(0, 0), (() => { const d = Buffer.alloc(40); d.writeUInt32LE(1, 0); d.writeUInt32LE(1, 4); return frame(FrameType.DONE, 40, d); })()], 'incomplete'],
  ];
  test('a chunk the receiver hashes in idle time while a frame\'s pages are half written is hashed again once they are in', async () => {
    // 64 chunks of 64 KiB: the receiver hashes them 16 per event-loop turn after round 0.
    const size = 64 * 0x10000;
    const target = 20 * 0x10000;
    const expected = memory([0, size]);
    expected.fill(G(target), 0x1000, 9);
    const dst = memory([0, size]);
    const [a, b] = duplexPair();
    a.on('data', () => {});
    const receiver = new MigrationReceiver(dst, b);
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };
    a.write(hello([[0, size]]));
    a.write(frame(FrameType.ZERO, 16, rangeFixed(0, size / PAGE, 0)));
    a.write(round(0, size / PAGE)); // the receiver starts hashing
    a.write(frame(FrameType.PAGES, 16 + 0x1000, rangeFixed(target, 1, 1)));
    a.write(Buffer.alloc(0x800, 9));
    await turns(3); // chunk 20 is hashed with half of its page written
    a.write(Buffer.alloc(0x800, 9));
    a.write(round(1, 1));
    const done = Buffer.alloc(40);
    done.writeUInt32LE(2, 0);
    new ChunkHashes(expected).checksum().copy(done, 8);
    a.write(frame(FrameType.DONE, 40, done));
    await receiver.done;
    assert.equal(receiver.state, 'complete');
  });

  for (const [what, frames, state] of hostile) {
    test(`a stream with ${what} is refused with ERR_MIGRATE_PROTOCOL, nothing after it written`, async () => {
      const dst = filled(memory([0, 0x10000]), 0xaa);
      const [a, b] = duplexPair();
      a.on('data', () => {}); // the receiver's answers
      const receiver = new MigrationReceiver(dst, b);
      for (const f of frames) a.write(f);
      await assert.rejects(receiver.done, (e: MigrateError) => e instanceof MigrateError && e.code === 'ERR_MIGRATE_PROTOCOL');
      assert.equal(receiver.state, state);
      const bytes = new Uint8Array(0x10000);
      dst.readSlice(G(0), bytes);
      assert.ok(bytes.every((x) => x === 0xaa), 'no page was written');
    });
  }
});

describe('migration options and callbacks', () => {
  test('bad options are ERR_MIGRATE_INVALID_ARG before a byte is sent', async () => {
    for (const options of [{ bandwidthLimit: 0 }, { downtimeMs: -1 }, { maxRounds: Number.NaN }, { bandwidthLimit: Infinity }]) {
      const [a] = duplexPair();
      let wrote = false;
      a.on('data', () => {});
      a.once('pipe', () => (wrote = true));
      await assert.rejects(sendMigration(memory([0, 0x1000]), a, options), { code: 'ERR_MIGRATE_INVALID_ARG' });
      assert.equal(wrote, false);
    }
  });

  test('memory it cannot carry is ERR_MIGRATE_MEMORY: regions not of whole pages, not dirty-tracked, or more than 4096', async () => {
    const [a] = duplexPair();
    await assert.rejects(sendMigration(memory([0, 0x1800]), a), { code: 'ERR_MIGRATE_MEMORY' });
    const untracked = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), heapBackend(0x1000), { bitmap: { markDirty() {}, dirtyAt: () => false, sliceAt() { return this; } } })]);
    await assert.rejects(sendMigration(untracked, a), { code: 'ERR_MIGRATE_MEMORY' });
    await assert.rejects(sendMigration(GuestMemory.fromRanges([[G(0), 0x1000]]), a), { code: 'ERR_MIGRATE_MEMORY', address: 0, length: 0x1000 });
    const many = memory(...Array.from({ length: 4097 }, (_, i): [number, number] => [i * 0x2000, 0x1000]));
    await assert.rejects(sendMigration(many, a), { code: 'ERR_MIGRATE_MEMORY', length: 4097 });
    assert.throws(() => new MigrationReceiver(memory([0x800, 0x1000]), a), { code: 'ERR_MIGRATE_MEMORY' });
  });

  test('a pause callback that throws is ERR_MIGRATE_CALLBACK; the receiver sees the stream close and stays incomplete', async () => {
    const src = memory([0, 0x10000]);
    const [a, b] = duplexPair();
    const receiver = new MigrationReceiver(memory([0, 0x10000]), b);
    await assert.rejects(
      sendMigration(src, a, {
        pause: () => {
          throw new Error('vCPUs would not stop');
        },
      }),
      { code: 'ERR_MIGRATE_CALLBACK' },
    );
    a.destroy();
    await assert.rejects(receiver.done, { code: 'ERR_MIGRATE_CLOSED' });
    assert.equal(receiver.state, 'incomplete');
  });

  test('a failed migration puts back every page it took from the bitmaps', async () => {
    const src = memory([0, 0x10000], [0x20000, 0x10000]);
    src.writeU32LE(G(0x3000), 1); // dirty before the migration: taken by its first harvest
    const [a, b] = duplexPair();
    const receiver = new MigrationReceiver(memory([0, 0x10000], [0x20000, 0x10000]), b);
    receiver.done.catch(() => {});
    await assert.rejects(
      sendMigration(src, a, {
        pause: () => {
          src.writeU32LE(G(0x25000), 2); // written during the migration, never taken
          throw new Error('vCPUs would not stop');
        },
      }),
      { code: 'ERR_MIGRATE_CALLBACK' },
    );
    a.destroy();
    assert.deepEqual(src.harvestDirty(), [
      { start: 0x3000, length: PAGE },
      { start: 0x25000, length: PAGE },
    ]);
  });

  test('a bandwidth limit slows the stream to it; syncDirty runs before each harvest; progress reports each round', async () => {
    const src = memory([0, 0x100000]);
    src.fill(G(0), 0x100000, 1);
    const dst = memory([0, 0x100000]);
    let syncs = 0;
    const progress: SendProgress[] = [];
    const { sent, got, receiver } = await inProcess(src, dst, undefined, {
      bandwidthLimit: 4 << 20,
      syncDirty: () => {
        syncs++;
        src.writeU32LE(G(0x2000 * syncs), syncs); // a write the next round must carry
      },
      downtimeMs: 0,
      maxRounds: 2,
      onProgress: (p: SendProgress) => progress.push(p),
    });
    assert.equal(sent.status, 'fulfilled');
    assert.equal(got.status, 'fulfilled');
    assert.equal(receiver.state, 'complete');
    const result = (sent as PromiseFulfilledResult<Awaited<ReturnType<typeof sendMigration>>>).value;
    assert.ok(result.totalMs >= (result.bytesSent / (4 << 20)) * 1000 - 5, `${result.bytesSent} bytes took ${result.totalMs} ms at 4 MiB/s`);
    assert.deepEqual(progress.map((p) => p.phase), ['first', 'dirty', 'dirty', 'final']);
    assert.ok(syncs >= 4, `syncDirty ran before each harvest: ${syncs}`);
    for (let i = 1; i <= syncs; i++) assert.equal(dst.readU32LE(G(0x2000 * i)), src.readU32LE(G(0x2000 * i)));
  });
});
