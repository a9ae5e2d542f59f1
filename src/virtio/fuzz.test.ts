/**
 * A hostile driver, 100k times: random descriptor tables, indirect tables, available rings and
 * indices (biased towards almost-valid values), then pop + chain walk + every buffer builder +
 * the virtio-blk handler. Each case must end, throw nothing but a VirtioError, agree with a
 * plain model of the chain rules, and touch guest memory only inside the writable descriptors
 * (never in ROM).
 * Seeded (FUZZ_SEED, FUZZ_CASES) so that a failure replays.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { BlockDisk } from './blk-disk.js';
import { VirtioBlk } from './blk.js';
import type { DescriptorChain } from './chain.js';
import { VirtioError } from './errors.js';
import { IoVecBuffer, IoVecBufferMut, splitChain } from './iovec.js';
import { SplitQueue } from './queue.js';
import { G } from './test-support/setup.js';

const CASES = Number(process.env.FUZZ_CASES ?? 100_000);
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);

// Rings in [0, 0x1000); data in [0x1000, 0x3000); a hole; two adjacent tracked regions, the
// second read-only (ROM: the device may read it, never write it).
const REGIONS: [number, number][] = [
  [0, 0x1000],
  [0x1000, 0x2000],
  [0x4000, 0x1000],
  [0x5000, 0x1000],
];
const END = 0x6000;
const ROM = 0x5000;
const DESC = 0;
const AVAIL = 0x100;
const USED = 0x200;
const INDIRECT_AREA = 0x1000; // 64 random descriptors live here
const FILL = Uint8Array.from({ length: 0x10100 }, (_, i) => (i * 31 + 7) & 0xff);

let rng = SEED >>> 0 || 1;
function next(): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>>= 0);
}
const below = (n: number) => next() % n;
const chance = (p: number) => next() / 2 ** 32 < p;

function inMemory(addr: number, len: number): boolean {
  for (let cur = addr; cur < addr + len; ) {
    const r = REGIONS.find(([s, l]) => cur >= s && cur < s + l);
    if (r === undefined) return false;
    cur = r[0] + r[1];
  }
  return true;
}

function randomAddr(): number | bigint {
  const k = below(20);
  if (k < 14) return 0x1000 + below(0x2100); // data, sometimes into the hole
  if (k < 16) return 0x3800 + below(0x2900); // the hole, the tracked regions, past the end
  if (k === 16) return 2 ** 53 - 1 - below(64); // near the end of safe integers
  if (k === 17) return (BigInt(next()) << 32n) | BigInt(next()); // any u64
  if (k === 18) return INDIRECT_AREA + 16 * below(64);
  return below(END);
}

function randomLen(): number {
  const k = below(16);
  if (k < 11) return below(0x200);
  if (k < 13) return 16 * (1 + below(20)); // indirect-table-like
  if (k === 13) return 0;
  if (k === 14) return 0xffff_ffff - below(4);
  return below(0x3000);
}

function randomDesc(mem: GuestMemory, at: number, size: number, indirectP = 0.1): void {
  const flags = (chance(0.6) ? 1 : 0) | (chance(0.4) ? 2 : 0) | (chance(indirectP) ? 4 : 0) | (chance(0.02) ? next() & 0xfff8 : 0);
  mem.writeU64LE(G(at), randomAddr());
  mem.writeU32LE(G(at + 8), randomLen());
  mem.writeU16LE(G(at + 12), flags);
  mem.writeU16LE(G(at + 14), chance(0.9) ? below(size + 1) : next() & 0xffff);
}

type Walk = { code: string } | { descs: [number, number, boolean][] };

/** The chain rules, written plainly over the same bytes. */
function modelWalk(mem: GuestMemory, size: number, head: number): Walk {
  let table = DESC;
  let tableSize = size;
  let budget = size;
  let indirect = false;
  let sawWrite = false;
  let total = 0;
  let i = head;
  const descs: [number, number, boolean][] = [];
  for (;;) {
    if (i >= tableSize) return { code: 'ERR_DESC_INDEX' };
    if (budget === 0) return { code: 'ERR_DESC_CHAIN_TOO_LONG' };
    budget--;
    const at = table + 16 * i;
    const addr = mem.readU64LE(G(at));
    const len = mem.readU32LE(G(at + 8));
    const flags = mem.readU16LE(G(at + 12));
    if (addr >= 2n ** 53n) return { code: 'ERR_DESC_UNSAFE_ADDRESS' };
    if (addr + BigInt(len) >= 2n ** 53n) return { code: 'ERR_DESC_OVERFLOW' };
    if (!inMemory(Number(addr), len)) return { code: 'ERR_DESC_ADDRESS' };
    if (flags & 4) {
      if (indirect) return { code: 'ERR_DESC_INDIRECT_NESTED' };
      if (flags & 1) return { code: 'ERR_DESC_INDIRECT_NEXT' };
      if (len === 0 || len % 16 !== 0 || len / 16 > size) return { code: 'ERR_DESC_INDIRECT_LENGTH' };
      table = Number(addr);
      tableSize = budget = len / 16;
      indirect = true;
      i = 0;
      continue;
    }
    const w = (flags & 2) !== 0;
    if (!w && sawWrite) return { code: 'ERR_DESC_READ_AFTER_WRITE' };
    sawWrite ||= w;
    total += len;
    if (total > 0xffff_ffff) return { code: 'ERR_IOVEC_OVERFLOW' };
    descs.push([Number(addr), len, w]);
    if (!(flags & 1)) return { descs };
    i = mem.readU16LE(G(at + 14));
  }
}

/** A disk in a byte array that fails the test if asked for bytes outside it. */
function memDisk(size: number): BlockDisk {
  const bytes = new Uint8Array(size);
  const inside = (pos: number, len: number) => assert.ok(pos >= 0 && pos + len <= size, `disk access [${pos}, +${len})`);
  return {
    size,
    readOnly: false,
    read(dst, offset, length, position) {
      inside(position, length);
      dst.writeAllAt(offset, bytes.subarray(position, position + length));
    },
    write(src, offset, length, position) {
      inside(position, length);
      src.readExactAt(offset, bytes.subarray(position, position + length));
    },
    flush() {},
    discard: inside,
    writeZeroes(position, length) {
      inside(position, length);
      bytes.fill(0, position, position + length);
    },
  };
}

/** The whole address space as one array (holes read as 0). */
function snapshot(mem: GuestMemory): Buffer {
  const out = Buffer.alloc(END);
  for (const [s, l] of REGIONS) mem.readSlice(G(s), out.subarray(s, s + l));
  return out;
}

test(`a hostile driver: ${CASES} random rings and tables end in typed errors or the model's chains`, () => {
  const bitmaps = REGIONS.map(([, l]) => new AtomicBitmap(l));
  const mem = GuestMemory.fromRegions(
    REGIONS.map(([s, l], i) => new GuestMemoryRegion(G(s), heapBackend(l), { bitmap: bitmaps[i], readOnly: s === ROM })),
  );
  const blk = new VirtioBlk(memDisk(64 * 512), { maxDiscardSegments: 4 });
  const codes = new Map<string, number>();
  const count = (c: string) => codes.set(c, (codes.get(c) ?? 0) + 1);
  let chains = 0;
  const isTyped = (err: unknown) => {
    if (!(err instanceof VirtioError)) throw err;
    count(err.code);
    return err;
  };

  for (let n = 0; n < CASES; n++) {
    const size = 1 << below(5); // 1..16
    for (let i = 0; i < size; i++) randomDesc(mem, DESC + 16 * i, size);
    if (chance(0.3)) for (let i = 0; i < 64; i++) randomDesc(mem, INDIRECT_AREA + 16 * i, 64, 0.3);
    const lastAvail = chance(0.2) ? 0xffff - below(4) : next() & 0xffff;
    const ahead = chance(0.95) ? below(size + 1) : next() & 0xffff;
    mem.writeU16LE(G(AVAIL), below(2));
    mem.writeU16LE(G(AVAIL + 2), (lastAvail + ahead) & 0xffff);
    for (let i = 0; i < size + 1; i++) mem.writeU16LE(G(AVAIL + 4 + 2 * i), chance(0.95) ? below(size) : next() & 0xffff);
    const q = new SplitQueue(mem, { size, descTable: G(DESC), availRing: G(AVAIL), usedRing: G(USED), lastAvailIdx: lastAvail, eventIdx: chance(0.5) });

    for (let pops = 0; ; pops++) {
      // Device writes may land in the rings (a guest may aim its buffers there), so the
      // expectations come from the ring as it is now.
      assert.ok(pops < 1000, 'pop ends');
      const pending = (mem.readU16LE(G(AVAIL + 2)) - q.lastAvailIdx) & 0xffff;
      const slot = q.lastAvailIdx & (size - 1);
      const head = mem.readU16LE(G(AVAIL + 4 + 2 * slot));
      let chain: DescriptorChain | undefined;
      try {
        chain = q.pop();
      } catch (err) {
        const e = isTyped(err);
        assert.ok(e.code === 'ERR_VIRTQ_AVAIL_COUNT' ? pending > size : e.code === 'ERR_DESC_INDEX' && head >= size, e.message);
        break;
      }
      if (chain === undefined) {
        assert.equal(pending, 0);
        break;
      }
      chains++;
      const model = modelWalk(mem, size, chain.head);
      let descs: ReturnType<DescriptorChain['descriptors']>;
      try {
        descs = chain.descriptors();
      } catch (err) {
        const e = isTyped(err);
        assert.deepEqual({ code: e.code }, model, `case ${n}: the chain failed where the model did not`);
        // Each builder fails the same way (sampled: an error costs microseconds).
        if (n % 4 === 0) {
          for (const build of [() => IoVecBuffer.fromChain(chain), () => new IoVecBufferMut(8).appendChain(chain), () => splitChain(chain)]) {
            assert.throws(build, (x: unknown) => isTyped(x).code === e.code);
          }
          assert.equal(blk.handle(chain).usedLen, 0);
        }
        q.addUsed(chain.head, 0);
        continue;
      }
      assert.ok('descs' in model, `case ${n}: the model expected ${JSON.stringify(model)}`);
      assert.deepEqual(descs.map((d) => [d.addr, d.len, d.writable]), model.descs);
      count('valid chain');
      const readable = model.descs.filter((d) => !d[2]);
      const writable = model.descs.filter((d) => d[2]);
      const romWrite = writable.some(([a, l]) => l > 0 && a + l > ROM);

      let writer: IoVecBufferMut | undefined;
      try {
        const split = splitChain(chain);
        writer = split.writer;
        assert.deepEqual([split.reader.length, writer.length], [readable, writable].map((ds) => ds.reduce((s, d) => s + d[1], 0)));
      } catch (err) {
        assert.ok(romWrite && isTyped(err).code === 'ERR_IOVEC_READ_ONLY_MEMORY', String(err));
      }

      // The readable buffer reads exactly the guest bytes of its descriptors.
      if (writable.length === 0) {
        const r = IoVecBuffer.fromChain(chain);
        const got = new Uint8Array(r.length);
        assert.equal(r.readAt(0, got), r.length);
        let off = 0;
        for (const [addr, len] of readable) {
          const want = new Uint8Array(len);
          mem.readSlice(G(addr), want);
          assert.deepEqual(got.subarray(off, (off += len)), want);
        }
      } else {
        assert.throws(() => IoVecBuffer.fromChain(chain), (x: unknown) => isTyped(x).code === 'ERR_IOVEC_WRITE_ONLY');
      }

      // The writable buffer writes only inside its descriptors, and marks their pages dirty.
      const capacity = below(6);
      const ring = new IoVecBufferMut(capacity);
      for (const b of bitmaps) b.resetAll();
      const before = n % 8 === 0 ? snapshot(mem) : undefined;
      let parsed: ReturnType<IoVecBufferMut['appendChain']> | undefined;
      try {
        parsed = ring.appendChain(chain);
      } catch (err) {
        const e = isTyped(err);
        const want = readable.length > 0 ? ['ERR_IOVEC_READ_ONLY'] : romWrite ? ['ERR_IOVEC_FULL', 'ERR_IOVEC_READ_ONLY_MEMORY'] : ['ERR_IOVEC_FULL'];
        assert.ok(want.includes(e.code), e.code);
        assert.deepEqual([ring.length, ring.viewCount, bitmaps.every((b) => b.count() === 0)], [0, 0, true], 'nothing half-applied');
      }
      if (parsed !== undefined) {
        const fill = FILL.subarray(n & 0xff, (n & 0xff) + ring.length);
        assert.equal(ring.writeAt(0, fill), fill.length);
        let off = 0;
        for (const [addr, len] of writable) {
          const got = new Uint8Array(len);
          mem.readSlice(G(addr), got);
          // Overlapping descriptors: a later one may overwrite an earlier one's bytes.
          if (!writable.some(([a, l]) => a !== addr && a < addr + len && addr < a + l)) assert.deepEqual(got, fill.subarray(off, off + len));
          off += len;
          for (let p = addr >> 12; len > 0 && p <= (addr + len - 1) >> 12; p++) {
            const ri = REGIONS.findIndex(([s, l]) => p * 4096 >= s && p * 4096 < s + l);
            assert.ok(bitmaps[ri].dirtyAt(p * 4096 - REGIONS[ri][0]), `page ${p} dirty`);
          }
        }
        if (before !== undefined) {
          // Put the bytes the device may write back as they were: nothing else may differ.
          const after = snapshot(mem);
          for (const [a, l] of writable) if (l > 0) after.set(before.subarray(a, a + l), a);
          assert.ok(after.equals(before), 'a byte outside the writable descriptors changed');
        }
      }
      // The blk handler never throws, and answers used lengths the writable part can hold (the
      // writes above may have rewritten the chain itself: a guest may do that too).
      const out = blk.handle(chain);
      assert.ok(out.usedLen <= (writer?.length ?? 0), `used ${out.usedLen} of ${writer?.length}`);
      if (out.error) count(out.error.code);
      q.pushUsed(chain.head, out.usedLen);
    }
    q.publishUsed();
    q.needsNotification();
  }
  assert.ok(chains > CASES / 2, `${chains} chains popped`);
  // Every rule was exercised: the generator is not stuck on one path.
  for (const code of ['ERR_VIRTQ_AVAIL_COUNT', 'ERR_DESC_INDEX', 'ERR_DESC_CHAIN_TOO_LONG', 'ERR_DESC_ADDRESS', 'ERR_DESC_OVERFLOW',
    'ERR_DESC_UNSAFE_ADDRESS', 'ERR_DESC_READ_AFTER_WRITE', 'ERR_DESC_INDIRECT_LENGTH', 'ERR_DESC_INDIRECT_NESTED',
    'ERR_DESC_INDIRECT_NEXT', 'ERR_IOVEC_WRITE_ONLY', 'ERR_IOVEC_READ_ONLY', 'ERR_IOVEC_FULL', 'ERR_IOVEC_READ_ONLY_MEMORY', 'ERR_BLK_REQUEST']) {
    if (CASES >= 100_000) assert.ok((codes.get(code) ?? 0) > 0, `${code} never happened`);
  }
  console.log(`fuzz: ${CASES} cases, ${chains} chains, seed ${SEED}: ${JSON.stringify(Object.fromEntries(codes))}`);
});
