/**
 * The KVM functions of guestmem's addon (native/kvm.c), and the translation of their failures
 * into {@link KvmError}s.
 */
import { GuestmemError } from '../errors.js';
import { host, native } from '../mmap/native.js';
import { KvmError } from './errors.js';

/** The addon's KVM exports; see native/kvm.c for what each checks. */
export interface KvmBinding {
  /** Bytes of the exit record {@link KvmBinding.kvmRun} fills. */
  readonly KVM_EXIT_RECORD: number;
  /** Where the exit record's data starts. */
  readonly KVM_EXIT_DATA: number;
  /** `sizeof(struct kvm_sregs)`. */
  readonly KVM_SREGS_SIZE: number;
  /** 64-bit fields of `struct kvm_regs`. */
  readonly KVM_REGS_COUNT: number;
  kvmOpen(): number;
  kvmApiVersion(fd: number): number;
  kvmCheckExtension(fd: number, cap: number): number;
  kvmVcpuMmapSize(fd: number): number;
  kvmCreateVm(fd: number): number;
  kvmSetTssAddr(vm: number, addr: number): void;
  kvmSetIdentityMapAddr(vm: number, addr: number): void;
  kvmSetMemoryRegion(vm: number, slot: number, flags: number, guest: number, size: number, memory: ArrayBuffer | null, offset: number): void;
  kvmEnableManualDirtyLog(vm: number): void;
  /** Fills `log` and returns how many pages it marks. */
  kvmGetDirtyLog(vm: number, slot: number, log: BigUint64Array): number;
  kvmClearDirtyLog(vm: number, slot: number, firstPage: number, pages: number, log: BigUint64Array): void;
  kvmCreateVcpu(vm: number, index: number, mmapSize: number): number;
  kvmCloseVcpu(id: number): void;
  kvmGetRegs(id: number, regs: BigUint64Array): void;
  kvmSetRegs(id: number, regs: BigUint64Array): void;
  kvmGetSregs(id: number, sregs: Uint8Array): void;
  kvmSetSregs(id: number, sregs: Uint8Array): void;
  kvmRun(id: number, record: Uint8Array): number;
}

/** The loaded addon's KVM half. */
export const kvm = native as unknown as KvmBinding;

/** `KVM_CAP_*` numbers (linux/kvm.h). */
export const Cap = Object.freeze({
  NR_MEMSLOTS: 10,
  READONLY_MEM: 81,
  MANUAL_DIRTY_LOG_PROTECT2: 168,
});

/** `KVM_MEM_*` slot flags. */
export const MemFlags = Object.freeze({ LOG_DIRTY_PAGES: 1, READONLY: 2 });

/** The errno name (`'ENOENT'`) of a system error number, positive or negative. */
export function errnoName(errno: number): string {
  return host.errnoInfo(-Math.abs(errno))?.[0] ?? `errno ${Math.abs(errno)}`;
}

/**
 * Runs `fn` (a call into the addon's KVM half) and rethrows its failure as a {@link KvmError}:
 * a failed ioctl as `ERR_KVM_IOCTL` with the ioctl's name and errno, the addon's own refusals
 * under their codes.
 *
 * @param what - What was being done, for the message (`'add memory slot 3'`).
 */
export function kvmCall<T>(what: string, fn: () => T, details: { region?: string; address?: number; length?: number } = {}): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GuestmemError) throw e;
    const err = e as { errno?: unknown; syscall?: unknown; code?: unknown; message?: unknown };
    if (typeof err?.errno === 'number') {
      const errno = errnoName(err.errno);
      const ioctl = typeof err.syscall === 'string' ? err.syscall : undefined;
      throw new KvmError('ERR_KVM_IOCTL', `cannot ${what}: ${ioctl} failed with ${errno} (${host.errnoInfo(-Math.abs(err.errno))?.[1] ?? 'unknown error'})`, {
        ...details,
        ioctl,
        errno,
        cause: e,
      });
    }
    const message = `cannot ${what}: ${String(err?.message ?? e)}`;
    if (err?.code === 'ERR_KVM_VCPU_CLOSED') throw new KvmError('ERR_KVM_CLOSED', message, { cause: e });
    if (err?.code === 'ERR_KVM_VCPU_BUSY') throw new KvmError('ERR_KVM_VCPU_BUSY', message, { cause: e });
    throw new KvmError('ERR_KVM_INVALID_ARG', message, { ...details, cause: e });
  }
}
