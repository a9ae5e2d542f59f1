/**
 * `guestmem/virtio`: split virtqueues, descriptor chains and scatter-gather buffers over guest
 * memory, a virtio-blk request handler, and a guest-side driver for device tests.
 *
 * @module
 */
export { VirtioError, type VirtioErrorCode, type VirtioErrorDetails } from './errors.js';
export {
  DESCRIPTOR_SIZE,
  type Descriptor,
  DescriptorChain,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from './chain.js';
export {
  MAX_QUEUE_SIZE,
  SplitQueue,
  type SplitQueueConfig,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY,
} from './queue.js';
export { IOV_MAX, IoVecBuffer, IoVecBufferMut, type ParsedChain, type ReaderWriter, splitChain } from './iovec.js';
export {
  type DriverOptions,
  type GuestBuffer,
  type PostedChain,
  type RawDescriptor,
  splitRingLayout,
  type UsedElement,
  VirtqueueDriver,
} from './driver.js';
export {
  decodeBlkConfig,
  encodeBlkConfig,
  SECTOR_SIZE,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_CONFIG_WCE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_GEOMETRY,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_F_WRITE_ZEROES,
  type VirtioBlkConfig,
  VirtioBlkConfigLayout,
} from './blk-config.js';
export { type BlockDisk, FdDisk, type FdDiskOptions } from './blk-disk.js';
export {
  BLK_HEADER_SIZE,
  BLK_SEGMENT_SIZE,
  type BlkOutcome,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VirtioBlk,
  type VirtioBlkOptions,
} from './blk.js';
