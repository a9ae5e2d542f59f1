/**
 * `guestmem/virtio`: split virtqueues, descriptor chains and scatter-gather buffers over guest
 * memory, a virtio-blk request handler, and a guest-side driver for device tests.
 *
 * A device backend (vhost-user, or a VMM's own transport) drives a queue like this:
 * - it collects the queue size, the three ring guest addresses and the starting available index
 *   (vhost-user SET_VRING_NUM / SET_VRING_ADDR / SET_VRING_BASE), then builds a
 *   {@link SplitQueue}, which checks them against the guest memory;
 * - a new memory table (SET_MEM_TABLE, hot-plug) goes to {@link SplitQueue.setMemory};
 * - on a kick it pops chains and handles them (for a block device, {@link VirtioBlk.processQueue}),
 *   then interrupts the driver when {@link SplitQueue.needsNotification} says so;
 * - when the queue stops it reports {@link SplitQueue.lastAvailIdx} (GET_VRING_BASE).
 *
 * Everything read from guest memory is checked: a hostile driver gets a {@link VirtioError},
 * never a hang or an access outside guest memory.
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
  type SplitRingLayout,
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
