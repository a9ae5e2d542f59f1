/**
 * A virtio-blk device over a disk image file, driven by the test driver: the guest writes a few
 * sectors (one request through an indirect table), flushes, reads them back, zeroes some, asks for
 * the device id, and sends one request past the end of the disk, which is refused with IOERR and
 * changes nothing. Data moves between the image and guest memory with readv/writev, no copies.
 *
 * Run: node build/examples/virtio-blk.js [image]   (default: a temporary 1 MiB image)
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestAddress, GuestMemory } from 'guestmem';
import {
  FdDisk,
  type PostedChain,
  SECTOR_SIZE,
  SplitQueue,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VirtioBlk,
  VirtqueueDriver,
  decodeBlkConfig,
} from 'guestmem/virtio';

const G = GuestAddress;
const tmp = process.argv[2] === undefined ? mkdtempSync(join(tmpdir(), 'guestmem-virtio-blk-')) : undefined;
const image = process.argv[2] ?? join(tmp as string, 'disk.img');
if (tmp !== undefined) writeFileSync(image, new Uint8Array(1 << 20));
const initial = readFileSync(image);
const fd = openSync(image, 'r+');

try {
  // Guest side: 1 MiB of RAM, a 64-entry queue at 0, request buffers from 0x10000.
  const mem = GuestMemory.fromRanges([[G(0), 1 << 20]]);
  const drv = new VirtqueueDriver(mem, { size: 64, dataBase: G(0x10000), dataSize: 0xf0000, eventIdx: true });

  // Device side: the queue the transport would build from the driver's ring addresses.
  const queue = new SplitQueue(mem, drv.queueConfig());
  const blk = new VirtioBlk(new FdDisk(fd), { id: 'guestmem-example', queueSize: queue.size });
  const cfg = decodeBlkConfig(blk.config());
  console.log(`disk ${image}: ${cfg.capacity} sectors of ${cfg.blk_size} bytes, seg_max ${cfg.seg_max}`);

  const header = (type: number, sector: number) => {
    const h = new Uint8Array(16);
    new DataView(h.buffer).setUint32(0, type, true);
    new DataView(h.buffer).setBigUint64(8, BigInt(sector), true);
    return h;
  };
  const status = (p: PostedChain) => drv.read(p.writable[p.writable.length - 1])[0];
  /** The device's run loop for one kick: drain, re-enable notifications, drain what raced in. */
  const serve = () => {
    let handled = 0;
    do {
      queue.disableNotification();
      handled += blk.processQueue(queue);
    } while (queue.enableNotification());
    return { handled, interrupt: queue.needsNotification() };
  };

  const data = Uint8Array.from({ length: 8 * SECTOR_SIZE }, (_, i) => (i * 13 + 5) & 0xff);
  const requests = [
    drv.post([header(VIRTIO_BLK_T_OUT, 16), data.subarray(0, 3 * SECTOR_SIZE)], [1]),
    drv.post([header(VIRTIO_BLK_T_OUT, 19), data.subarray(3 * SECTOR_SIZE)], [1], { indirect: true }),
    drv.post([header(VIRTIO_BLK_T_FLUSH, 0)], [1]),
  ];
  console.log(`posted ${requests.length} requests, kick: ${drv.kick()}`);
  const w = serve();
  console.log(`device handled ${w.handled}, interrupt: ${w.interrupt}, statuses: ${requests.map(status).join(',')}`);
  console.log(`used: ${JSON.stringify(drv.used())}`);

  const read = drv.post([header(VIRTIO_BLK_T_IN, 16)], [4 * SECTOR_SIZE, 4 * SECTOR_SIZE, 1]);
  const id = drv.post([header(VIRTIO_BLK_T_GET_ID, 0)], [20, 1]);
  drv.kick();
  serve();
  const back = new Uint8Array([...drv.read(read.writable[0]), ...drv.read(read.writable[1])]);
  const same = back.every((b, i) => b === data[i]);
  console.log(`read back 8 sectors: status ${status(read)}, ${same ? 'identical' : 'DIFFERENT'}`);
  console.log(`device id: ${new TextDecoder().decode(drv.read(id.writable[0])).replace(/\0+$/, '')}`);
  drv.used();

  const seg = new Uint8Array(16);
  new DataView(seg.buffer).setBigUint64(0, 18n, true);
  new DataView(seg.buffer).setUint32(8, 2, true);
  const zero = drv.post([header(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg], [1]);
  const past = drv.post([header(VIRTIO_BLK_T_OUT, cfg.capacity - 1), data.subarray(0, 2 * SECTOR_SIZE)], [1]);
  drv.kick();
  serve();
  console.log(`write-zeroes of sectors 18-19: status ${status(zero)}`);
  console.log(`write of 2 sectors at ${cfg.capacity - 1} (past the end): status ${status(past)} (${status(past) === VIRTIO_BLK_S_OK ? 'OK' : 'refused'})`);
  drv.used();

  const disk = readFileSync(image);
  const expected = new Uint8Array(initial);
  expected.set(data, 16 * SECTOR_SIZE);
  expected.fill(0, 18 * SECTOR_SIZE, 20 * SECTOR_SIZE);
  console.log(`image check: ${Buffer.compare(disk, expected) === 0 ? 'sectors 16-23 as written, 18-19 zeroed, nothing else touched' : 'MISMATCH'}`);
} finally {
  closeSync(fd);
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
}
