/**
 * vhost-user-blk end to end: the same guest workload (O_DIRECT dd at 4 KiB, 64 KiB and 1 MiB
 * blocks, write then read, queue depth 1, three rounds per boot) on guestmem-vhost-user-blk and
 * on qemu-storage-daemon's vhost-user-blk export, alternating boots in one run. Reports the
 * guest's MB/s per block size (medians) and each back-end's CPU time per request (utime + stime
 * from /proc/PID/stat over the boot, divided by the I/Os the guest's /sys/block/vda/stat counts),
 * with the guestmem / qemu ratios. Under TCG the guest bounds throughput (about +-25 % run to run);
 * the CPU per request is the back-end's own cost.
 *
 * First, without a VM: the device's own cost per 4 KiB request (vring, chain, status, readv /
 * writev of the image, used ring), driven in-process by the test front-end, as a ratio to a plain
 * 4 KiB readSync / writeSync into a Uint8Array on the same file.
 *
 * Run: npm run bench:vhost-user   (knobs: BENCH_BOOTS per back-end, default 2)
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdDisk, VirtioBlk } from 'guestmem/virtio';
import { VhostUserBlkDevice } from 'guestmem/vhost-user';
import type { Backend } from '../dist/vhost-user/test-support/qemu.js';

// The e2e test's harnesses (compiled to dist/, which sits beside build/).
const dist = (path: string) => new URL(`../../dist/vhost-user/test-support/${path}`, import.meta.url).href;
const { bootGuest, patternResults, startBackend, unavailable }: typeof import('../dist/vhost-user/test-support/qemu.js') =
  await import(dist('qemu.js'));
const { connect, guest, negotiate, setupVring }: typeof import('../dist/vhost-user/test-support/harness.js') = await import(
  dist('harness.js')
);

const BOOTS = Number(process.env.BENCH_BOOTS ?? 2);
const KINDS: Backend['kind'][] = ['guestmem', 'qemu-storage-daemon'];

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** ns per 4 KiB request through the device, and per plain 4 KiB transfer, median of 5 x 20000. */
async function deviceCost(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-bench-vhost-dev-'));
  const path = join(dir, 'disk.img');
  writeFileSync(path, new Uint8Array(16 << 20));
  const fd = openSync(path, 'r+');
  const device = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(fd), { queueSize: 16 }));
  const g = guest();
  const { fe, closed } = connect(device);
  await negotiate(fe, g);
  const { drv } = setupVring(fe, g, false);
  await new Promise((r) => setTimeout(r, 20));
  const header = new Uint8Array(16);
  const hv = new DataView(header.buffer);
  const data = new Uint8Array(4096);
  const N = 20_000;
  console.log('device cost per 4 KiB request, in-process (no VM), median of 5 x 20000:');
  for (const [type, name] of [[0, 'read'], [1, 'write']] as const) {
    hv.setUint32(0, type, true);
    const dev: number[] = [];
    const plain: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      let t = 0n;
      for (let i = 0; i < N; i++) {
        hv.setBigUint64(8, BigInt((i % 4000) * 8), true);
        if (type === 0) drv.post([header], [4096, 1]);
        else drv.post([header, data], [1]);
        const t0 = process.hrtime.bigint();
        device.kick(0);
        t += process.hrtime.bigint() - t0;
        drv.used();
      }
      dev.push(Number(t) / N);
      const t1 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) {
        if (type === 0) readSync(fd, data, 0, 4096, (i % 4000) * 4096);
        else writeSync(fd, data, 0, 4096, (i % 4000) * 4096);
      }
      plain.push(Number(process.hrtime.bigint() - t1) / N);
    }
    const [d, p] = [median(dev), median(plain)];
    console.log(`  ${name}: device ${(d / 1000).toFixed(2)} us, plain ${name}Sync ${(p / 1000).toFixed(2)} us, ratio ${(d / p).toFixed(2)}`);
  }
  fe.close();
  await closed;
  closeSync(fd);
  g.ram.close();
  rmSync(dir, { recursive: true, force: true });
}

await deviceCost();
const missing = unavailable();
if (missing !== undefined) {
  console.log(`bench:vhost-user skipped: ${missing}`);
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'guestmem-bench-vhost-'));
const image = join(dir, 'disk.img');

interface Sample {
  write: Map<number, number[]>;
  read: Map<number, number[]>;
  cpuPerRequest: number[];
  requests: number[];
}
const samples = new Map<Backend['kind'], Sample>(
  KINDS.map((k) => [k, { write: new Map(), read: new Map(), cpuPerRequest: [], requests: [] }]),
);
const push = (m: Map<number, number[]>, k: number, v: number) => m.set(k, [...(m.get(k) ?? []), v]);

try {
  for (let boot = 0; boot < BOOTS; boot++) {
    for (const kind of KINDS) {
      writeFileSync(image, '');
      truncateSync(image, 256 << 20);
      const socket = join(dir, `${kind}.sock`);
      const backend = await startBackend(kind, socket, image);
      const cpu0 = backend.cpuSeconds();
      let cpu1 = cpu0;
      const run = await bootGuest(socket, 'bench').finally(async () => {
        cpu1 = backend.cpuSeconds();
        await backend.stop();
      });
      if (run.results.at(-1) !== 'done errors=0') throw new Error(`${kind}: the guest failed:\n${run.console.slice(-2000)}`);
      const s = samples.get(kind) as Sample;
      for (const r of patternResults(run)) {
        if (r.want !== r.got) throw new Error(`${kind}: the guest read back other data at bs=${r.bs}`);
        push(s.write, r.bs, r.bytes / (r.writeNs / 1e9) / 1e6);
        push(s.read, r.bs, r.bytes / (r.readNs / 1e9) / 1e6);
      }
      const stat = (run.results.find((l) => l.startsWith('stat ')) ?? '').split(/\s+/).slice(1).map(Number);
      const requests = stat[0] + stat[4];
      s.requests.push(requests);
      s.cpuPerRequest.push(((cpu1 - cpu0) / requests) * 1e6);
      console.error(`boot ${boot + 1}/${BOOTS} ${kind}: ${run.seconds.toFixed(1)} s, ${requests} requests, backend CPU ${(cpu1 - cpu0).toFixed(2)} s`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const g = samples.get('guestmem') as Sample;
const q = samples.get('qemu-storage-daemon') as Sample;
const fmt = (n: number) => n.toFixed(n < 100 ? 1 : 0);
const size = (bs: number) => (bs >= 1 << 20 ? `${bs >> 20} MiB` : `${bs >> 10} KiB`);
console.log(`\nvhost-user-blk, Linux guest under QEMU TCG, O_DIRECT dd at queue depth 1; medians of ${BOOTS} boots x 3 rounds`);
console.log('| block | write MB/s guestmem | write MB/s qemu-storage-daemon | ratio | read MB/s guestmem | read MB/s qemu-storage-daemon | ratio |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const bs of [...g.write.keys()].sort((a, b) => a - b)) {
  const [gw, qw, gr, qr] = [g.write, q.write, g.read, q.read].map((m) => median(m.get(bs) ?? []));
  console.log(`| ${size(bs)} | ${fmt(gw)} | ${fmt(qw)} | ${(gw / qw).toFixed(2)} | ${fmt(gr)} | ${fmt(qr)} | ${(gr / qr).toFixed(2)} |`);
}
const [gc, qc] = [median(g.cpuPerRequest), median(q.cpuPerRequest)];
console.log(`\nback-end CPU time per request (whole boot, ${median(g.requests)} / ${median(q.requests)} requests): guestmem ${gc.toFixed(1)} us, qemu-storage-daemon ${qc.toFixed(1)} us, ratio ${(gc / qc).toFixed(2)}`);
