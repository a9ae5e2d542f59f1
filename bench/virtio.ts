/**
 * Virtqueue throughput: chains popped, split into IoVecBuffer/IoVecBufferMut and returned used,
 * for 1- and 4-descriptor chains, against plain DataView code doing the same ring walk without
 * checks; and fd throughput of IoVecBuffer.writeToFd / IoVecBufferMut.readFromFd (writev/readv
 * straight from guest memory) against a copy through one Buffer plus write/read. All ratios come
 * from the same run; absolute figures on a shared machine are noise.
 *
 * Run: npm run bench:virtio   (knobs: BENCH_REPS, BENCH_MIN_MS)
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestAddress, GuestMemory } from 'guestmem';
import { type DescriptorChain, IoVecBuffer, IoVecBufferMut, SplitQueue, VirtqueueDriver, splitChain } from 'guestmem/virtio';

const REPS = Number(process.env.BENCH_REPS ?? 5);
const MIN_NS = Number(process.env.BENCH_MIN_MS ?? 200) * 1e6;
const SIZE = 256;
const G = GuestAddress;
const now = () => Number(process.hrtime.bigint());
let sink = 0;

/** Median ns per unit of `f(n)` (which does `n` units), after calibration and warm-up. */
function measure(f: (n: number) => number): number {
  let n = 1;
  let dt = 0;
  while (dt < 20e6) {
    n *= 2;
    const t = now();
    sink ^= f(n);
    dt = now() - t;
  }
  n = Math.ceil((n * MIN_NS) / dt);
  sink ^= f(n);
  const samples: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t = now();
    sink ^= f(n);
    samples.push((now() - t) / n);
  }
  return samples.sort((a, b) => a - b)[Math.floor(REPS / 2)];
}

/** A full descriptor table of identical chains that the device consumes again and again. */
function ring(readable: number[], writable: number[], chains = SIZE / (readable.length + writable.length)) {
  const mem = GuestMemory.fromRanges([[G(0), 16 << 20]]);
  const drv = new VirtqueueDriver(mem, { size: SIZE, dataBase: G(0x100000), dataSize: 15 << 20 });
  for (let i = 0; i < chains; i++) drv.post(readable.map((n) => new Uint8Array(n)), writable);
  const q = new SplitQueue(mem, drv.queueConfig());
  const u8 = mem.regions()[0].asVolatileSlice().view('read');
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let availIdx = chains;
  /** Makes the same SIZE chains available once more (once the device consumed them all). */
  const republish = () => {
    availIdx = (availIdx + chains) & 0xffff;
    dv.setUint16(drv.availRing + 2, availIdx, true);
  };
  return { q, drv, u8, dv, republish };
}

/** The device loop through guestmem: pop, split, used, per chain. */
function viaQueue(r: ReturnType<typeof ring>): (n: number) => number {
  return (n) => {
    let acc = 0;
    for (let done = 0; done < n; ) {
      const chain = r.q.pop();
      if (chain === undefined) {
        r.q.publishUsed();
        r.republish();
        continue;
      }
      const { reader, writer } = splitChain(chain);
      acc += reader.length + writer.length;
      r.q.pushUsed(chain.head, writer.length);
      done++;
    }
    return acc;
  };
}

/** The same ring walk in plain DataView code: no checks, one view per descriptor. */
function plain(r: ReturnType<typeof ring>): (n: number) => number {
  const { dv, u8, drv } = r;
  let lastAvail = 0;
  let used = 0;
  return (n) => {
    let acc = 0;
    for (let done = 0; done < n; ) {
      if (lastAvail === dv.getUint16(drv.availRing + 2, true)) {
        dv.setUint16(drv.usedRing + 2, used, true);
        r.republish();
        continue;
      }
      const head = dv.getUint16(drv.availRing + 4 + 2 * (lastAvail & (SIZE - 1)), true);
      lastAvail = (lastAvail + 1) & 0xffff;
      const rd: Uint8Array[] = [];
      const wr: Uint8Array[] = [];
      let len = 0;
      for (let i = head, more = true; more; ) {
        const at = drv.descTable + 16 * i;
        const addr = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
        const l = dv.getUint32(at + 8, true);
        const flags = dv.getUint16(at + 12, true);
        ((flags & 2) !== 0 ? wr : rd).push(u8.subarray(addr, addr + l));
        len += l;
        more = (flags & 1) !== 0;
        i = dv.getUint16(at + 14, true);
      }
      acc += len + rd.length + wr.length;
      const u = drv.usedRing + 4 + 8 * (used & (SIZE - 1));
      dv.setUint32(u, head, true);
      dv.setUint32(u + 4, len, true);
      used = (used + 1) & 0xffff;
      done++;
    }
    return acc;
  };
}

console.log(`guestmem virtio benchmark, Node ${process.version}, queue size ${SIZE}, median of ${REPS}`);
for (const [name, readable, writable] of [
  ['1-descriptor chains', [512], []],
  ['4-descriptor chains', [16], [2048, 2048, 1]],
] as [string, number[], number[]][]) {
  const g = measure(viaQueue(ring(readable, writable)));
  const p = measure(plain(ring(readable, writable)));
  console.log(
    `${name}: guestmem ${(1e3 / g).toFixed(2)} M chains/s (${g.toFixed(0)} ns), plain ${(1e3 / p).toFixed(2)} M chains/s (${p.toFixed(0)} ns), ratio ${(g / p).toFixed(2)}x`,
  );
}

// fd throughput: 1 MiB per transfer in 16 guest buffers of 64 KiB, at file offset 0.
const dir = mkdtempSync(join(tmpdir(), 'guestmem-bench-virtio-'));
const fd = openSync(join(dir, 'data'), 'w+');
try {
  const CHUNK = 64 << 10;
  const PARTS = 16;
  const TOTAL = CHUNK * PARTS;
  const r = ring([], Array(PARTS).fill(CHUNK), 1);
  const rd = ring(Array(PARTS).fill(CHUNK), [], 1);
  const inBuf = IoVecBufferMut.fromChain(r.q.pop() as DescriptorChain);
  const outBuf = IoVecBuffer.fromChain(rd.q.pop() as DescriptorChain);
  const bounce = Buffer.alloc(TOTAL);
  writeSync(fd, bounce, 0, TOTAL, 0);
  const rows: [string, (n: number) => number][] = [
    ['writev from guest', (n) => { let acc = 0; for (let i = 0; i < n; i++) acc += outBuf.writeToFd(fd, 0, TOTAL, 0); return acc; }],
    ['copy + write', (n) => { let acc = 0; for (let i = 0; i < n; i++) { outBuf.readAt(0, bounce); acc += writeSync(fd, bounce, 0, TOTAL, 0); } return acc; }],
    ['readv into guest', (n) => { let acc = 0; for (let i = 0; i < n; i++) acc += inBuf.readFromFd(fd, 0, TOTAL, 0); return acc; }],
    ['read + copy', (n) => { let acc = 0; for (let i = 0; i < n; i++) { acc += readSync(fd, bounce, 0, TOTAL, 0); inBuf.writeAt(0, bounce); } return acc; }],
  ];
  const ns = new Map(rows.map(([id, f]) => [id, measure(f)]));
  for (const [id, t] of ns) console.log(`${id.padEnd(18)} ${((TOTAL / t) * 1e9 / 2 ** 30).toFixed(2).padStart(6)} GiB/s (${(t / 1e3).toFixed(0)} us per MiB)`);
  const ratio = (a: string, b: string) => ((ns.get(b) as number) / (ns.get(a) as number)).toFixed(2);
  console.log(`speed-up of zero-copy: writev ${ratio('writev from guest', 'copy + write')}x, readv ${ratio('readv into guest', 'read + copy')}x`);
} finally {
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
}
if (sink === 0.5) console.log(sink);
