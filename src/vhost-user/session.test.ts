import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MmapBackend } from '../mmap/backend.js';
import { VhostUserError, type VhostUserErrorCode } from './errors.js';
import { bit, Feature, FLAG_NEED_REPLY, FLAG_REPLY, ProtocolFeature, Request as R, VERSION } from './protocol.js';
import { PROTOCOL_FEATURES } from './session.js';
import { closeFd, eventfd, eventfdRead, eventfdWrite, sendMsg, socketPair } from './sys.js';
import { configPayload, type FakeFrontend, logPayload, memTable, singleRegion, u64, unsealedMemfd, UVA_BASE, vringAddr, vringState } from './test-support/frontend.js';
import { connect, guest, MiB, negotiate, openFds, setupVring, until } from './test-support/harness.js';

/** A session whose vring 0 runs with one end of a socket pair as its kick fd (a hostile front-end's choice). */
async function vringKickedBySocket() {
  const g = guest();
  const { fe, device, closed } = connect();
  await negotiate(fe, g);
  const [kickEnd, frontEnd] = socketPair();
  const drv = setupVring(fe, g);
  fe.send(R.SET_VRING_KICK, u64(0), [kickEnd]);
  await until(() => device.queues.has(0), 'the queue to start');
  return { g, fe, closed, drv, kickEnd, frontEnd };
}

describe('VhostUserSession with a well-behaved front-end', () => {
  test('negotiates, maps the memory table, runs a vring, stops and reports its base', async () => {
    const before = await openFds();
    const g = guest();
    const { fe, session, device, closed } = connect();
    const features = await negotiate(fe, g);
    assert.equal(session.protocolFeatures, PROTOCOL_FEATURES);
    assert.equal(device.acked, features);
    assert.equal(await fe.ask(R.GET_QUEUE_NUM), 2n);
    assert.equal(session.memory?.numRegions, 2);

    const { drv, kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    const posted = drv.post([Uint8Array.of(1, 2, 3)], [100]);
    assert.ok(drv.kick());
    eventfdWrite(kick);
    await until(() => eventfdRead(call) !== undefined, 'the call eventfd');
    assert.deepEqual(drv.used(), [{ id: posted.head, len: 100 }]);
    assert.deepEqual([...drv.read(posted.writable[0])], new Array(100).fill(0x5a));

    fe.send(R.SET_VRING_ENABLE, vringState(0, 0));
    fe.send(R.GET_VRING_BASE, vringState(0, 0));
    const base = await fe.reply();
    assert.equal(base.request, R.GET_VRING_BASE);
    assert.equal(base.flags, VERSION | FLAG_REPLY);
    assert.deepEqual([base.payload.getUint32(0, true), base.payload.getUint32(4, true)], [0, 1]);
    assert.deepEqual(device.calls.filter((c) => c.startsWith('st')), ['start 0', 'stop 0']);

    fe.close();
    assert.equal(await closed, undefined);
    assert.equal(session.closed, true);
    [kick, call].forEach(closeFd);
    g.ram.close();
    assert.deepEqual(await openFds(), before, 'every fd the session received is closed');
  });

  test('restarts a vring at the base it was given, and moves running queues to a new memory table', async () => {
    const g = guest();
    const { fe, device, closed } = connect();
    await negotiate(fe, g);
    const { drv, kick, call } = setupVring(fe, g, false);
    await until(() => device.queues.has(0), 'the queue to start');
    // The same RAM again, with new fds, as QEMU resends it.
    assert.equal(await fe.ask(R.SET_MEM_TABLE, memTable(g.regions), [g.fd, g.fd], VERSION | FLAG_NEED_REPLY), 0n);
    const p = drv.post([], [8]);
    drv.kick();
    eventfdWrite(kick);
    await until(() => eventfdRead(call) !== undefined, 'the call eventfd');
    assert.deepEqual(drv.used(), [{ id: p.head, len: 8 }]);
    fe.close();
    assert.equal(await closed, undefined);
    [kick, call].forEach(closeFd);
    g.ram.close();
  });

  test('a new memory table that moves a running ring to other guest addresses ends the session', async () => {
    const g = guest();
    const { fe, session, device, closed } = connect();
    await negotiate(fe, g);
    const { kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    const queue = device.queues.get(0)?.queue;
    // The two regions swap guest addresses: the rings' user addresses now stand for guest
    // addresses 2 MiB higher, while their old guest addresses are other memory.
    const [low, high] = g.regions;
    const moved = [{ ...low, gpa: high.gpa }, { ...high, gpa: low.gpa }];
    assert.equal(await fe.ask(R.SET_MEM_TABLE, memTable(moved), [g.fd, g.fd], VERSION | FLAG_NEED_REPLY), 1n);
    const error = await closed;
    assert.equal(error?.code, 'ERR_VHOST_USER_RING_ADDRESS');
    assert.equal(queue?.memory.numRegions, 2);
    assert.equal(session.memory, undefined);
    [kick, call].forEach(closeFd);
    fe.close();
    g.ram.close();
  });

  test('memory slots: regions added one by one, removed and added again under a running vring', async () => {
    const g = guest();
    const { fe, session, device, closed } = connect();
    await fe.ask(R.GET_FEATURES);
    const proto = await fe.ask(R.GET_PROTOCOL_FEATURES);
    assert.notEqual(proto & bit(ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
    fe.send(R.SET_PROTOCOL_FEATURES, u64(proto));
    fe.send(R.SET_FEATURES, u64(bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES)));
    assert.equal(await fe.ask(R.GET_MAX_MEM_SLOTS), 32n);
    for (const r of g.regions) {
      assert.equal(await fe.ask(R.ADD_MEM_REG, singleRegion(r), [g.fd], VERSION | FLAG_NEED_REPLY), 0n);
    }
    assert.equal(session.memory?.numRegions, 2);
    const { drv, kick, call } = setupVring(fe, g, false);
    await until(() => device.queues.has(0), 'the queue to start');
    // The data region goes and comes back (as on a DIMM unplug and plug); the ring stays.
    assert.equal(await fe.ask(R.REM_MEM_REG, singleRegion(g.regions[1]), [g.fd], VERSION | FLAG_NEED_REPLY), 0n);
    assert.equal(session.memory?.numRegions, 1);
    assert.equal(await fe.ask(R.ADD_MEM_REG, singleRegion(g.regions[1]), [g.fd], VERSION | FLAG_NEED_REPLY), 0n);
    const p = drv.post([], [64]);
    drv.kick();
    eventfdWrite(kick);
    await until(() => eventfdRead(call) !== undefined, 'the call eventfd');
    assert.deepEqual(drv.used(), [{ id: p.head, len: 64 }]);
    assert.deepEqual([...drv.read(p.writable[0])], new Array(64).fill(0x5a));
    fe.close();
    assert.equal(await closed, undefined);
    [kick, call].forEach(closeFd);
    g.ram.close();
  });

  test('config space: GET_CONFIG reads the device, zero beyond it; SET_CONFIG writes it', async () => {
    const g = guest();
    const { fe, device, closed } = connect();
    await negotiate(fe, g);
    fe.send(R.GET_CONFIG, configPayload(12, 8));
    const r = await fe.reply();
    assert.equal(r.payload.byteLength, 20);
    assert.deepEqual([...new Uint8Array(r.payload.buffer, 12)], [13, 14, 15, 16, 0, 0, 0, 0]);
    fe.send(R.SET_CONFIG, configPayload(1, 2, Uint8Array.of(0xaa, 0xbb)));
    assert.equal(await fe.ask(R.GET_QUEUE_NUM), 2n); // a round trip: SET_CONFIG was handled
    assert.deepEqual([...device.config.subarray(0, 4)], [1, 0xaa, 0xbb, 4]);
    fe.close();
    await closed;
    g.ram.close();
  });

  test('dirty log: with LOG_ALL every page the device writes (data and used ring) is marked in the shared log', async () => {
    const g = guest();
    const { fe, device, session, closed } = connect();
    await negotiate(fe, g, bit(Feature.LOG_ALL));
    // 3 MiB of guest physical pages: 768 bits, 96 bytes; the log sits at offset 100 in its memfd.
    const logMem = MmapBackend.memfd(4096, { name: 'fake-log' });
    assert.equal(await fe.ask(R.SET_LOG_BASE, logPayload(96, 100), [logMem.fd as number]), 0n);
    assert.equal(session.log.active, true);
    const logFd = eventfd();
    fe.send(R.SET_LOG_FD, undefined, [logFd]);
    const { drv, kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    const p = drv.post([], [5000], {});
    drv.kick();
    eventfdWrite(kick);
    await until(() => eventfdRead(call) !== undefined, 'the call eventfd');
    assert.notEqual(eventfdRead(logFd), undefined, 'the log fd was signalled');
    const log = logMem.views().u8.subarray(100, 196);
    const marked = (gpa: number) => (log[Math.floor(gpa / 4096 / 8)] & (1 << (Math.floor(gpa / 4096) % 8))) !== 0;
    const w = p.writable[0];
    for (let a: number = w.addr; a < w.addr + w.len; a += 4096) assert.ok(marked(a), `data page ${a.toString(16)}`);
    assert.ok(marked(w.addr + w.len - 1));
    assert.ok(marked(drv.queueConfig().usedRing), 'used ring page');
    assert.ok(!marked(0), 'a page nobody wrote');
    const pages = [...log].reduce((n, b) => n + [...b.toString(2)].filter((c) => c === '1').length, 0);
    assert.equal(pages, 3, 'two data pages and the used ring page, nothing else');
    // Without LOG_ALL nothing is marked any more.
    fe.send(R.SET_FEATURES, u64(bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.RING_EVENT_IDX)));
    await until(() => !session.log.active, 'logging to stop');
    log.fill(0);
    drv.used();
    drv.post([], [100]);
    drv.kick();
    eventfdWrite(kick);
    await until(() => drv.used().length === 1, 'the second request');
    assert.ok(log.every((b) => b === 0), 'no marks without LOG_ALL');
    assert.equal(eventfdRead(logFd), undefined, 'nor signals of the log fd');
    fe.close();
    await closed;
    [kick, call, logFd].forEach(closeFd);
    logMem.close();
    g.ram.close();
  });

  test('a device failing on a queue stops that queue, signals its error eventfd and keeps the session', async () => {
    const g = guest();
    const { fe, device, closed, queueErrors } = connect();
    await negotiate(fe, g);
    const err = eventfd();
    fe.send(R.SET_VRING_ERR, u64(0), [err]);
    const { drv, kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    drv.setAvailIdx(drv.availIdx + 100); // claims more chains than the queue holds
    eventfdWrite(kick);
    await until(() => eventfdRead(err) !== undefined, 'the error eventfd');
    assert.equal(queueErrors.length, 1);
    assert.ok(!device.queues.has(0));
    assert.equal(await fe.ask(R.GET_QUEUE_NUM), 2n);
    fe.close();
    assert.equal(await closed, undefined);
    [kick, call, err].forEach(closeFd);
    g.ram.close();
  });

  test('RESET_DEVICE stops the queues and forgets the negotiation', async () => {
    const g = guest();
    const { fe, device, session, closed } = connect();
    await negotiate(fe, g);
    const { kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    assert.equal(await fe.ask(R.RESET_DEVICE, undefined, [], VERSION | FLAG_NEED_REPLY), 0n);
    assert.ok(!device.queues.has(0));
    assert.equal(session.features, 0n);
    assert.ok(device.calls.includes('reset'));
    fe.close();
    await closed;
    [kick, call].forEach(closeFd);
    g.ram.close();
  });
});

/** What a hostile front-end sends after negotiation, and the error it must end the session with. */
interface Hostile {
  name: string;
  code: VhostUserErrorCode;
  negotiate?: boolean;
  send(fe: FakeFrontend, g: ReturnType<typeof guest>): void;
}

const ring = (g: ReturnType<typeof guest>, desc: number, avail = 0x8000, used = 0x9000) => ({
  desc: g.uva(desc),
  avail: g.uva(avail),
  used: g.uva(used),
});

const hostile: Hostile[] = [
  { name: 'a bad protocol version', code: 'ERR_VHOST_USER_MESSAGE', negotiate: false, send: (fe) => fe.send(R.GET_FEATURES, undefined, [], 0x2) },
  { name: 'a reply flag from the front-end', code: 'ERR_VHOST_USER_MESSAGE', negotiate: false, send: (fe) => fe.send(R.GET_FEATURES, undefined, [], VERSION | FLAG_REPLY) },
  { name: 'a payload size over the limit', code: 'ERR_VHOST_USER_MESSAGE', negotiate: false, send: (fe) => fe.send(R.SET_FEATURES, u64(0), [], VERSION, 0x10000) },
  { name: 'an unknown request', code: 'ERR_VHOST_USER_MESSAGE', negotiate: false, send: (fe) => fe.send(99) },
  { name: 'a short SET_FEATURES payload', code: 'ERR_VHOST_USER_MESSAGE', negotiate: false, send: (fe) => fe.send(R.SET_FEATURES, new Uint8Array(4)) },
  { name: 'features that were not offered', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe) => fe.send(R.SET_FEATURES, u64(1n << 63n)) },
  { name: 'protocol features that were not offered', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe) => fe.send(R.SET_PROTOCOL_FEATURES, u64(1n << 5n)) },
  { name: 'an fd on a message that takes none', code: 'ERR_VHOST_USER_FDS', negotiate: false, send: (fe, g) => fe.send(R.SET_OWNER, undefined, [g.fd]) },
  { name: 'more fds than any message may carry', code: 'ERR_VHOST_USER_FDS', negotiate: false, send: (fe, g) => fe.send(R.SET_OWNER, undefined, new Array(9).fill(g.fd)) },
  { name: 'GET_CONFIG without the CONFIG protocol feature', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe) => fe.send(R.GET_CONFIG, configPayload(0, 4)) },
  { name: 'SET_LOG_BASE without LOG_SHMFD', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe, g) => fe.send(R.SET_LOG_BASE, logPayload(64, 0), [g.fd]) },
  { name: 'SET_VRING_ENABLE without protocol features', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe) => fe.send(R.SET_VRING_ENABLE, vringState(0, 1)) },
  { name: 'a memory table with fewer fds than regions', code: 'ERR_VHOST_USER_FDS', send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable(g.regions), [g.fd]) },
  { name: 'a memory table of 0 regions', code: 'ERR_VHOST_USER_MEM_TABLE', send: (fe) => fe.send(R.SET_MEM_TABLE, memTable([])) },
  { name: 'a memory table of 9 regions', code: 'ERR_VHOST_USER_MEM_TABLE', send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable(g.regions, 9), [g.fd, g.fd]) },
  { name: 'a memory table whose count disagrees with its size', code: 'ERR_VHOST_USER_MESSAGE', send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable(g.regions, 1), [g.fd]) },
  {
    name: 'regions that overlap in guest addresses',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable([g.regions[0], { ...g.regions[1], gpa: MiB / 2 }]), [g.fd, g.fd]),
  },
  {
    name: 'regions that overlap in user addresses',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable([g.regions[0], { ...g.regions[1], uva: UVA_BASE + 4096n }]), [g.fd, g.fd]),
  },
  {
    name: 'a region past the end of its fd',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable([{ ...g.regions[1], size: 2 * MiB }]), [g.fd]),
  },
  {
    name: 'a region of 0 bytes',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable([{ ...g.regions[0], size: 0 }]), [g.fd]),
  },
  {
    name: 'a region beyond 2^53',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.SET_MEM_TABLE, memTable([{ ...g.regions[0], gpa: 1n << 60n }]), [g.fd]),
  },
  {
    name: 'a region whose fd is not a sealed memfd (an eventfd)',
    code: 'ERR_VHOST_USER_UNSEALED',
    send: (fe, g) => {
      const ev = eventfd();
      fe.send(R.SET_MEM_TABLE, memTable([g.regions[0]]), [ev]);
      closeFd(ev);
    },
  },
  {
    name: 'a region in a memfd not sealed against shrinking',
    code: 'ERR_VHOST_USER_UNSEALED',
    send: (fe, g) => {
      const fd = unsealedMemfd(2 * MiB);
      fe.send(R.SET_MEM_TABLE, memTable([g.regions[0]]), [fd]);
      closeFd(fd);
    },
  },
  {
    name: 'ADD_MEM_REG of a memfd not sealed against shrinking',
    code: 'ERR_VHOST_USER_UNSEALED',
    send: (fe, g) => {
      const fd = unsealedMemfd(2 * MiB);
      fe.send(R.ADD_MEM_REG, singleRegion({ ...g.regions[1], gpa: 8 * MiB, uva: UVA_BASE + 64n * BigInt(MiB) }), [fd]);
      closeFd(fd);
    },
  },
  {
    name: 'a dirty log in a memfd not sealed against shrinking',
    code: 'ERR_VHOST_USER_UNSEALED',
    send: (fe) => {
      const fd = unsealedMemfd(4096);
      fe.send(R.SET_LOG_BASE, logPayload(4096, 0), [fd]);
      closeFd(fd);
    },
  },
  { name: 'GET_MAX_MEM_SLOTS without CONFIGURE_MEM_SLOTS', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe) => fe.send(R.GET_MAX_MEM_SLOTS) },
  { name: 'ADD_MEM_REG without CONFIGURE_MEM_SLOTS', code: 'ERR_VHOST_USER_STATE', negotiate: false, send: (fe, g) => fe.send(R.ADD_MEM_REG, singleRegion(g.regions[0]), [g.fd]) },
  { name: 'ADD_MEM_REG without its fd', code: 'ERR_VHOST_USER_FDS', send: (fe, g) => fe.send(R.ADD_MEM_REG, singleRegion(g.regions[0])) },
  {
    name: 'ADD_MEM_REG of a region that overlaps one in the table',
    code: 'ERR_VHOST_USER_MEM_TABLE',
    send: (fe, g) => fe.send(R.ADD_MEM_REG, singleRegion({ ...g.regions[1], gpa: MiB / 2, uva: UVA_BASE + 64n * BigInt(MiB) }), [g.fd]),
  },
  { name: 'REM_MEM_REG of a region not in the table', code: 'ERR_VHOST_USER_MEM_TABLE', send: (fe, g) => fe.send(R.REM_MEM_REG, singleRegion({ ...g.regions[1], size: 4096 })) },
  { name: 'REM_MEM_REG with two fds', code: 'ERR_VHOST_USER_FDS', send: (fe, g) => fe.send(R.REM_MEM_REG, singleRegion(g.regions[1]), [g.fd, g.fd]) },
  {
    name: 'REM_MEM_REG of the memory a running vring lives in',
    code: 'ERR_VHOST_USER_RING_ADDRESS',
    send: (fe, g) => {
      const { kick, call } = setupVring(fe, g);
      fe.send(R.REM_MEM_REG, singleRegion(g.regions[0]));
      [kick, call].forEach(closeFd);
    },
  },
  { name: 'a vring index beyond the device', code: 'ERR_VHOST_USER_VRING', send: (fe) => fe.send(R.SET_VRING_NUM, vringState(5, 16)) },
  { name: 'a vring size that is not a power of two', code: 'ERR_VHOST_USER_VRING', send: (fe) => fe.send(R.SET_VRING_NUM, vringState(0, 24)) },
  { name: 'a vring base beyond u16', code: 'ERR_VHOST_USER_VRING', send: (fe) => fe.send(R.SET_VRING_BASE, vringState(0, 0x10000)) },
  { name: 'vring addresses before its size', code: 'ERR_VHOST_USER_STATE', send: (fe, g) => fe.send(R.SET_VRING_ADDR, vringAddr(0, ring(g, 0x4000))) },
  {
    name: 'a descriptor table outside the memory table',
    code: 'ERR_VHOST_USER_RING_ADDRESS',
    send: (fe) => {
      fe.send(R.SET_VRING_NUM, vringState(0, 16));
      fe.send(R.SET_VRING_ADDR, vringAddr(0, { desc: UVA_BASE + BigInt(MiB), avail: UVA_BASE, used: UVA_BASE + 4096n }));
    },
  },
  {
    name: 'a used ring straddling the end of a region',
    code: 'ERR_VHOST_USER_RING_ADDRESS',
    send: (fe, g) => {
      fe.send(R.SET_VRING_NUM, vringState(0, 16));
      fe.send(R.SET_VRING_ADDR, vringAddr(0, ring(g, 0x4000, 0x8000, MiB - 64)));
    },
  },
  {
    name: 'a misaligned descriptor table (refused when the ring starts)',
    code: 'ERR_VHOST_USER_RING_ADDRESS',
    send: (fe, g) => {
      const kick = eventfd();
      fe.send(R.SET_VRING_NUM, vringState(0, 16));
      fe.send(R.SET_VRING_ADDR, vringAddr(0, ring(g, 0x4001)));
      fe.send(R.SET_VRING_KICK, u64(0), [kick]);
      fe.send(R.SET_VRING_ENABLE, vringState(0, 1));
      closeFd(kick);
    },
  },
  { name: 'unknown vring flags', code: 'ERR_VHOST_USER_VRING', send: (fe, g) => { fe.send(R.SET_VRING_NUM, vringState(0, 16)); fe.send(R.SET_VRING_ADDR, vringAddr(0, ring(g, 0x4000), 0x6)); } },
  { name: 'a kick without an fd (polling)', code: 'ERR_VHOST_USER_STATE', send: (fe) => fe.send(R.SET_VRING_KICK, u64(0x100)) },
  { name: 'a call with two fds', code: 'ERR_VHOST_USER_FDS', send: (fe, g) => fe.send(R.SET_VRING_CALL, u64(0), [g.fd, g.fd]) },
  { name: 'a call payload with stray bits', code: 'ERR_VHOST_USER_MESSAGE', send: (fe, g) => fe.send(R.SET_VRING_CALL, u64(0x1000), [g.fd]) },
  { name: 'a config range past 256 bytes', code: 'ERR_VHOST_USER_MESSAGE', send: (fe) => fe.send(R.GET_CONFIG, configPayload(250, 8)) },
  { name: 'a config payload shorter than its size', code: 'ERR_VHOST_USER_MESSAGE', send: (fe) => fe.send(R.SET_CONFIG, configPayload(0, 8, new Uint8Array(4))) },
  { name: 'a log that is empty', code: 'ERR_VHOST_USER_LOG', send: (fe, g) => fe.send(R.SET_LOG_BASE, logPayload(0, 0), [g.fd]) },
  { name: 'a log past the end of its fd', code: 'ERR_VHOST_USER_LOG', send: (fe, g) => fe.send(R.SET_LOG_BASE, logPayload(4 * MiB, 0), [g.fd]) },
  { name: 'a log without its fd', code: 'ERR_VHOST_USER_FDS', send: (fe) => fe.send(R.SET_LOG_BASE, logPayload(64, 0)) },
  {
    name: 'a hang-up in the middle of a message',
    code: 'ERR_VHOST_USER_MESSAGE',
    send: (fe) => {
      fe.sendRaw(Uint8Array.of(R.SET_FEATURES, 0, 0, 0, VERSION, 0, 0, 0, 8, 0, 0, 0, 1, 2));
      fe.close();
    },
  },
];

describe('VhostUserSession with a hostile front-end', () => {
  for (const h of hostile) {
    test(`${h.name}: ends the session with ${h.code} and releases everything`, async () => {
      const before = await openFds();
      const g = guest();
      const { fe, device, closed } = connect();
      if (h.negotiate !== false) await negotiate(fe, g);
      h.send(fe, g);
      const error = await closed;
      assert.ok(error instanceof VhostUserError, `expected an error, got ${String(error)}`);
      assert.equal(error.code, h.code, error.message);
      assert.ok(device.calls.includes('reset'));
      fe.close();
      g.ram.close();
      assert.deepEqual(await openFds(), before, 'every fd is closed');
    });
  }

  test('a blocking call fd with a full counter stops the queue instead of hanging the process', async (t) => {
    const fifo = join(tmpdir(), `guestmem-vhost-call-${process.pid}`);
    if (spawnSync('mkfifo', [fifo]).status !== 0) return t.skip('mkfifo is not available');
    const full = openSync(fifo, 'r+'); // blocking, as a front-end may leave its fds
    rmSync(fifo);
    writeSync(full, new Uint8Array(65536)); // no room for a signal
    const g = guest();
    const { fe, device, closed, queueErrors } = connect();
    await negotiate(fe, g);
    const { drv, kick, call } = setupVring(fe, g);
    fe.send(R.SET_VRING_CALL, u64(0), [full]);
    await until(() => device.queues.has(0), 'the queue to start');
    drv.post([], [8]);
    eventfdWrite(kick);
    await until(() => queueErrors.length > 0, 'the queue error');
    const error = queueErrors[0] as VhostUserError;
    assert.equal(error.code, 'ERR_VHOST_USER_SYSTEM');
    assert.equal(error.errno, 'EAGAIN');
    assert.equal(await fe.ask(R.GET_QUEUE_NUM), 2n, 'the session goes on');
    fe.close();
    assert.equal(await closed, undefined);
    [kick, call, full].forEach(closeFd);
    g.ram.close();
  });

  test('a kick fd whose polling fails ends the session (libuv stops polling it)', async () => {
    const { g, fe, closed, drv, kickEnd, frontEnd } = await vringKickedBySocket();
    // Readable (8 bytes wait) and in error: the peer goes away with bytes it never read.
    sendMsg(kickEnd, Uint8Array.of(1));
    sendMsg(frontEnd, new Uint8Array(8));
    closeFd(frontEnd);
    const error = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r('still open'), 1000))]);
    assert.ok(error instanceof VhostUserError, String(error));
    assert.equal(error.code, 'ERR_VHOST_USER_SYSTEM');
    assert.equal(error.errno, 'EBADF');
    [kickEnd, drv.kick, drv.call].forEach(closeFd);
    fe.close();
    g.ram.close();
  });

  test('a kick fd that is not an eventfd ends the session when it fires, and the process keeps running', async () => {
    const { g, fe, closed, drv, kickEnd, frontEnd } = await vringKickedBySocket();
    sendMsg(frontEnd, Uint8Array.of(1, 2, 3)); // 3 bytes: not an eventfd counter
    const error = await closed;
    assert.equal(error?.code, 'ERR_VHOST_USER_SYSTEM');
    assert.equal(error?.errno, 'EPROTO');
    [kickEnd, frontEnd, drv.kick, drv.call].forEach(closeFd);
    fe.close();
    g.ram.close();
  });

  test('a refused message with NEED_REPLY is answered with a failure before the hang-up', async () => {
    const g = guest();
    const { fe, closed } = connect();
    await negotiate(fe, g);
    fe.send(R.SET_VRING_NUM, vringState(9, 16), [], VERSION | FLAG_NEED_REPLY);
    const r = await fe.reply();
    assert.equal(r.request, R.SET_VRING_NUM);
    assert.equal(r.payload.getBigUint64(0, true), 1n);
    await fe.hungUp();
    assert.equal((await closed)?.code, 'ERR_VHOST_USER_VRING');
    fe.close();
    g.ram.close();
  });

  test('a refused memory table leaves the old one in place until the session ends', async () => {
    const g = guest();
    const { fe, session, closed } = connect();
    await negotiate(fe, g);
    const mem = session.memory;
    fe.send(R.SET_MEM_TABLE, memTable([{ ...g.regions[1], size: 2 * MiB }]), [g.fd]);
    assert.equal((await closed)?.code, 'ERR_VHOST_USER_MEM_TABLE');
    assert.equal(mem?.numRegions, 2);
    fe.close();
    g.ram.close();
  });
});

test('a session offers only the protocol features it is told to, and refuses the others', async () => {
  const without = PROTOCOL_FEATURES & ~bit(ProtocolFeature.CONFIGURE_MEM_SLOTS);
  const { fe, session, closed } = connect(undefined, without);
  assert.equal(session.offeredProtocolFeatures, without);
  assert.equal(await fe.ask(R.GET_PROTOCOL_FEATURES), without);
  fe.send(R.SET_PROTOCOL_FEATURES, u64(PROTOCOL_FEATURES));
  assert.equal((await closed)?.code, 'ERR_VHOST_USER_STATE');
  fe.close();
});

test('offered protocol features are REPLY_ACK, CONFIG, MQ, LOG_SHMFD, RESET_DEVICE and CONFIGURE_MEM_SLOTS', () => {
  const expected: bigint[] = [
    ProtocolFeature.MQ,
    ProtocolFeature.LOG_SHMFD,
    ProtocolFeature.REPLY_ACK,
    ProtocolFeature.CONFIG,
    ProtocolFeature.RESET_DEVICE,
    ProtocolFeature.CONFIGURE_MEM_SLOTS,
  ];
  assert.equal(PROTOCOL_FEATURES, expected.reduce((a, b) => a | bit(b), 0n));
});
