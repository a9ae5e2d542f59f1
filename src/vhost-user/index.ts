/**
 * `guestmem/vhost-user`: the back-end side of QEMU's vhost-user protocol over guestmem (Linux).
 * A {@link VhostUserServer} listens on an AF_UNIX socket; each front-end connection is a
 * {@link VhostUserSession} that negotiates features, maps the guest's RAM from the memfds it is
 * sent, keeps the dirty log, sets up vrings as `guestmem/virtio` split queues and hands them to a
 * {@link VhostUserDevice}. The transport (sockets, SCM_RIGHTS, eventfds, readiness watchers) is
 * exported too, for devices of one's own.
 *
 * @module
 */
export { VhostUserError, type VhostUserErrorCode, type VhostUserErrorDetails } from './errors.js';
export type { QueueNotifier, VhostUserDevice } from './device.js';
export { MAX_BLK_QUEUES, VhostUserBlkDevice, type VhostUserBlkOptions } from './blk-device.js';
export { VhostUserLog } from './log.js';
export { DEFAULT_MAX_MEMORY, type MemoryRegionDescription, type MemoryTableOptions, VhostUserMemoryTable } from './memory.js';
export { bit, Feature, MAX_MEM_REGIONS, MAX_MEM_SLOTS, ProtocolFeature, Request, requestName } from './protocol.js';
export { DEFAULT_NEGOTIATION_TIMEOUT, PROTOCOL_FEATURES, type SessionOptions, VhostUserSession } from './session.js';
export { type ServerOptions, VhostUserServer } from './server.js';
export {
  accept,
  adoptSocket,
  connectUnix,
  eventfd,
  eventfdRead,
  eventfdWrite,
  FdWatcher,
  listenUnix,
  MAX_FDS,
  Readiness,
  type Received,
  recvMsg,
  sendMsg,
  shrinkSealed,
  socketPair,
  watch,
} from './sys.js';
