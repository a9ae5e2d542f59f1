/** The session side of the fake front-end: a session over a socket pair, guest RAM, a vring. */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { GuestAddress } from '../../address/address.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { MmapBackend } from '../../mmap/backend.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { VirtqueueDriver } from '../../virtio/driver.js';
import type { VhostUserDevice } from '../device.js';
import type { VhostUserError } from '../errors.js';
import { bit, Feature, FLAG_NEED_REPLY, Request as R, VERSION } from '../protocol.js';
import { type SessionOptions, VhostUserSession } from '../session.js';
import { closeFd, eventfd, socketPair } from '../sys.js';
import { EchoDevice } from './echo-device.js';
import { FakeFrontend, memTable, type RegionPayload, u64, unsealedMemfd, UVA_BASE, vringAddr, vringState } from './frontend.js';

export const G = GuestAddress;
export const MiB = 1 << 20;

/** The open fds, once libuv closed the duplicates of stopped watchers (on the next loop turn). */
export async function openFds(): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 5));
  return readdirSync('/proc/self/fd').map((fd) => { try { return `${fd} ${readlinkSync(`/proc/self/fd/${fd}`)}`; } catch { return fd; } });
}

/** A session over a socket pair, with the way it ended as a promise. */
export function connect<D extends VhostUserDevice = EchoDevice>(
  device: D = new EchoDevice() as unknown as D,
  protocolFeatures?: bigint,
  options: Omit<SessionOptions, 'onClose' | 'onQueueError' | 'protocolFeatures'> = {},
) {
  const [a, b] = socketPair();
  const fe = new FakeFrontend(a);
  let ended!: (e: VhostUserError | undefined) => void;
  const closed = new Promise<VhostUserError | undefined>((resolve) => {
    ended = resolve;
  });
  const queueErrors: unknown[] = [];
  const session = new VhostUserSession(b, device, {
    onClose: (e) => ended(e),
    onQueueError: (_i, e) => queueErrors.push(e),
    protocolFeatures,
    ...options,
  });
  return { fe, session, device, closed, queueErrors };
}

/**
 * Guest RAM of 2 MiB in one memfd, as two regions with a hole: gpa [0, 1 MiB) at file offset 0
 * and gpa [2 MiB, 3 MiB) at file offset 1 MiB; the front-end "maps" them at UVA_BASE and
 * UVA_BASE + 4 MiB. `backing`: a memfd as guestmem makes it (sealed against shrinking, the
 * default), one without seals, or a regular file at `path` (which it fills to 2 MiB).
 */
export function guest(backing: 'sealed' | 'unsealed' | { path: string } = 'sealed') {
  let ram: MmapBackend;
  if (backing === 'sealed') {
    ram = MmapBackend.memfd(2 * MiB, { name: 'fake-guest-ram' });
  } else if (backing === 'unsealed') {
    const fd = unsealedMemfd(2 * MiB);
    ram = MmapBackend.file({ fd, size: 2 * MiB });
    closeFd(fd);
  } else {
    writeFileSync(backing.path, new Uint8Array(2 * MiB));
    ram = MmapBackend.file({ path: backing.path, size: 2 * MiB });
  }
  const regions: RegionPayload[] = [
    { gpa: 0, size: MiB, uva: UVA_BASE, offset: 0 },
    { gpa: 2 * MiB, size: MiB, uva: UVA_BASE + 4n * BigInt(MiB), offset: MiB },
  ];
  const memory = GuestMemory.fromRegions([
    new GuestMemoryRegion(G(0), ram, { offset: 0, length: MiB }),
    new GuestMemoryRegion(G(2 * MiB), ram, { offset: MiB, length: MiB }),
  ]);
  const uva = (gpa: number) => (gpa < MiB ? UVA_BASE + BigInt(gpa) : UVA_BASE + 4n * BigInt(MiB) + BigInt(gpa - 2 * MiB));
  return { ram, regions, memory, uva, fd: ram.fd as number };
}

/** Negotiates as QEMU does and sends the memory table; returns the acked features. */
export async function negotiate(fe: FakeFrontend, g: ReturnType<typeof guest>, extra = 0n): Promise<bigint> {
  const offered = await fe.ask(R.GET_FEATURES);
  const proto = await fe.ask(R.GET_PROTOCOL_FEATURES);
  fe.send(R.SET_PROTOCOL_FEATURES, u64(proto));
  fe.send(R.SET_OWNER);
  const features = bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.RING_EVENT_IDX) | extra;
  assert.equal(features & ~offered, 0n);
  fe.send(R.SET_FEATURES, u64(features));
  assert.equal(await fe.ask(R.SET_MEM_TABLE, memTable(g.regions), [g.fd, g.fd], VERSION | FLAG_NEED_REPLY), 0n);
  return features;
}

/** Sets up vring 0 on a driver in guest memory; returns the driver and the eventfds. */
export function setupVring(fe: FakeFrontend, g: ReturnType<typeof guest>, eventIdx = true) {
  const drv = new VirtqueueDriver(g.memory, { size: 16, ringBase: G(0x4000), dataBase: G(2 * MiB), dataSize: 0x10000, eventIdx });
  const c = drv.queueConfig();
  const kick = eventfd();
  const call = eventfd();
  fe.send(R.SET_VRING_NUM, vringState(0, 16));
  fe.send(R.SET_VRING_BASE, vringState(0, 0));
  fe.send(R.SET_VRING_ADDR, vringAddr(0, { desc: g.uva(c.descTable), used: g.uva(c.usedRing), avail: g.uva(c.availRing) }));
  fe.send(R.SET_VRING_CALL, u64(0), [call]);
  fe.send(R.SET_VRING_KICK, u64(0), [kick]);
  fe.send(R.SET_VRING_ENABLE, vringState(0, 1));
  return { drv, kick, call };
}

export async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

