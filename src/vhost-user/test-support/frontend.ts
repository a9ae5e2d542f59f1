/**
 * An in-process vhost-user front-end for tests: sends messages (with fds) over one end of a
 * socket pair and reads the back-end's replies, like QEMU does, and lays out guest RAM in a memfd
 * that both sides map.
 */
import { GuestAddress } from '../../address/address.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { ftruncateSync } from 'node:fs';
import { MmapBackend } from '../../mmap/backend.js';
import { native } from '../../mmap/native.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { FLAG_REPLY, HEADER_SIZE, VERSION } from '../protocol.js';
import { closeFd, recvMsg, sendMsg } from '../sys.js';

/** Where the fake front-end pretends to have guest RAM mapped. */
export const UVA_BASE = 0x7f00_0000_0000n;

export interface Reply {
  readonly request: number;
  readonly flags: number;
  readonly payload: DataView;
}

export class FakeFrontend {
  readonly fd: number;

  constructor(fd: number) {
    this.fd = fd;
  }

  /** Sends a header and payload in one message, with `fds` attached. */
  send(request: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], flags = VERSION, size = payload.length): void {
    const bytes = new Uint8Array(HEADER_SIZE + payload.length);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, request, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, size, true);
    bytes.set(payload, HEADER_SIZE);
    sendMsg(this.fd, bytes, fds);
  }

  /** Sends raw bytes (a malformed message, say). */
  sendRaw(bytes: Uint8Array, fds: number[] = []): void {
    sendMsg(this.fd, bytes, fds);
  }

  /** The next reply, waiting up to `ms` for it. */
  async reply(ms = 2000): Promise<Reply> {
    const header = await this.#read(HEADER_SIZE, ms);
    const v = new DataView(header.buffer);
    const size = v.getUint32(8, true);
    const payload = size === 0 ? new Uint8Array(0) : await this.#read(size, ms);
    const flags = v.getUint32(4, true);
    if ((flags & FLAG_REPLY) === 0) throw new Error(`not a reply: flags ${flags}`);
    return { request: v.getUint32(0, true), flags, payload: new DataView(payload.buffer) };
  }

  /** Sends and waits for the reply's u64 payload. */
  async ask(request: number, payload?: Uint8Array, fds?: number[], flags?: number): Promise<bigint> {
    this.send(request, payload, fds, flags);
    const r = await this.reply();
    if (r.request !== request) throw new Error(`reply to ${r.request}, expected ${request}`);
    return r.payload.getBigUint64(0, true);
  }

  /** Resolves once the back-end closed its end; fails if it sends something first. */
  async hungUp(ms = 2000): Promise<void> {
    const end = Date.now() + ms;
    const buf = new Uint8Array(64);
    for (;;) {
      const r = recvMsg(this.fd, buf, 8);
      r?.fds.forEach(closeFd);
      if (r?.bytes === 0) return;
      if (r !== undefined) continue; // an ack of failure may come first
      if (Date.now() > end) throw new Error('the back-end did not hang up');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  close(): void {
    closeFd(this.fd);
  }

  async #read(n: number, ms: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    const end = Date.now() + ms;
    while (got < n) {
      const r = recvMsg(this.fd, out.subarray(got), 8);
      r?.fds.forEach(closeFd);
      if (r?.bytes === 0) throw new Error('the back-end hung up');
      if (r !== undefined) {
        got += r.bytes;
        continue;
      }
      if (Date.now() > end) throw new Error(`no reply within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return out;
  }
}

/** Guest RAM in a memfd: the front-end's view of it (a GuestMemory at gpa 0). */
export function guestRam(size: number): { ram: MmapBackend; memory: GuestMemory } {
  const ram = MmapBackend.memfd(size, { name: 'fake-guest-ram' });
  return { ram, memory: GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), ram)]) };
}

/** A memfd of `size` bytes without seals: anyone holding it may truncate it. */
export function unsealedMemfd(size: number): number {
  const fd = native.memfdCreate('unsealed-guest-ram', false);
  ftruncateSync(fd, size);
  return fd;
}

// ---- payloads ----

export function u64(value: bigint | number): Uint8Array {
  const p = new Uint8Array(8);
  new DataView(p.buffer).setBigUint64(0, BigInt(value), true);
  return p;
}

export function vringState(index: number, num: number): Uint8Array {
  const p = new Uint8Array(8);
  const v = new DataView(p.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return p;
}

export function vringAddr(index: number, rings: { desc: bigint; used: bigint; avail: bigint }, flags = 0, log = 0n): Uint8Array {
  const p = new Uint8Array(40);
  const v = new DataView(p.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, rings.desc, true);
  v.setBigUint64(16, rings.used, true);
  v.setBigUint64(24, rings.avail, true);
  v.setBigUint64(32, log, true);
  return p;
}

export interface RegionPayload {
  gpa: bigint | number;
  size: bigint | number;
  uva: bigint | number;
  offset: bigint | number;
}

export function memTable(regions: RegionPayload[], count = regions.length): Uint8Array {
  const p = new Uint8Array(8 + 32 * regions.length);
  const v = new DataView(p.buffer);
  v.setUint32(0, count, true);
  regions.forEach((r, i) => {
    const at = 8 + 32 * i;
    v.setBigUint64(at, BigInt(r.gpa), true);
    v.setBigUint64(at + 8, BigInt(r.size), true);
    v.setBigUint64(at + 16, BigInt(r.uva), true);
    v.setBigUint64(at + 24, BigInt(r.offset), true);
  });
  return p;
}

/** ADD_MEM_REG / REM_MEM_REG: u64 padding, then one region. */
export function singleRegion(r: RegionPayload): Uint8Array {
  const p = new Uint8Array(40);
  p.set(memTable([r]).subarray(8), 8);
  return p;
}

export function configPayload(offset: number, size: number, data: Uint8Array = new Uint8Array(size)): Uint8Array {
  const p = new Uint8Array(12 + data.length);
  const v = new DataView(p.buffer);
  v.setUint32(0, offset, true);
  v.setUint32(4, size, true);
  p.set(data, 12);
  return p;
}

export function logPayload(size: number, offset: number): Uint8Array {
  const p = new Uint8Array(16);
  const v = new DataView(p.buffer);
  v.setBigUint64(0, BigInt(size), true);
  v.setBigUint64(8, BigInt(offset), true);
  return p;
}
