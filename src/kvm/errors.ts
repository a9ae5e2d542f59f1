import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link KvmError}. */
export type KvmErrorCode =
  /** /dev/kvm cannot be opened (absent, no permission): {@link KvmError.errno} says why. */
  | 'ERR_KVM_UNAVAILABLE'
  /** The kernel speaks another KVM API version than 12. */
  | 'ERR_KVM_API_VERSION'
  /** A KVM ioctl failed; {@link KvmError.ioctl} and {@link KvmError.errno} say which and why. */
  | 'ERR_KVM_IOCTL'
  /** The kernel lacks a capability the request needs (read-only slots, say). */
  | 'ERR_KVM_CAPABILITY'
  /** Memory KVM cannot map into the guest: heap, SharedArrayBuffer or WebAssembly memory. */
  | 'ERR_KVM_NOT_MAPPABLE'
  /** A slot that does not start and end on a page boundary, in guest or host memory. */
  | 'ERR_KVM_UNALIGNED'
  /** More memory slots than the kernel allows (`KVM_CAP_NR_MEMSLOTS`). */
  | 'ERR_KVM_TOO_MANY_SLOTS'
  /** Dirty pages asked of memory that has no AtomicBitmap to merge KVM's log into. */
  | 'ERR_KVM_NOT_TRACKED'
  /** The VM already has memory attached (detach it first), or has none. */
  | 'ERR_KVM_ATTACHED'
  /** The VM or vCPU was closed. */
  | 'ERR_KVM_CLOSED'
  /** A vCPU run from a second thread while one runs it. */
  | 'ERR_KVM_VCPU_BUSY'
  /** An argument of the wrong kind or out of range. */
  | 'ERR_KVM_INVALID_ARG';

/** Facts a {@link KvmError} may carry beyond those of every guestmem error. */
export interface KvmErrorDetails extends ErrorDetails {
  /** Becomes the error's `ioctl`. */
  ioctl?: string | undefined;
  /** Becomes the error's `errno`. */
  errno?: string | undefined;
  /** Becomes the error's `region`. */
  region?: string | undefined;
}

/** Errors of guestmem/kvm: opening /dev/kvm, memory slots, dirty logs and vCPUs. */
export class KvmError extends GuestmemError<KvmErrorCode> {
  /** The ioctl (or system call) that failed, such as `'KVM_SET_USER_MEMORY_REGION'`. */
  readonly ioctl: string | undefined;
  /** The errno's name, such as `'EINVAL'`, for a failed ioctl or open. */
  readonly errno: string | undefined;
  /** The region (or span) concerned, by name, where there is one. */
  readonly region: string | undefined;

  constructor(code: KvmErrorCode, message: string, details: KvmErrorDetails = {}) {
    super(code, message, details);
    this.ioctl = details.ioctl;
    this.errno = details.errno;
    this.region = details.region;
  }
}
