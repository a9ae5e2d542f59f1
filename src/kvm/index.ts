/**
 * `guestmem/kvm`: a KVM virtual machine on guestmem memory (Linux, x86-64, /dev/kvm). Memory
 * slots follow a `MemoryManager`'s flat view (or a GuestMemory's regions), MMIO exits go
 * to the manager, KVM's dirty log is merged into guestmem's bitmaps, and vCPUs run tiny guests
 * or real ones, in the main thread or a worker.
 *
 * Importing this module throws `MmapError` `ERR_NATIVE_UNAVAILABLE` where guestmem's addon
 * cannot load; {@link KvmVm.create} throws {@link KvmError} `ERR_KVM_UNAVAILABLE` where /dev/kvm
 * cannot be opened.
 *
 * @module
 */
export { KvmError, type KvmErrorCode, type KvmErrorDetails } from './errors.js';
export { KvmVm, type KvmSlotInfo, type KvmVmOptions } from './vm.js';
export {
  KvmVcpu,
  type FailEntryExit,
  type InternalErrorExit,
  type IoExit,
  type KvmVcpuDescription,
  type MmioDispatcher,
  type MmioExit,
  type OtherExit,
  type SimpleExit,
  type VcpuExit,
} from './vcpu.js';
export type { DescriptorTable, Registers, Segment, SpecialRegisters } from './registers.js';
