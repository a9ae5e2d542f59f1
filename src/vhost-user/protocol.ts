/**
 * The vhost-user wire format (QEMU docs/interop/vhost-user.rst): request numbers, header flags,
 * feature bits and payload sizes. Every message is a 12-byte little-endian header (request u32,
 * flags u32, size u32) followed by `size` bytes of payload; descriptors travel with its first byte.
 */

/** Front-end requests, by their wire numbers. */
export const Request = Object.freeze({
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  RESET_DEVICE: 34,
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
  MQ: 0n,
  LOG_SHMFD: 1n,
  REPLY_ACK: 3n,
  CONFIG: 9n,
  RESET_DEVICE: 13n,
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
  LOG: 16,
  CONFIG_HEADER: 12,
});

/** In SET_VRING_KICK/CALL/ERR: no descriptor comes with the message. */
export const VRING_NOFD_MASK = 0x100n;
/** In SET_VRING_KICK/CALL/ERR: the vring index. */
export const VRING_IDX_MASK = 0xffn;
/** In SET_VRING_ADDR flags: log writes to the used ring. */
export const VRING_F_LOG = 0x1;
