import type { GuestAddress } from '../address/address.js';
import type { AccessSize } from '../manager/regions.js';
import { KvmError } from './errors.js';
import { kvm, kvmCall } from './native.js';
import { decodeRegisters, decodeSpecialRegisters, encodeRegisters, encodeSpecialRegisters, type Registers, type SpecialRegisters } from './registers.js';

/** A guest `in` or `out`. */
export interface IoExit {
  /** The exit kind. */
  readonly reason: 'io';
  /** `out`: the guest wrote `data`; `in`: it reads what is put in `data`. */
  readonly direction: 'in' | 'out';
  /** The I/O port. */
  readonly port: number;
  /** Bytes per access: 1, 2 or 4. */
  readonly size: number;
  /** Accesses (more than 1 for `rep ins`/`rep outs`). */
  readonly count: number;
  /**
   * `size * count` bytes: what the guest wrote (`out`), or where to put what it reads (`in`):
   * bytes written here before the next {@link KvmVcpu.run} are what the guest gets. Valid until
   * that run.
   */
  readonly data: Uint8Array;
}

/** A guest access to guest physical memory that no writable slot holds. */
export interface MmioExit {
  /** The exit kind. */
  readonly reason: 'mmio';
  /** Whether the guest reads or writes. */
  readonly direction: 'read' | 'write';
  /** The guest physical address. */
  readonly address: GuestAddress;
  /** Bytes: 1, 2, 4 or 8. */
  readonly size: number;
  /** What the guest wrote, or where to put what it reads, as for {@link IoExit.data}. */
  readonly data: Uint8Array;
}

/** Exits that carry no data. */
export interface SimpleExit {
  /**
   * `hlt`: the guest halted; `shutdown`: a triple fault or similar; `closed`: the vCPU (or its
   * VM) was closed, before or during the run.
   */
  readonly reason: 'hlt' | 'shutdown' | 'closed';
}

/** KVM could not enter the guest (bad guest state). */
export interface FailEntryExit {
  /** The exit kind. */
  readonly reason: 'fail-entry';
  /** The hardware's reason code. */
  readonly hardwareReason: bigint;
}

/** KVM met something it cannot emulate. */
export interface InternalErrorExit {
  /** The exit kind. */
  readonly reason: 'internal-error';
  /** `KVM_INTERNAL_ERROR_*` sub-error. */
  readonly suberror: number;
}

/** Any other exit reason, by its `KVM_EXIT_*` number. */
export interface OtherExit {
  /** The exit kind. */
  readonly reason: 'other';
  /** The `KVM_EXIT_*` number. */
  readonly code: number;
}

/** Why {@link KvmVcpu.run} returned. */
export type VcpuExit = IoExit | MmioExit | SimpleExit | FailEntryExit | InternalErrorExit | OtherExit;

/** Handles MMIO exits: a memory manager's guest access dispatch. */
export interface MmioDispatcher {
  /** A guest read of `size` bytes at `addr`: the value (little-endian). */
  read(addr: GuestAddress, size: AccessSize): number;
  /** A guest write of `size` bytes at `addr`. */
  write(addr: GuestAddress, size: AccessSize, value: number): void;
}

/** What {@link KvmVcpu.share} returns: a worker of the same process runs the vCPU from it. */
export interface KvmVcpuDescription {
  /** Marks the data as a vCPU description. */
  readonly kind: 'guestmem/kvm-vcpu';
  /** The vCPU's key in the addon's process-wide registry. */
  readonly id: number;
  /** The vCPU's index in its VM. */
  readonly index: number;
}

const EXIT_IO = 2;
const EXIT_HLT = 5;
const EXIT_MMIO = 6;
const EXIT_SHUTDOWN = 8;
const EXIT_FAIL_ENTRY = 9;
const EXIT_INTR = 10;
const EXIT_INTERNAL_ERROR = 17;

/** Closes vCPUs that were collected without being closed. */
const vcpuCleanup = new FinalizationRegistry<number>((id) => kvm.kvmCloseVcpu(id));

/**
 * One virtual CPU of a {@link KvmVm}. {@link KvmVcpu.run} enters the guest and returns the
 * next exit that needs the VMM; with a memory manager attached to the VM, MMIO exits are
 * served by the manager and the guest resumes without returning.
 *
 * A vCPU can run in a worker thread: send {@link KvmVcpu.share} and rebuild it there with
 * {@link KvmVcpu.fromShared}. Closing it (or its VM) from any thread makes a run in progress
 * return `{ reason: 'closed' }`.
 */
export class KvmVcpu {
  /** The vCPU's index in its VM (its APIC id). */
  readonly index: number;
  readonly #id: number;
  readonly #record: Uint8Array;
  readonly #view: DataView;
  readonly #regs: BigUint64Array;
  readonly #sregs: Uint8Array;
  readonly #mmio: (() => MmioDispatcher | undefined) | undefined;
  readonly #owner: boolean;

  /** @internal Made by `KvmVm.createVcpu` or {@link KvmVcpu.fromShared}. */
  constructor(id: number, index: number, mmio: (() => MmioDispatcher | undefined) | undefined, owner: boolean) {
    this.#id = id;
    this.index = index;
    this.#mmio = mmio;
    this.#owner = owner;
    this.#record = new Uint8Array(kvm.KVM_EXIT_RECORD);
    this.#view = new DataView(this.#record.buffer);
    this.#regs = new BigUint64Array(kvm.KVM_REGS_COUNT);
    this.#sregs = new Uint8Array(kvm.KVM_SREGS_SIZE);
    if (owner) vcpuCleanup.register(this, id, this);
  }

  /**
   * The vCPU of `description` (from {@link KvmVcpu.share} in another thread of this process).
   * Its MMIO exits are returned to the caller: the memory manager lives in the thread that
   * attached it.
   */
  static fromShared(description: KvmVcpuDescription): KvmVcpu {
    if (description?.kind !== 'guestmem/kvm-vcpu' || !Number.isSafeInteger(description.id) || !Number.isSafeInteger(description.index)) {
      throw new KvmError('ERR_KVM_INVALID_ARG', 'not a vCPU description from KvmVcpu.share');
    }
    return new KvmVcpu(description.id, description.index, undefined, false);
  }

  /** A description that {@link KvmVcpu.fromShared} in a worker of this process runs the vCPU from. */
  share(): KvmVcpuDescription {
    return { kind: 'guestmem/kvm-vcpu', id: this.#id, index: this.index };
  }

  /**
   * The general registers.
   *
   * @throws {KvmError} `ERR_KVM_CLOSED`, `ERR_KVM_IOCTL`.
   */
  getRegisters(): Registers {
    kvmCall('read the registers', () => kvm.kvmGetRegs(this.#id, this.#regs));
    return decodeRegisters(this.#regs);
  }

  /**
   * Sets the general registers.
   *
   * @throws {KvmError} `ERR_KVM_CLOSED`, `ERR_KVM_IOCTL`.
   */
  setRegisters(regs: Registers): void {
    encodeRegisters(regs, this.#regs);
    kvmCall('set the registers', () => kvm.kvmSetRegs(this.#id, this.#regs));
  }

  /**
   * The special registers (segments, descriptor tables, control registers, EFER).
   *
   * @throws {KvmError} `ERR_KVM_CLOSED`, `ERR_KVM_IOCTL`.
   */
  getSpecialRegisters(): SpecialRegisters {
    kvmCall('read the special registers', () => kvm.kvmGetSregs(this.#id, this.#sregs));
    return decodeSpecialRegisters(this.#sregs);
  }

  /**
   * Sets the special registers: how a guest starts in protected or long mode without firmware.
   *
   * @throws {KvmError} `ERR_KVM_CLOSED`, `ERR_KVM_IOCTL` (EINVAL for an inconsistent state).
   */
  setSpecialRegisters(sregs: SpecialRegisters): void {
    encodeSpecialRegisters(sregs, this.#sregs);
    kvmCall('set the special registers', () => kvm.kvmSetSregs(this.#id, this.#sregs));
  }

  /**
   * Runs the guest until an exit the caller must see. Blocks the calling thread meanwhile (run
   * it in a worker to keep an event loop going). MMIO exits go to the VM's memory manager, if
   * one is attached, and the guest resumes; a signal that interrupts the run resumes it too.
   *
   * @throws {KvmError} `ERR_KVM_IOCTL` (KVM_RUN failed, e.g. EFAULT for a slot whose memory
   *   went), `ERR_KVM_VCPU_BUSY` while another thread runs this vCPU.
   * @throws {MemoryManagerError} what the manager throws for a guest access it refuses
   *   (`ERR_UNMAPPED_ACCESS`, `ERR_READ_ONLY` under its `'error'` policy).
   */
  run(): VcpuExit {
    const rec = this.#record;
    const v = this.#view;
    const data = kvm.KVM_EXIT_DATA;
    for (;;) {
      const reason = kvmCall('run the vCPU', () => kvm.kvmRun(this.#id, rec));
      switch (reason) {
        case -1:
          return { reason: 'closed' };
        case EXIT_INTR:
          continue;
        case EXIT_IO: {
          const size = v.getUint32(8, true);
          const count = v.getUint32(16, true);
          return {
            reason: 'io',
            direction: v.getUint32(4, true) === 1 ? 'out' : 'in',
            size,
            port: v.getUint32(12, true),
            count,
            data: rec.subarray(data, data + size * count),
          };
        }
        case EXIT_MMIO: {
          const write = v.getUint32(4, true) === 1;
          const size = v.getUint32(8, true);
          const address = Number(v.getBigUint64(24, true)) as GuestAddress;
          const to = this.#mmio?.();
          if (to !== undefined) {
            dispatch(to, address, size, write, v, data);
            continue;
          }
          return { reason: 'mmio', direction: write ? 'write' : 'read', address, size, data: rec.subarray(data, data + size) };
        }
        case EXIT_HLT:
          return { reason: 'hlt' };
        case EXIT_SHUTDOWN:
          return { reason: 'shutdown' };
        case EXIT_FAIL_ENTRY:
          return { reason: 'fail-entry', hardwareReason: v.getBigUint64(24, true) };
        case EXIT_INTERNAL_ERROR:
          return { reason: 'internal-error', suberror: Number(v.getBigUint64(24, true)) };
        default:
          return { reason: 'other', code: reason };
      }
    }
  }

  /**
   * Closes the vCPU: a run in progress in any thread returns `{ reason: 'closed' }` promptly,
   * and later runs return it at once. Closing twice does nothing.
   */
  close(): void {
    kvm.kvmCloseVcpu(this.#id);
    if (this.#owner) vcpuCleanup.unregister(this);
  }
}

/** Serves one MMIO exit through `mmio`, in accesses of at most 4 bytes (values are numbers). */
function dispatch(mmio: MmioDispatcher, address: GuestAddress, size: number, write: boolean, v: DataView, data: number): void {
  for (let done = 0; done < size; ) {
    const n = (size - done >= 4 ? 4 : size - done >= 2 ? 2 : 1) as AccessSize;
    const at = (address + done) as GuestAddress;
    if (write) mmio.write(at, n, n === 4 ? v.getUint32(data + done, true) : n === 2 ? v.getUint16(data + done, true) : v.getUint8(data + done));
    else {
      const value = mmio.read(at, n);
      if (n === 4) v.setUint32(data + done, value, true);
      else if (n === 2) v.setUint16(data + done, value, true);
      else v.setUint8(data + done, value);
    }
    done += n;
  }
}
