import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeBlkConfig, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO } from '../virtio/blk-config.js';
import { type BlockDisk, FdDisk } from '../virtio/blk-disk.js';
import {
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VirtioBlk,
} from '../virtio/blk.js';
import { VhostUserBlkDevice } from './blk-device.js';
import { VhostUserError } from './errors.js';
import { MmapBackend } from '../mmap/backend.js';
import { bit, Feature, Request as R } from './protocol.js';
import { closeFd, connectUnix, eventfdRead, eventfdWrite } from './sys.js';
import { configPayload, FakeFrontend, logPayload } from './test-support/frontend.js';
import { connect, guest, negotiate, setupVring, until } from './test-support/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-blk-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SECTORS = 256;
function image(name: string): string {
  const path = join(dir, name);
  writeFileSync(path, Uint8Array.from({ length: SECTORS * 512 }, (_, i) => (i >> 9) & 0xff));
  return path;
}

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return h;
}

describe('VhostUserBlkDevice', () => {
  test('serves writes, reads, flush and GET_ID between the image and guest memory; past the end is IOERR', async () => {
    const path = image('rw.img');
    const fd = openSync(path, 'r+');
    const device = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(fd), { id: 'vhost-test', queueSize: 16 }));
    const g = guest();
    const { fe, closed } = connect(device);
    await negotiate(fe, g);
    fe.send(R.GET_CONFIG, configPayload(0, 72));
    const cfg = decodeBlkConfig(new Uint8Array((await fe.reply()).payload.buffer, 12));
    assert.equal(cfg.capacity, SECTORS);
    assert.equal(cfg.num_queues, 1);
    const { drv, kick, call } = setupVring(fe, g);
    await until(() => device.requests === 0 && eventfdRead(call) === undefined, 'the queue');
    const data = Uint8Array.from({ length: 3 * 512 }, (_, i) => (i * 7 + 1) & 0xff);
    const posted = [
      drv.post([header(VIRTIO_BLK_T_OUT, 10), data], [1]),
      drv.post([header(VIRTIO_BLK_T_FLUSH, 0)], [1]),
      drv.post([header(VIRTIO_BLK_T_IN, 9)], [5 * 512, 1]),
      drv.post([header(VIRTIO_BLK_T_GET_ID, 0)], [20, 1]),
      drv.post([header(VIRTIO_BLK_T_OUT, SECTORS - 1), new Uint8Array(1024)], [1]),
    ];
    drv.kick();
    eventfdWrite(kick);
    await until(() => device.requests === posted.length, 'the requests');
    await until(() => eventfdRead(call) !== undefined, 'the interrupt');
    const status = (i: number) => drv.read(posted[i].writable.at(-1) as never)[0];
    assert.deepEqual(posted.map((_, i) => status(i)), [VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR]);
    const back = drv.read(posted[2].writable[0]);
    assert.deepEqual([...back.subarray(0, 512)], new Array(512).fill(9));
    assert.deepEqual(back.subarray(512, 2048), data);
    assert.deepEqual([...back.subarray(2048)], new Array(512).fill(13));
    assert.equal(new TextDecoder().decode(drv.read(posted[3].writable[0])).replace(/\0+$/, ''), 'vhost-test');
    const img = readFileSync(path);
    assert.deepEqual(img.subarray(10 * 512, 13 * 512), Buffer.from(data));
    assert.equal(img[(SECTORS - 1) * 512], SECTORS - 1, 'the refused request wrote nothing');
    assert.equal(img.length, SECTORS * 512);
    fe.close();
    await closed;
    [kick, call].forEach(closeFd);
    closeSync(fd);
    g.ram.close();
  });

  test('a guest that keeps posting cannot hold the event loop: the queue is served a queue-worth at a time', async () => {
    const fd = openSync(image('busy.img'), 'r+');
    const disk = new FdDisk(fd);
    let drv: ReturnType<typeof setupVring>['drv'] | undefined;
    let hostile = true;
    let head = -1;
    // The guest re-publishes its chain while the device reads it, as a hostile driver may.
    const busy: BlockDisk = Object.assign(Object.create(disk) as BlockDisk, {
      read: (...args: Parameters<BlockDisk['read']>) => {
        disk.read(...args);
        if (hostile) drv?.publish(head);
      },
    });
    const device = new VhostUserBlkDevice(new VirtioBlk(busy, { queueSize: 16 }));
    const g = guest();
    const { fe, closed } = connect(device);
    await negotiate(fe, g);
    const ring = setupVring(fe, g);
    drv = ring.drv;
    await until(() => eventfdRead(ring.call) === undefined, 'the queue');
    head = drv.post([header(VIRTIO_BLK_T_IN, 0)], [512, 1]).head;
    let turns = 0;
    const ticker = setInterval(() => turns++, 1);
    eventfdWrite(ring.kick);
    await until(() => device.requests > 1000, 'the hostile requests', 5000);
    const [before, seen] = [turns, device.requests];
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(turns > before, 'timers ran while the guest kept the queue full');
    assert.ok(device.requests > seen, 'and the queue kept being served');
    hostile = false;
    await until(() => drv?.availIdx === (device.requests & 0xffff), 'the queue to drain', 5000);
    clearInterval(ticker);
    fe.close();
    await closed;
    [ring.kick, ring.call].forEach(closeFd);
    closeSync(fd);
    g.ram.close();
  });

  test('dirty log: data a disk writes after the front-end cleared the log is logged when the request completes', async () => {
    const logMem = MmapBackend.memfd(4096, { name: 'fake-log' });
    // 3 MiB of guest physical pages: 96 bytes of log.
    const log = logMem.views().u8.subarray(0, 96);
    const marked = (gpa: number) => (log[Math.floor(gpa / 4096 / 8)] & (1 << (Math.floor(gpa / 4096) % 8))) !== 0;
    const disk: BlockDisk = {
      size: SECTORS * 512,
      readOnly: true,
      read(dst, offset, length) {
        // The front-end takes (clears) the log while the disk's readv is under way.
        log.fill(0);
        dst.views()[0].fill(0xab, offset, offset + length);
      },
      write: () => {},
      flush: () => {},
      discard: () => {},
      writeZeroes: () => {},
    };
    const device = new VhostUserBlkDevice(new VirtioBlk(disk, { queueSize: 16 }));
    const g = guest();
    const { fe, closed } = connect(device);
    await negotiate(fe, g, bit(Feature.LOG_ALL));
    assert.equal(await fe.ask(R.SET_LOG_BASE, logPayload(96, 0), [logMem.fd as number]), 0n);
    const { drv, kick, call } = setupVring(fe, g);
    try {
      await until(() => eventfdRead(call) === undefined, 'the queue');
      // Header, data and status share the page at 2 MiB; the data also reaches the next page.
      const posted = drv.post([header(VIRTIO_BLK_T_IN, 0)], [8 * 512, 1]);
      drv.kick();
      eventfdWrite(kick);
      await until(() => drv.used().length === 1, 'the request');
      const data = posted.writable[0];
      assert.equal(g.memory.readU8(data.addr), 0xab);
      assert.ok(marked(data.addr) && marked(data.addr + data.len - 1), 'both data pages are logged');
    } finally {
      fe.close();
      await closed;
      [kick, call].forEach(closeFd);
      logMem.close();
      g.ram.close();
    }
  });

  test('offers MQ for several queues and RO for a read-only image; refuses a bad queue count', () => {
    const fd = openSync(image('ro.img'), 'r');
    const ro = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(fd, { readOnly: true })), { queues: 4 });
    assert.equal(ro.maxQueues, 4);
    assert.notEqual(ro.features & (1n << BigInt(VIRTIO_BLK_F_MQ)), 0n);
    assert.notEqual(ro.features & (1n << BigInt(VIRTIO_BLK_F_RO)), 0n);
    assert.notEqual(ro.features & (1n << BigInt(VIRTIO_BLK_F_FLUSH)), 0n);
    assert.equal(decodeBlkConfig(ro.readConfig(0, 72)).num_queues, 4);
    for (const queues of [0, 17, 1.5]) {
      assert.throws(
        () => new VhostUserBlkDevice(ro.blk, { queues }),
        (e: unknown) => e instanceof VhostUserError && e.code === 'ERR_VHOST_USER_INVALID_ARG',
      );
    }
    closeSync(fd);
  });
});

describe('guestmem-vhost-user-blk', () => {
  const cli = fileURLToPath(new URL('./blk-cli.js', import.meta.url));

  test('listens on --socket and answers a front-end with the image as its disk', async () => {
    const sock = join(dir, 'cli.sock');
    const child = spawn(process.execPath, [cli, '--socket', sock, '--image', image('cli.img')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    try {
      await until(() => stderr.includes('serving'), 'the server to listen', 5000);
      const fe = new FakeFrontend(connectUnix(sock));
      assert.notEqual(await fe.ask(R.GET_FEATURES), 0n);
      const proto = await fe.ask(R.GET_PROTOCOL_FEATURES);
      fe.send(R.SET_PROTOCOL_FEATURES, new Uint8Array(new BigUint64Array([proto]).buffer));
      fe.send(R.GET_CONFIG, configPayload(0, 8));
      const r = await fe.reply();
      assert.equal(r.payload.getBigUint64(12, true), BigInt(SECTORS));
      fe.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    assert.match(stderr, /front-end connected/);
  });

  test('bad arguments exit with status 2 and the usage', () => {
    for (const args of [[], ['--socket', join(dir, 'x.sock')], ['--image', 'nope', '--socket', join(dir, 'y.sock')], ['--bogus']]) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: guestmem-vhost-user-blk/);
    }
  });
});
