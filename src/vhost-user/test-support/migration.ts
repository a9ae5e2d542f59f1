/**
 * The live-migration harness: a source and a destination QEMU on one host, each with its own
 * guestmem-vhost-user-blk back-end serving the same image, driven through QMP. The guest runs the
 * `migrate` workload of scripts/guest-init.sh: dd readers refilling their buffers by O_DIRECT
 * reads (only the back-end's DMA dirties them) until the host writes "stop" in the image's first
 * block, then, on the destination, "verify": each reader's buffer hashed page by page.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { GUEST_DIR, sha256, type Backend } from './qemu.js';

/** Guest RAM: not a multiple of 256 KiB (QEMU 7.2 TCG loses guest stores otherwise; see the migration notes). */
const RAM = '262152K';
const BLOCK = 65536;
const READERS = 8;
/** Blocks each reader reads (8 MiB), from 1 MiB on: the image is 65 MiB. */
const AREA = 128;
export const IMAGE_BYTES = (16 + READERS * AREA) * BLOCK;

/** Fills the image: every 32-bit word holds its own index + 1, so no two pages are alike. */
export function fillImage(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = new Uint32Array(1 << 18);
  try {
    for (let at = 0; at < IMAGE_BYTES; at += chunk.byteLength) {
      // The first MiB stays zero: block 0 is the control block.
      for (let i = 0; i < chunk.length; i++) chunk[i] = at < 1 << 20 ? 0 : at / 4 + i + 1;
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

/** Writes a command ("stop", "verify") in the control block, where the guest polls for it. */
export function command(path: string, word: string): void {
  const fd = openSync(path, 'r+');
  try {
    const block = Buffer.alloc(4096);
    block.write(word);
    writeSync(fd, block, 0, block.length, 0);
  } finally {
    closeSync(fd);
  }
}

/** A minimal QMP client: one command at a time, events ignored. */
export class Qmp {
  readonly #socket: Socket;
  #buffer = '';
  #waiting: ((reply: Record<string, unknown>) => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
        const msg = JSON.parse(this.#buffer.slice(0, nl)) as Record<string, unknown>;
        this.#buffer = this.#buffer.slice(nl + 1);
        if ('return' in msg || 'error' in msg || 'QMP' in msg) this.#waiting.shift()?.(msg);
      }
    });
  }

  /** Connects to QEMU's QMP socket at `path` (waiting up to `timeoutMs` for it) and leaves capability negotiation. */
  static async open(path: string, timeoutMs = 30_000): Promise<Qmp> {
    const end = Date.now() + timeoutMs;
    while (!existsSync(path)) {
      if (Date.now() > end) throw new Error(`no QMP socket at ${path} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const qmp = new Qmp(socket);
    await new Promise((resolve) => qmp.#waiting.push(resolve)); // the greeting
    await qmp.run('qmp_capabilities');
    return qmp;
  }

  /** Runs `command` and returns its `return`; a QMP error throws. */
  async run(command: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = await new Promise<Record<string, unknown>>((resolve) => {
      this.#waiting.push(resolve);
      this.#socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    });
    if ('error' in reply) throw new Error(`QMP ${command}: ${JSON.stringify(reply.error)}`);
    return reply.return as Record<string, unknown>;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A QEMU process with its console output. */
export interface Qemu {
  readonly child: ChildProcess;
  readonly console: () => string;
  readonly exited: Promise<number | null>;
  /** Waits (up to `timeoutMs`) for a console line starting with "GUESTMEM: " + `prefix`. */
  waitFor(prefix: string, timeoutMs: number): Promise<void>;
  kill(): Promise<void>;
}

/**
 * Starts QEMU on the back-end at `socket` with QMP at `qmp`; with `incoming` it waits for a
 * migration on that Unix socket.
 */
export function startQemu(socket: string, qmp: string, incoming?: string): Qemu {
  const child = spawn(
    'qemu-system-x86_64',
    [
      '-M', 'pc,memory-backend=mem',
      '-object', `memory-backend-memfd,id=mem,size=${RAM},share=on`,
      '-m', RAM,
      '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
      '-kernel', `${GUEST_DIR}/vmlinuz`, '-initrd', `${GUEST_DIR}/initrd.img`,
      '-append', 'console=ttyS0 reboot=k panic=-1 quiet guestmem.workload=migrate',
      '-chardev', `socket,id=vub,path=${socket}`,
      '-device', 'vhost-user-blk-pci,chardev=vub',
      '-qmp', `unix:${qmp},server=on,wait=off`,
      ...(incoming === undefined ? [] : ['-incoming', `unix:${incoming}`]),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    console: () => out,
    exited,
    async waitFor(prefix, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (!out.split(/\r?\n/).some((l) => l.startsWith(`GUESTMEM: ${prefix}`))) {
        if (child.exitCode !== null || Date.now() > end) {
          throw new Error(`no "GUESTMEM: ${prefix}" from QEMU within ${timeoutMs} ms (exit ${child.exitCode}):\n${out.slice(-3000)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** One reader's buffer as the destination guest reported it. */
export interface BufferReport {
  readonly reader: number;
  /** The disk offset the buffer must hold. */
  readonly offset: number;
  /** sha256 (first 16 hex digits) of each of its 4 KiB pages. */
  readonly pages: readonly string[];
}

/** The guest's "buf" lines; a reader whose process was gone is an error. */
export function bufferReports(console: string): BufferReport[] {
  return console
    .split(/\r?\n/)
    .filter((l) => l.startsWith('GUESTMEM: buf '))
    .map((l) => {
      const m = /^GUESTMEM: buf k=(\d+) offset=(\d+) pages=([0-9a-f,]+)$/.exec(l.trim());
      if (m === null) throw new Error(`the guest could not read a buffer: ${l}`);
      return { reader: Number(m[1]), offset: Number(m[2]), pages: m[3].split(',') };
    });
}

/** Pages of the reports that differ from the image's bytes at their offsets. */
export function stalePages(reports: readonly BufferReport[], image: Uint8Array): number {
  let stale = 0;
  for (const r of reports) {
    r.pages.forEach((sum, i) => {
      const at = r.offset + i * 4096;
      if (sha256(image.subarray(at, at + 4096)).slice(0, 16) !== sum) stale++;
    });
  }
  return stale;
}

/** The "N pages logged" a back-end printed when its front-end left. */
export function pagesLogged(backend: Backend): number | undefined {
  const m = /\((\d+) pages logged\)/.exec(backend.output());
  return m === null ? undefined : Number(m[1]);
}

/** Polls `query-migrate` every 200 ms until `done(info)` or `timeoutMs`; a failed migration throws. */
export async function waitMigration(
  qmp: Qmp,
  done: (info: Record<string, unknown>) => boolean,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.run('query-migrate');
    if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`migration ${info.status}: ${JSON.stringify(info)}`);
    if (done(info)) return info;
    if (Date.now() > end) throw new Error(`migration not there after ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `ram.dirty-sync-count` of a `query-migrate` answer. */
export function dirtySyncs(info: Record<string, unknown>): number {
  return Number((info.ram as Record<string, unknown> | undefined)?.['dirty-sync-count'] ?? 0);
}

/** `ram.remaining` (bytes still to send) of a `query-migrate` answer. */
export function remaining(info: Record<string, unknown>): number {
  return Number((info.ram as Record<string, unknown> | undefined)?.remaining ?? Number.POSITIVE_INFINITY);
}
