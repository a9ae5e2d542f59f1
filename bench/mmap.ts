/**
 * Bulk transfers on mmap'd guest memory against heap guest memory and against plain typed-array
 * code on a heap ArrayBuffer, in one run: readSlice / writeSlice of 4 KiB .. 1 MiB (a
 * `Uint8Array.prototype.set` underneath) and fd I/O (readExactVolatileFrom / writeAllVolatileTo:
 * pread / pwrite straight into guest memory) against `fs.readSync` / `fs.writeSync` on a view.
 *
 * Guest offsets walk 64 MiB in steps of the transfer size (page-aligned, so no copy runs into
 * the 4 KiB aliasing slowdown); the file is 16 MiB in os.tmpdir(), served from the page cache.
 * Each row: calibrated to >= BENCH_MIN_MS per repetition; the rows of one size take turns,
 * BENCH_REPS rounds; median.
 *
 * Run: npm run bench:mmap   (knobs: BENCH_REPS, BENCH_MIN_MS, BENCH_FILTER)
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestAddress, GuestMemory } from 'guestmem';
import { MmapBackend, mmapGuestMemory } from 'guestmem/mmap';

const KIB = 1024;
const MIB = 1024 * KIB;
const MEM_SIZE = 64 * MIB;
const FILE_SIZE = 16 * MIB;
const SIZES = [4 * KIB, 64 * KIB, MIB];
const REPS = Number(process.env.BENCH_REPS ?? 5);
const MIN_NS = Number(process.env.BENCH_MIN_MS ?? 100) * 1e6;
const FILTER = process.env.BENCH_FILTER ?? '';

/** One transfer of `size` bytes, the k-th of a run. */
type Op = (k: number) => void;

const now = () => Number(process.hrtime.bigint());

/** Transfers per repetition so that one takes at least MIN_NS; warms the row up on the way. */
function calibrate(f: Op): number {
  let n = 1;
  for (;;) {
    const t = now();
    for (let k = 0; k < n; k++) f(k);
    const dt = now() - t;
    if (dt >= 10e6) return Math.max(1, Math.ceil((n * MIN_NS) / dt));
    n *= 2;
  }
}

/**
 * Median ns per transfer of each row. Repetitions take turns across the rows, so that drift on a
 * shared machine hits every row alike and the ratios of one run stay comparable.
 */
function measure(ops: [string, Op][]): Map<string, number> {
  const chosen = ops.filter(([id]) => !FILTER || FILTER.split(',').some((p) => id.includes(p)));
  const counts = chosen.map(([, f]) => calibrate(f));
  const samples = chosen.map((): number[] => []);
  for (let r = 0; r < REPS; r++) {
    chosen.forEach(([, f], i) => {
      const t = now();
      for (let k = 0; k < counts[i]; k++) f(k);
      samples[i].push((now() - t) / counts[i]);
    });
  }
  return new Map(chosen.map(([id], i) => [id, samples[i].sort((a, b) => a - b)[Math.floor(REPS / 2)]]));
}

const raw = new Uint8Array(MEM_SIZE).fill(0x5a);
const heap = GuestMemory.fromRanges([[GuestAddress(0), MEM_SIZE]]);
using ram = MmapBackend.anonymous(MEM_SIZE);
const mmap = mmapGuestMemory([[GuestAddress(0), ram]]);
heap.fill(GuestAddress(0), MEM_SIZE, 0x5a);
mmap.fill(GuestAddress(0), MEM_SIZE, 0x5a);
const buffer = new Uint8Array(MIB).fill(0xa5);

const dir = mkdtempSync(join(tmpdir(), 'guestmem-bench-'));
const fd = openSync(join(dir, 'data'), 'w+');
for (let off = 0; off < FILE_SIZE; off += MIB) writeSync(fd, buffer, 0, MIB, off);

const memories: [string, GuestMemory][] = [
  ['heap', heap],
  ['mmap', mmap],
];

/** Rows per size: raw first, then guestmem on each memory. */
function rows(size: number): [string, Op][] {
  const at = (k: number) => ((k * size) % MEM_SIZE) as GuestAddress;
  const pos = (k: number) => (k * size) % FILE_SIZE;
  const chunk = buffer.subarray(0, size);
  const out: [string, Op][] = [
    [`raw.read.${size}`, (k) => chunk.set(raw.subarray(at(k), at(k) + size))],
    [`raw.write.${size}`, (k) => raw.set(chunk, at(k))],
    [`raw.fdread.${size}`, (k) => void readSync(fd, raw, at(k), size, pos(k))],
    [`raw.fdwrite.${size}`, (k) => void writeSync(fd, raw, at(k), size, pos(k))],
  ];
  for (const [name, m] of memories) {
    out.push(
      [`${name}.read.${size}`, (k) => m.readSlice(at(k), chunk)],
      [`${name}.write.${size}`, (k) => m.writeSlice(at(k), chunk)],
      [`${name}.fdread.${size}`, (k) => m.readExactVolatileFrom(at(k), fd, size, pos(k))],
      [`${name}.fdwrite.${size}`, (k) => m.writeAllVolatileTo(at(k), fd, size, pos(k))],
    );
  }
  return out;
}

console.log(`guestmem bulk benchmark on mmap'd and heap memory, Node ${process.version}, median of ${REPS}`);
console.log(`${'row'.padEnd(24)} ${'ns/op'.padStart(10)} ${'GB/s'.padStart(7)} ${'vs raw'.padStart(7)}`);
try {
  for (const size of SIZES) {
    const results = measure(rows(size));
    for (const [id, ns] of results) {
      const base = results.get(id.replace(/^\w+\./, 'raw.'));
      const ratio = base === undefined ? '' : `${(ns / base).toFixed(2)}x`;
      console.log(`${id.padEnd(24)} ${ns.toFixed(0).padStart(10)} ${(size / ns).toFixed(2).padStart(7)} ${ratio.padStart(7)}`);
    }
  }
} finally {
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
}
