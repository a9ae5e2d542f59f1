/**
 * guestmem/kvm benchmarks, in one run, each against a baseline measured in the same run:
 * - a flat-view change reaching KVM: unmap + map of one RAM region (two changes) in a manager of
 *   1 and 64 regions attached to a VM, against the same manager without a VM;
 * - dirty-log harvest: a protected-mode guest writes every page of a 256 MiB slot, then
 *   `vm.syncDirtyLog()` (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG, merged into the region's
 *   AtomicBitmap), dense and clean, in GiB of guest memory per second, against bench/kvm-loop.c
 *   doing the same ioctls and an atomic OR in C;
 * - vCPU exit round trip: a guest looping on `out 0x14, al`, each exit handled in TypeScript
 *   (`vcpu.run()` and a handler), against the same guest under the C loop.
 * Timing: medians (of 2 × BENCH_REPS + 1 interleaved repetitions, of BENCH_ROUNDS harvest rounds). Absolute figures on a shared machine are noise:
 * read the ratios. Where /dev/kvm cannot be opened, prints why and exits 0; without `cc`, the
 * C columns are skipped with the reason.
 *
 * Run: npm run bench:kvm   (knobs: BENCH_REPS, BENCH_ROUNDS, BENCH_EXITS)
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AtomicBitmap, GuestAddress, GuestMemory, GuestMemoryRegion, MemoryBacking, MemoryManager, type Region } from 'guestmem';
import { KvmError, type KvmVcpu, KvmVm } from 'guestmem/kvm';
import { MmapBackend } from 'guestmem/mmap';

const MIB = 2 ** 20;
const REPS = Number(process.env.BENCH_REPS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const EXITS = Number(process.env.BENCH_EXITS ?? 20000);
const HARVEST_MIB = 256;
/** Clean harvests timed together per round (one alone is too short to time). */
const CLEAN_CALLS = 50;
const now = () => Number(process.hrtime.bigint());
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ns: number) => (ns < 1e3 ? `${ns.toFixed(0)} ns` : ns < 1e6 ? `${(ns / 1e3).toFixed(2)} µs` : `${(ns / 1e6).toFixed(2)} ms`);
const gibps = (bytes: number, ns: number) => `${(bytes / 2 ** 30 / (ns / 1e9)).toFixed(1)} GiB/s`;
const row = (cells: string[]) => console.log(`| ${cells.join(' | ')} |`);

let probe: KvmVm;
try {
  probe = KvmVm.create();
} catch (e) {
  if (e instanceof KvmError && e.code === 'ERR_KVM_UNAVAILABLE') {
    console.log(`bench:kvm skipped: no usable /dev/kvm here (${e.errno}); the nested-KVM rig runs the KVM tests, not benchmarks`);
    process.exit(0);
  }
  throw e;
}
probe.close();

/** The C baseline, built from bench/kvm-loop.c; undefined (with the reason printed) without cc. */
function buildC(): string | undefined {
  const src = fileURLToPath(new URL('../../bench/kvm-loop.c', import.meta.url));
  const bin = fileURLToPath(new URL('./kvm-loop', import.meta.url));
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, src], { stdio: ['ignore', 'ignore', 'inherit'] });
    return bin;
  } catch (e) {
    console.log(`C baseline skipped: cannot build bench/kvm-loop.c with cc (${(e as Error).message.split('\n')[0]})`);
    return undefined;
  }
}

/** `RESULT name value` lines of a kvm-loop run. */
function runC(bin: string, args: string[]): Map<string, number> {
  const out = execFileSync(bin, args, { encoding: 'utf8', timeout: 120_000 });
  return new Map([...out.matchAll(/^RESULT (\S+) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

// ---- 1. a flat-view change reaching KVM -----------------------------------------------------

/** A manager of `regions` 64 KiB RAM regions (and the region whose visibility the bench flips). */
function manager(regions: number): { mm: MemoryManager; target: Region } {
  const mm = new MemoryManager();
  const rs: Region[] = [];
  for (let i = 0; i < regions; i++) {
    const backing = new MemoryBacking(MmapBackend.anonymous(0x10000), { bitmap: new AtomicBitmap(0x10000) });
    rs.push(mm.addRam({ name: `ram-${i}`, start: GuestAddress(i * 0x10000), length: 0x10000, backing }));
  }
  return { mm, target: rs[Math.floor(regions / 2)] };
}

/** ns per change (an unmap or a map), without and with a VM attached, interleaved repetitions. */
function layoutChange(regions: number): { alone: number; kvm: number } {
  const plain = manager(regions);
  const attached = manager(regions);
  const vm = KvmVm.create();
  vm.attach(attached.mm);
  const n = 500;
  const time = ({ mm, target }: { mm: MemoryManager; target: Region }) => {
    const t = now();
    for (let k = 0; k < n; k++) {
      mm.unmap(target);
      mm.map(target);
    }
    return (now() - t) / (2 * n);
  };
  const alone: number[] = [];
  const kvm: number[] = [];
  time(plain);
  time(attached);
  for (let rep = 0; rep < 2 * REPS + 1; rep++) {
    alone.push(time(plain));
    kvm.push(time(attached));
  }
  vm.close();
  return { alone: median(alone), kvm: median(kvm) };
}

// ---- guests ------------------------------------------------------------------------------------

/** Flat 32-bit protected mode without paging, at `rip`, with `rsi` set. */
function protectedMode(cpu: KvmVcpu, rip: number, rsi: number): void {
  const s = cpu.getSpecialRegisters();
  const code = { base: 0n, limit: 0xffffffff, selector: 8, type: 0xb, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
  const data = { ...code, selector: 16, type: 3 };
  Object.assign(s, { cs: code, ds: { ...data }, es: { ...data }, fs: { ...data }, gs: { ...data }, ss: { ...data }, cr0: s.cr0 | 1n });
  cpu.setSpecialRegisters(s);
  cpu.setRegisters({ ...cpu.getRegisters(), rip: BigInt(rip), rsi: BigInt(rsi), rflags: 2n });
}

/** Protected mode: writes a byte to every page of [0x2000, esi), then `out 0x14`, and again. */
const DIRTY_EVERY_PAGE = Uint8Array.of(
  0xbf, 0x00, 0x20, 0x00, 0x00, //       0x1000: mov edi, 0x2000
  0x88, 0x07, //                         0x1005: mov [edi], al
  0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, // 0x1007: add edi, 0x1000
  0x39, 0xf7, //                         0x100d: cmp edi, esi
  0x72, 0xf4, //                         0x100f: jb 0x1005
  0xe6, 0x14, //                         0x1011: out 0x14, al
  0xeb, 0xeb, //                         0x1013: jmp 0x1000
);

/** Real mode: `out 0x14, al` and back, forever. */
const OUT_LOOP = Uint8Array.of(0xe6, 0x14, 0xeb, 0xfc);

function guestVm(size: number, code: Uint8Array): { vm: KvmVm; cpu: KvmVcpu; mem: GuestMemory } {
  const region = new GuestMemoryRegion(GuestAddress(0), MmapBackend.anonymous(size), { bitmap: new AtomicBitmap(size) });
  const mem = GuestMemory.fromRegions([region]);
  mem.writeSlice(GuestAddress(0x1000), code);
  const vm = KvmVm.create();
  vm.attach(mem);
  return { vm, cpu: vm.createVcpu(), mem };
}

// ---- 2. dirty-log harvest ------------------------------------------------------------------------

/** Median ns of one harvest: right after the guest wrote every page, and of a clean log. */
function harvest(): { dense: number; clean: number } {
  const size = HARVEST_MIB * MIB;
  const { vm, cpu } = guestVm(size, DIRTY_EVERY_PAGE);
  vm.setDirtyLogging(true);
  protectedMode(cpu, 0x1000, size);
  const dense: number[] = [];
  const clean: number[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const exit = cpu.run();
    if (exit.reason !== 'io') throw new Error(`unexpected exit ${exit.reason}`);
    const t0 = now();
    vm.syncDirtyLog();
    const t1 = now();
    for (let k = 0; k < CLEAN_CALLS; k++) vm.syncDirtyLog();
    const t2 = now();
    if (round > 0) {
      // Round 0 faulted the memory in.
      dense.push(t1 - t0);
      clean.push((t2 - t1) / CLEAN_CALLS);
    }
  }
  vm.close();
  return { dense: median(dense), clean: median(clean) };
}

// ---- 3. exit round trip --------------------------------------------------------------------------

function exits(): number {
  const { vm, cpu } = guestVm(0x10000, OUT_LOOP);
  const s = cpu.getSpecialRegisters();
  s.cs.base = 0n;
  s.cs.selector = 0;
  cpu.setSpecialRegisters(s);
  cpu.setRegisters({ ...cpu.getRegisters(), rip: 0x1000n, rflags: 2n });
  let sum = 0;
  const handler = (port: number, data: Uint8Array) => {
    if (port === 0x14) sum += data[0];
  };
  const samples: number[] = [];
  for (let rep = 0; rep < 2; rep++) {
    const t = now();
    for (let k = 0; k < EXITS; k++) {
      const exit = cpu.run();
      if (exit.reason !== 'io') throw new Error(`unexpected exit ${exit.reason}`);
      handler(exit.port, exit.data);
    }
    samples.push((now() - t) / EXITS);
  }
  vm.close();
  if (sum === -1) console.log(sum);
  return samples[1];
}

const c = buildC();
console.log(`guestmem/kvm benchmarks (${new Date().toISOString()}, node ${process.version}); medians of ${REPS}\n`);

console.log('Flat-view change reaching KVM (one unmap or map of a RAM region; the others keep their slots)\n');
row(['regions', 'manager alone', 'manager + KVM slots', 'KVM share']);
row(['---', '---', '---', '---']);
for (const n of [1, 64]) {
  const { alone, kvm } = layoutChange(n);
  row([String(n), fmt(alone), fmt(kvm), fmt(kvm - alone)]);
}

console.log(`\nDirty-log harvest of a ${HARVEST_MIB} MiB slot (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG, merged into the bitmap), median of ${ROUNDS} rounds\n`);
const ts = harvest();
const cs = c === undefined ? undefined : runC(c, ['dirty', String(HARVEST_MIB), String(ROUNDS)]);
row(['log', 'guestmem (vm.syncDirtyLog)', 'C loop', 'guestmem / C']);
row(['---', '---', '---', '---']);
for (const [name, t] of [['every page dirty', ts.dense], ['clean', ts.clean]] as const) {
  const cv = cs?.get(`dirty-${name === 'clean' ? 'clean' : 'dense'}-${HARVEST_MIB}mib`);
  const bytes = HARVEST_MIB * MIB;
  row([name, `${fmt(t)} (${gibps(bytes, t)})`, cv === undefined ? 'n/a' : `${fmt(cv)} (${gibps(bytes, cv)})`, cv === undefined ? 'n/a' : `${(t / cv).toFixed(2)}x`]);
}

console.log(`\nvCPU exit round trip (guest \`out\` -> handler -> guest), ${EXITS} exits\n`);
const te = exits();
const ce = c === undefined ? undefined : runC(c, ['exit', String(EXITS)]).get('exit');
row(['guestmem (vcpu.run + TS handler)', 'C loop (KVM_RUN + C handler)', 'guestmem / C']);
row(['---', '---', '---']);
row([fmt(te), ce === undefined ? 'n/a' : fmt(ce), ce === undefined ? 'n/a' : `${(te / ce).toFixed(2)}x`]);
