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
  VIRTIO_RING_F_EVENT_IDX,
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
