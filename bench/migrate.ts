/**
 * guestmem/migrate over loopback TCP, to a receiver in another process:
 *
 * 1. throughput of a migration of idle memory against a plain socket copy of the same bytes
 *    (1 MiB writes of the memory's views; the receiver copies them into a buffer of its own),
 *    both measured in the same run, alternating, medians;
 * 2. with a writer worker dirtying random pages at a steady rate: rounds, pages sent, the pages
 *    of the final round and the downtime (pause to the receiver's confirmation), for each rate.
 *
 * Memory: BENCH_MIGRATE_MIB (default 128) MiB of heap memory in one region, every page holding
 * data (one in eight left zero). Downtime budget 10 ms (for the final round; the checksum comes
 * on top), at most 30 rounds.
 * Results: printed, and written to bench/results/migrate-<UTC stamp>.md.
 *
 * Run: npm run bench:migrate
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { AtomicBitmap, GuestAddress, GuestMemory, GuestMemoryRegion, heapBackend, sharedBackend } from 'guestmem';
import { MigrationReceiver, sendMigration, type SendResult } from 'guestmem/migrate';

const MIB = Number(process.env.BENCH_MIGRATE_MIB ?? 128);
const SIZE = MIB << 20;
const PAGE = 4096;
const REPS = 5;
const RATES = [0, 2_000, 10_000, 50_000, 200_000];
/** The downtime budget of the final round. */
const BUDGET_MS = 10;

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];

if (!isMainThread) {
  // The writer: `rate` pages per second, in 1 ms batches, until told to stop.
  const { buffer, bitmap, rate, control } = workerData as { buffer: SharedArrayBuffer; bitmap: ReturnType<AtomicBitmap['share']>; rate: number; control: SharedArrayBuffer };
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), sharedBackend(buffer), { bitmap: AtomicBitmap.fromShared(bitmap) })]);
  const stop = new Int32Array(control);
  const t0 = performance.now();
  let written = 0;
  let x = 0x12345678;
  while (Atomics.load(stop, 0) === 0) {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; written < due; written++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      mem.writeU32LE(GuestAddress(((x >>> 0) % (SIZE / PAGE)) * PAGE + 64), written);
    }
    Atomics.wait(stop, 0, 0, 1);
  }
  parentPort?.postMessage(written);
} else if (process.argv[2] === 'receive') {
  // The receiving process: one connection per trial, 'plain' or 'migrate' by its first byte.
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), heapBackend(SIZE))]);
  const sink = new Uint8Array(SIZE);
  const server = createServer((socket: Socket) => {
    socket.once('readable', () => {
      const mode = (socket.read(1) as Buffer)[0];
      if (mode === 0x6d) {
        new MigrationReceiver(mem, socket).done.then(
          () => socket.end(),
          (e: Error) => {
            console.error(`receiver: ${e.message}`);
            socket.destroy();
          },
        );
        return;
      }
      let at = 0;
      socket.on('data', (chunk: Buffer) => {
        sink.set(chunk, at);
        at += chunk.length;
        if (at === SIZE) socket.end(Buffer.from([1]));
      });
    });
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as { port: number }).port));
  process.on('disconnect', () => process.exit(0));
} else {
  const buffer = new SharedArrayBuffer(SIZE);
  const bitmap = new AtomicBitmap(SIZE, { shared: true });
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), sharedBackend(buffer), { bitmap })]);
  const words = new Uint32Array(buffer);
  for (let p = 0; p < SIZE / PAGE; p++) {
    if (p % 8 === 7) continue;
    for (let w = 0; w < PAGE / 4; w += 16) words[(p * PAGE) / 4 + w] = (p * 2654435761 + w) >>> 0;
  }
  const child = fork(fileURLToPath(import.meta.url), ['receive']);
  const port = await new Promise<number>((r) => child.once('message', (m) => r(m as number)));
  const open = async (mode: number) => {
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(Buffer.from([mode]));
    return s;
  };

  const plain = async (): Promise<number> => {
    const s = await open(0x70);
    const t0 = performance.now();
    const view = new Uint8Array(buffer);
    for (let at = 0; at < SIZE; at += 1 << 20) {
      if (!s.write(view.subarray(at, at + (1 << 20)))) await new Promise((r) => s.once('drain', r));
    }
    await new Promise((r) => s.once('data', r));
    const ms = performance.now() - t0;
    s.destroy();
    return ms;
  };

  const migrate = async (rate: number): Promise<{ r: SendResult; written: number; firstPassMs: number }> => {
    const control = new Int32Array(new SharedArrayBuffer(4));
    let worker: Worker | undefined;
    let written = 0;
    if (rate > 0) {
      worker = new Worker(fileURLToPath(import.meta.url), { workerData: { buffer, bitmap: bitmap.share(), rate, control: control.buffer } });
      await new Promise((r) => worker?.once('online', r));
      await new Promise((r) => setTimeout(r, 200));
    }
    const s = await open(0x6d);
    const t0 = performance.now();
    let firstPassMs = 0;
    const r = await sendMigration(mem, s, {
      downtimeMs: BUDGET_MS,
      maxRounds: 30,
      onProgress: (p) => {
        if (p.round === 0) firstPassMs = performance.now() - t0;
      },
      pause: async () => {
        Atomics.store(control, 0, 1);
        if (worker !== undefined) written = await new Promise<number>((res) => worker?.once('message', res));
      },
    });
    s.destroy();
    await worker?.terminate();
    return { r, written, firstPassMs };
  };

  const lines: string[] = [];
  const say = (line: string) => {
    console.log(line);
    lines.push(line);
  };
  say(`# bench:migrate, ${new Date().toISOString()}`);
  say(`\n${MIB} MiB of guest memory (7/8 of the pages hold data), loopback TCP to another process; ${cpus().length} CPUs, Node ${process.version}\n`);
  const plainMs: number[] = [];
  const idleMs: number[] = [];
  const firstMs: number[] = [];
  const sumMs: number[] = [];
  for (let i = 0; i < REPS; i++) {
    plainMs.push(await plain());
    const { r, firstPassMs } = await migrate(0);
    idleMs.push(r.totalMs);
    firstMs.push(firstPassMs);
    sumMs.push(r.checksumMs);
  }
  const mbs = (bytes: number, ms: number) => bytes / 1e3 / ms;
  const p = median(plainMs);
  const row = (what: string, ms: number) => say(`| ${what} | ${ms.toFixed(0)} | ${mbs(SIZE, ms).toFixed(0)} | ${(p / ms).toFixed(2)} |`);
  say(`| transfer (median of ${REPS}) | ms | MB/s of memory | throughput ratio to the plain copy |`);
  say('| --- | ---: | ---: | ---: |');
  row(`plain socket copy of the ${MIB} MiB`, p);
  row('migration, first pass (every page)', median(firstMs));
  row('migration, whole (first pass, pause, final round, checksums)', median(idleMs));
  say(`\nOf the whole migration, the sender's checksum of all memory took ${median(sumMs).toFixed(0)} ms (median).`);
  say(`\nDirty rates: a worker writes random pages at a steady rate; downtime budget ${BUDGET_MS} ms.\n`);
  say('| dirty rate (pages/s) | rounds | pages sent | final round pages | downtime ms | of which checksum ms | total ms | pages written |');
  say('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const rate of RATES) {
    const { r, written } = await migrate(rate);
    say(`| ${rate} | ${r.rounds} | ${r.pagesSent} | ${r.finalPages} | ${r.downtimeMs.toFixed(1)} | ${r.checksumMs.toFixed(1)} | ${r.totalMs.toFixed(0)} | ${written} |`);
  }
  child.disconnect();
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}migrate-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, 'Z')}.md`;
  writeFileSync(file, `${lines.join('\n')}\n`);
  console.log(`\nwritten to ${file}`);
}
