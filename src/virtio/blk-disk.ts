/**
 * What a virtio-blk device stores its sectors in: the {@link BlockDisk} interface, and
 * {@link FdDisk}, its implementation over a file descriptor (an image file or a block device)
 * that moves data between the file and guest memory with readv/writev, no copy in between.
 */
import { validateIndex } from '../address/address.js';
import { nodeBuiltin } from '../node-builtin.js';
import { VirtioError } from './errors.js';
import type { IoVecBuffer, IoVecBufferMut } from './iovec.js';

/**
 * A disk: byte positions are checked by the caller to lie inside `size`. Each operation moves
 * everything it was asked to or throws.
 */
export interface BlockDisk {
  /** Bytes of the disk (the device reports `floor(size / 512)` sectors). */
  readonly size: number;
  /** True when writes, discards and write-zeroes must be refused. */
  readonly readOnly: boolean;
  /** Reads `length` bytes at `position` into `dst` from its byte `offset`. */
  read(dst: IoVecBufferMut, offset: number, length: number, position: number): void;
  /** Writes `length` bytes of `src` from its byte `offset` at `position`. */
  write(src: IoVecBuffer, offset: number, length: number, position: number): void;
  /** Makes every completed write durable. */
  flush(): void;
  /** The range's data is no longer needed (it may read back as anything). */
  discard(position: number, length: number): void;
  /** The range reads back as zeroes. */
  writeZeroes(position: number, length: number): void;
}

/** Options of an {@link FdDisk}. */
export interface FdDiskOptions {
  /** Bytes of the disk (default: the file's size now; give it for a block device, whose fstat size is 0). */
  size?: number;
  /** Refuse writes, discards and write-zeroes (default false). */
  readOnly?: boolean;
}

const ZEROES = new Uint8Array(1 << 20);
// Loaded only where it exists, so that guestmem/virtio loads in a browser (without FdDisk).
const fs = nodeBuiltin<typeof import('node:fs')>('node:fs');

/**
 * A {@link BlockDisk} over an open file descriptor. Reads and writes go straight between the
 * file and the guest's buffers (one readv/writev per IOV_MAX views, continued after partial
 * transfers); flush is fdatasync; write-zeroes writes zeroes; discard does nothing, which the
 * spec allows (the data may stay). The fd stays the caller's to close.
 */
export class FdDisk implements BlockDisk {
  /** The file descriptor (the caller's to close). */
  readonly fd: number;
  readonly size: number;
  readonly readOnly: boolean;

  /** @throws {VirtioError} `ERR_INVALID_ARG` outside Node.js (there are no file descriptors). */
  constructor(fd: number, options: FdDiskOptions = {}) {
    if (fs === undefined) throw new VirtioError('ERR_INVALID_ARG', 'an FdDisk needs Node.js (node:fs)');
    this.fd = fd;
    this.size = options.size === undefined ? fs.fstatSync(fd).size : validateIndex(options.size, 'size');
    this.readOnly = options.readOnly === true;
  }

  read(dst: IoVecBufferMut, offset: number, length: number, position: number): void {
    for (let done = 0; done < length; ) {
      const n = dst.readFromFd(this.fd, offset + done, length - done, position + done);
      if (n === 0) throw shortTransfer('read', position, length, done);
      done += n;
    }
  }

  write(src: IoVecBuffer, offset: number, length: number, position: number): void {
    for (let done = 0; done < length; ) {
      const n = src.writeToFd(this.fd, offset + done, length - done, position + done);
      if (n === 0) throw shortTransfer('write', position, length, done);
      done += n;
    }
  }

  flush(): void {
    fs!.fdatasyncSync(this.fd);
  }

  discard(_position: number, _length: number): void {}

  writeZeroes(position: number, length: number): void {
    for (let done = 0; done < length; ) {
      const n = fs!.writeSync(this.fd, ZEROES, 0, Math.min(ZEROES.length, length - done), position + done);
      if (n === 0) throw shortTransfer('write-zeroes', position, length, done);
      done += n;
    }
  }
}

function shortTransfer(what: string, position: number, length: number, done: number): VirtioError {
  return new VirtioError('ERR_BLK_IO', `the disk ${what} of ${length} bytes at ${position} stopped after ${done}`, {
    address: position,
    expected: length,
    completed: done,
  });
}
