/**
 * The virtio-blk configuration space (virtio 1.2, section 5.2.4) and feature bits: the layout as
 * a struct, and an encoder that gives the bytes a transport (or vhost-user GET_CONFIG) returns.
 */
import { structLayout } from '../bytes/struct.js';
import { u8, u16le, u32le, u64leNumber } from '../bytes/values.js';
import { VolatileSlice } from '../volatile/slice.js';
import { VirtioError } from './errors.js';

/** Bytes of one sector, the unit of capacity and of request offsets. */
export const SECTOR_SIZE = 512;

/** Feature bits of a block device. */
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

const fields = {
  /** Size in 512-byte sectors. */
  capacity: u64leNumber,
  size_max: u32le,
  seg_max: u32le,
  cylinders: u16le,
  heads: u8,
  sectors: u8,
  blk_size: u32le,
  physical_block_exp: u8,
  alignment_offset: u8,
  min_io_size: u16le,
  opt_io_size: u32le,
  writeback: u8,
  unused0: u8,
  num_queues: u16le,
  max_discard_sectors: u32le,
  max_discard_seg: u32le,
  discard_sector_alignment: u32le,
  max_write_zeroes_sectors: u32le,
  max_write_zeroes_seg: u32le,
  write_zeroes_may_unmap: u8,
  unused1: u8,
  unused2: u16le,
  max_secure_erase_sectors: u32le,
  max_secure_erase_seg: u32le,
  secure_erase_sector_alignment: u32le,
};

/** `struct virtio_blk_config`, packed little-endian, 72 bytes (up to the secure-erase fields). */
export const VirtioBlkConfigLayout = structLayout('virtio_blk_config', fields);

/** The fields of {@link VirtioBlkConfigLayout}. */
export type VirtioBlkConfig = { [K in keyof typeof fields]: number };

const FIELD_NAMES = VirtioBlkConfigLayout.fields.map((f) => f.name);

/**
 * The configuration space bytes for `values`; fields not given are 0.
 *
 * @throws {VirtioError} `ERR_INVALID_ARG` for an unknown field or a value its type cannot hold.
 */
export function encodeBlkConfig(values: Partial<VirtioBlkConfig>): Uint8Array {
  const full: Record<string, number> = Object.fromEntries(FIELD_NAMES.map((n) => [n, 0]));
  for (const [k, v] of Object.entries(values)) {
    if (!(k in full)) throw new VirtioError('ERR_INVALID_ARG', `virtio_blk_config has no field ${k}`);
    full[k] = v as number;
  }
  const bytes = new Uint8Array(VirtioBlkConfigLayout.size);
  try {
    new VolatileSlice(bytes).writeStruct(VirtioBlkConfigLayout, 0, full as VirtioBlkConfig);
  } catch (err) {
    throw new VirtioError('ERR_INVALID_ARG', (err as Error).message, { cause: err });
  }
  return bytes;
}

/** Reads configuration space bytes back into fields (as a driver sees them). */
export function decodeBlkConfig(bytes: Uint8Array): VirtioBlkConfig {
  if (bytes.length < VirtioBlkConfigLayout.size) {
    throw new VirtioError('ERR_INVALID_ARG', `virtio_blk_config needs ${VirtioBlkConfigLayout.size} bytes, got ${bytes.length}`);
  }
  return new VolatileSlice(bytes).readStruct(VirtioBlkConfigLayout, 0) as VirtioBlkConfig;
}
