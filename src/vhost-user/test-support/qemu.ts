/**
 * The real-VM harness of the end-to-end test and the benchmark: builds the guest
 * (scripts/build-guest.sh), starts a vhost-user-blk back-end (guestmem's, or qemu-storage-daemon's
 * for comparison) and boots QEMU under TCG with shared memfd RAM and `-device vhost-user-blk-pci`
 * on it, then reads the guest's "GUESTMEM:" result lines off the serial console.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
/** Where scripts/build-guest.sh leaves the guest (gitignored). */
export const GUEST_DIR = `${root}.cache/guest`;
const CLI = fileURLToPath(new URL('../blk-cli.js', import.meta.url));

/** Why the real VM cannot run here, or undefined when it can. */
export function unavailable(): string | undefined {
  for (const tool of ['qemu-system-x86_64', 'qemu-storage-daemon']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error !== undefined || r.status !== 0) return `${tool} is not installed (apt-get install qemu-system-x86)`;
  }
  if (process.env.GUESTMEM_NO_GUEST_DOWNLOAD === '1') return 'GUESTMEM_NO_GUEST_DOWNLOAD=1: the guest is not built';
  if (!existsSync(`${GUEST_DIR}/vmlinuz`)) {
    // Say so before the download, which is the slow and surprising part of a first `npm test`.
    process.stderr.write(
      `real-VM test: building its guest in .cache/guest, which downloads Debian's cloud kernel package${kernelPackageSize()} ` +
        'and busybox-static (once; set GUESTMEM_NO_GUEST_DOWNLOAD=1 to skip the test instead)\n',
    );
  }
  const b = spawnSync('bash', [`${root}scripts/build-guest.sh`, GUEST_DIR], { encoding: 'utf8' });
  if (b.status !== 0) return `the guest cannot be built: ${(b.stderr || b.stdout).trim().split('\n').at(-1)}`;
  return undefined;
}

/** ` (26.7 MB)`: the size of the kernel package scripts/build-guest.sh downloads, if apt knows it. */
function kernelPackageSize(): string {
  const deps = spawnSync('apt-cache', ['depends', 'linux-image-cloud-amd64'], { encoding: 'utf8' }).stdout ?? '';
  const pkg = /Depends: (linux-image-\d\S*)/.exec(deps)?.[1];
  if (pkg === undefined) return '';
  const size = /^Size: (\d+)/m.exec(spawnSync('apt-cache', ['show', '--no-all-versions', pkg], { encoding: 'utf8' }).stdout ?? '')?.[1];
  return size === undefined ? '' : ` ${pkg} (${(Number(size) / 1e6).toFixed(1)} MB)`;
}

/** The text pattern the guest writes for block size `bs` (what `yes ... | head -c` makes). */
export function pattern(text: string, bytes: number): Uint8Array {
  const line = Buffer.from(`${text}\n`);
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += line.length) line.copy(out, at, 0, Math.min(line.length, bytes - at));
  return out;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A running back-end process. */
export interface Backend {
  readonly kind: 'guestmem' | 'qemu-storage-daemon';
  readonly child: ChildProcess;
  /** Its output so far. */
  readonly output: () => string;
  /** CPU time it used so far (user + system), in seconds, from /proc/PID/stat. */
  readonly cpuSeconds: () => number;
  stop(): Promise<void>;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a process, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * Starts a back-end serving `image` on `socket` and waits until it listens; `args` go to
 * guestmem-vhost-user-blk (`--queues 2`, `--no-mem-slots`).
 */
export async function startBackend(kind: Backend['kind'], socket: string, image: string, args: string[] = []): Promise<Backend> {
  const child =
    kind === 'guestmem'
      ? spawn(process.execPath, [CLI, '--socket', socket, '--image', image, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(
          'qemu-storage-daemon',
          [
            '--blockdev', `driver=file,node-name=file0,filename=${image}`,
            '--blockdev', 'driver=raw,node-name=disk0,file=file0',
            '--export', `type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=${socket},writable=on`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const end = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGKILL'); // a back-end that never listened must not keep the test run alive
      throw new Error(`${kind} did not start: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const pid = child.pid as number;
  return {
    kind,
    child,
    output: () => output,
    cpuSeconds: () => cpuSeconds(pid),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** What the guest reported. */
export interface GuestRun {
  /** The "GUESTMEM:" lines, without the prefix. */
  readonly results: string[];
  /** The whole console output. */
  readonly console: string;
  readonly exitCode: number | null;
  readonly seconds: number;
}

/** Options of {@link bootGuest}. */
export interface BootOptions {
  /** vCPUs (default 1). */
  smp?: number;
  /** Request queues of the vhost-user-blk device (default 1). */
  queues?: number;
  timeoutMs?: number;
  /** Share guest RAM with the back-end (`share=on`, the default; false: `share=off`). */
  share?: boolean;
  /** Polled every 100 ms: true ends QEMU (a guest that will hang, once the test saw why). */
  stopWhen?: () => boolean;
}

/** Boots the guest on the vhost-user-blk socket with `workload` and waits for it to power off. */
export async function bootGuest(socket: string, workload: 'pattern' | 'fs' | 'bench', options: BootOptions = {}): Promise<GuestRun> {
  const { smp = 1, queues = 1, timeoutMs = 180_000, share = true, stopWhen } = options;
  const t0 = performance.now();
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-M', 'pc,memory-backend=mem',
      '-object', `memory-backend-memfd,id=mem,size=256M,share=${share ? 'on' : 'off'}`,
      '-m', '256M', '-smp', String(smp),
      '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
      '-kernel', `${GUEST_DIR}/vmlinuz`, '-initrd', `${GUEST_DIR}/initrd.img`,
      '-append', `console=ttyS0 reboot=k panic=-1 quiet guestmem.workload=${workload}`,
      '-chardev', `socket,id=vub,path=${socket}`,
      '-device', `vhost-user-blk-pci,chardev=vub,num-queues=${queues}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  qemu.stdout.on('data', (d) => (out += d));
  qemu.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => qemu.kill('SIGKILL'), timeoutMs);
  const poll = stopWhen && setInterval(() => stopWhen() && qemu.kill('SIGKILL'), 100);
  const exitCode = await new Promise<number | null>((resolve) => qemu.once('exit', (code) => resolve(code)));
  clearTimeout(timer);
  clearInterval(poll);
  const results = out
    .split(/\r?\n/)
    .filter((l) => l.startsWith('GUESTMEM: '))
    .map((l) => l.slice('GUESTMEM: '.length));
  return { results, console: out, exitCode, seconds: (performance.now() - t0) / 1000 };
}

/** One `pattern` line of the guest, parsed. */
export interface PatternResult {
  bs: number;
  bytes: number;
  offset: number;
  writeNs: number;
  readNs: number;
  want: string;
  got: string;
}

export function patternResults(run: GuestRun): PatternResult[] {
  return run.results
    .filter((l) => l.startsWith('pattern '))
    .map((l) => {
      const f = Object.fromEntries(l.split(' ').slice(1).map((kv) => kv.split('=') as [string, string]));
      return {
        bs: Number(f.bs),
        bytes: Number(f.bytes),
        offset: Number(f.offset),
        writeNs: Number(f.write_ns),
        readNs: Number(f.read_ns),
        want: f.want,
        got: f.got,
      };
    });
}
