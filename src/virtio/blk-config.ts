/**
 * The virtio-blk configuration space (virtio 1.2, section 5.2.4) and feature bits: the layout as
 * a struct, and an encoder that gives the bytes a transport (or vhost-user GET_CONFIG) returns.
 */
import { type StructLayout, structLayout } from '../bytes/struct.js';
import { u8, u16le, u32le, u64leNumber } from '../bytes/values.js';
import { VolatileSlice } from '../volatile/slice.js';
import { VirtioError } from './errors.js';

/** Bytes of one sector, the unit of capacity and of request offsets. */
export const SECTOR_SIZE = 512;

/** Feature bit: size_max holds the largest segment. */
export const VIRTIO_BLK_F_SIZE_MAX = 1;
/** Feature bit: seg_max holds the most segments per request. */
export const VIRTIO_BLK_F_SEG_MAX = 2;
/** Feature bit: the legacy geometry fields are valid. */
export const VIRTIO_BLK_F_GEOMETRY = 4;
/** Feature bit: the disk is read-only. */
export const VIRTIO_BLK_F_RO = 5;
/** Feature bit: blk_size holds the logical block size. */
export const VIRTIO_BLK_F_BLK_SIZE = 6;
/** Feature bit: FLUSH requests are supported. */
export const VIRTIO_BLK_F_FLUSH = 9;
/** Feature bit: the topology fields are valid. */
export const VIRTIO_BLK_F_TOPOLOGY = 10;
/** Feature bit: writeback can be toggled in the configuration. */
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
/** Feature bit: num_queues holds the number of request queues. */
export const VIRTIO_BLK_F_MQ = 12;
/** Feature bit: DISCARD requests are supported. */
export const VIRTIO_BLK_F_DISCARD = 13;
/** Feature bit: WRITE_ZEROES requests are supported. */
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

const fields = {
  /** Size in 512-byte sectors. */
  capacity: u64leNumber,
  /** Largest segment in bytes (SIZE_MAX). */
  size_max: u32le,
  /** Most segments of one request (SEG_MAX). */
  seg_max: u32le,
  /** Legacy geometry (GEOMETRY). */
  cylinders: u16le,
  /** Legacy geometry. */
  heads: u8,
  /** Legacy geometry. */
  sectors: u8,
  /** Logical block size in bytes (BLK_SIZE). */
  blk_size: u32le,
  /** log2 of logical blocks per physical block (TOPOLOGY). */
  physical_block_exp: u8,
  /** Offset of the first aligned logical block. */
  alignment_offset: u8,
  /** Suggested minimum I/O size in blocks. */
  min_io_size: u16le,
  /** Optimal I/O size in blocks. */
  opt_io_size: u32le,
  /** Write-back cache in use (CONFIG_WCE). */
  writeback: u8,
  /** Padding. */
  unused0: u8,
  /** Number of request queues (MQ). */
  num_queues: u16le,
  /** Most sectors of one discard segment (DISCARD). */
  max_discard_sectors: u32le,
  /** Most segments of one discard request. */
  max_discard_seg: u32le,
  /** Discard alignment in sectors. */
  discard_sector_alignment: u32le,
  /** Most sectors of one write-zeroes segment (WRITE_ZEROES). */
  max_write_zeroes_sectors: u32le,
  /** Most segments of one write-zeroes request. */
  max_write_zeroes_seg: u32le,
  /** Write-zeroes may deallocate. */
  write_zeroes_may_unmap: u8,
  /** Padding. */
  unused1: u8,
  /** Padding. */
  unused2: u16le,
  /** Most sectors of one secure-erase segment. */
  max_secure_erase_sectors: u32le,
  /** Most segments of one secure-erase request. */
  max_secure_erase_seg: u32le,
  /** Secure-erase alignment in sectors. */
  secure_erase_sector_alignment: u32le,
};

/** `struct virtio_blk_config`, packed little-endian, 72 bytes (up to the secure-erase fields). */
export const VirtioBlkConfigLayout = structLayout('virtio_blk_config', fields);

/** The fields of {@link VirtioBlkConfigLayout}. */
export type VirtioBlkConfig = typeof VirtioBlkConfigLayout extends StructLayout<infer F> ? { [K in keyof F]: number } : never;

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
