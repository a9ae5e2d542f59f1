/**
 * The vhost-user wire format (QEMU docs/interop/vhost-user.rst): request numbers, header flags,
 * feature bits and payload sizes. Every message is a 12-byte little-endian header (request u32,
 * flags u32, size u32) followed by `size` bytes of payload; descriptors travel with its first byte.
 */

/** Front-end requests, by their wire numbers. */
export const Request = Object.freeze({
  /** The virtio features the back-end offers (reply: u64). */
  GET_FEATURES: 1,
  /** The features the front-end acknowledges (u64). */
  SET_FEATURES: 2,
  /** The front-end takes the session (no payload). */
  SET_OWNER: 3,
  /** Deprecated: forget the session's state. */
  RESET_OWNER: 4,
  /** The guest's memory regions, one fd each. */
  SET_MEM_TABLE: 5,
  /** The dirty log's shared memory (size, offset; one fd; reply: u64 0). */
  SET_LOG_BASE: 6,
  /** An eventfd for dirty-log sync notifications. */
  SET_LOG_FD: 7,
  /** A vring's size (vring state). */
  SET_VRING_NUM: 8,
  /** A vring's ring addresses, in the front-end's virtual addresses. */
  SET_VRING_ADDR: 9,
  /** The next available index a vring starts at (vring state). */
  SET_VRING_BASE: 10,
  /** Stops a vring (reply: the next available index). */
  GET_VRING_BASE: 11,
  /** The eventfd the driver kicks a vring with. */
  SET_VRING_KICK: 12,
  /** The eventfd the back-end signals completions with. */
  SET_VRING_CALL: 13,
  /** The eventfd the back-end signals a vring error with. */
  SET_VRING_ERR: 14,
  /** The protocol features the back-end offers (reply: u64). */
  GET_PROTOCOL_FEATURES: 15,
  /** The protocol features the front-end acknowledges (u64). */
  SET_PROTOCOL_FEATURES: 16,
  /** How many queues the device has (reply: u64; needs MQ). */
  GET_QUEUE_NUM: 17,
  /** Enables or disables a vring (vring state; needs protocol features). */
  SET_VRING_ENABLE: 18,
  /** Reads the device's config space (reply: the same header and the bytes; needs CONFIG). */
  GET_CONFIG: 24,
  /** Writes the device's config space (needs CONFIG). */
  SET_CONFIG: 25,
  /** Stops every vring and forgets the negotiation (needs RESET_DEVICE). */
  RESET_DEVICE: 34,
  /** How many memory regions ADD_MEM_REG may make (reply: u64; needs CONFIGURE_MEM_SLOTS). */
  GET_MAX_MEM_SLOTS: 36,
  /** Adds one memory region (u64 padding, then a region; one fd). */
  ADD_MEM_REG: 37,
  /** Removes one memory region (the same layout; an fd, if any, is closed). */
  REM_MEM_REG: 38,
});

/** Names of the requests, for messages. */
export function requestName(request: number): string {
  for (const [name, n] of Object.entries(Request)) if (n === request) return name;
  return `request ${request}`;
}

/** Header size in bytes. */
export const HEADER_SIZE = 12;
/** The protocol version, in the low two bits of the flags. */
export const VERSION = 0x1;
/** The bits of the flags that hold the version. */
export const FLAG_VERSION_MASK = 0x3;
/** Set on every message the back-end sends in answer. */
export const FLAG_REPLY = 0x4;
/** The front-end wants an acknowledgement (with REPLY_ACK negotiated). */
export const FLAG_NEED_REPLY = 0x8;
/** No request this back-end handles carries more: a longer payload is refused before reading. */
export const MAX_PAYLOAD = 4096;
/** The most descriptors one front-end message may carry (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MESSAGE_FDS = 8;
/** The most regions one SET_MEM_TABLE may carry. */
export const MAX_MEM_REGIONS = 8;
/** The most regions ADD_MEM_REG may build up (GET_MAX_MEM_SLOTS). */
export const MAX_MEM_SLOTS = 32;
/** The largest config space transfer (VHOST_USER_MAX_CONFIG_SIZE). */
export const MAX_CONFIG_SIZE = 256;
/** Pages the dirty log tracks: one bit per 4 KiB of guest physical memory (VHOST_LOG_PAGE). */
export const LOG_PAGE_SIZE = 4096;

/** Virtio feature bits the vhost-user transport itself deals with. */
export const Feature = Object.freeze({
  /** VHOST_F_LOG_ALL: log every write for live migration. */
  LOG_ALL: 26n,
  /** VIRTIO_RING_F_INDIRECT_DESC. */
  RING_INDIRECT_DESC: 28n,
  /** VIRTIO_RING_F_EVENT_IDX. */
  RING_EVENT_IDX: 29n,
  /** VHOST_USER_F_PROTOCOL_FEATURES: protocol features and SET_VRING_ENABLE exist. */
  PROTOCOL_FEATURES: 30n,
  /** VIRTIO_F_VERSION_1. */
  VERSION_1: 32n,
});

/** vhost-user protocol feature bits. */
export const ProtocolFeature = Object.freeze({
  /** GET_QUEUE_NUM and several queues. */
  MQ: 0n,
  /** The dirty log comes as shared memory (SET_LOG_BASE with an fd). */
  LOG_SHMFD: 1n,
  /** Messages with NEED_REPLY get a u64 status reply. */
  REPLY_ACK: 3n,
  /** GET_CONFIG and SET_CONFIG (QEMU requires it of vhost-user-blk). */
  CONFIG: 9n,
  /** The RESET_DEVICE request. */
  RESET_DEVICE: 13n,
  /** Memory regions come one at a time (ADD_MEM_REG, REM_MEM_REG) instead of SET_MEM_TABLE. */
  CONFIGURE_MEM_SLOTS: 15n,
});

/** `1n << bit`. */
export function bit(n: bigint): bigint {
  return 1n << n;
}

/** Payload sizes of the fixed-size requests. */
export const PayloadSize = Object.freeze({
  U64: 8,
  VRING_STATE: 8,
  VRING_ADDR: 40,
  MEM_REGION: 32,
  MEM_TABLE_HEADER: 8,
  SINGLE_MEM_REGION: 40,
  LOG: 16,
  CONFIG_HEADER: 12,
});

/** In SET_VRING_KICK/CALL/ERR: no descriptor comes with the message. */
export const VRING_NOFD_MASK = 0x100n;
/** In SET_VRING_KICK/CALL/ERR: the vring index. */
export const VRING_IDX_MASK = 0xffn;
/** In SET_VRING_ADDR flags: log writes to the used ring. */
export const VRING_F_LOG = 0x1;
