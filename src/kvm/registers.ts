/**
 * x86 register sets as KVM_GET/SET_REGS and KVM_GET/SET_SREGS carry them, decoded from and
 * encoded to the kernel's structures (`struct kvm_regs`, `struct kvm_sregs`). 64-bit values
 * are BigInts: a guest register may hold any 64-bit value.
 */

/** The general registers (`struct kvm_regs`), in the kernel's order. */
export interface Registers {
  /** RAX. */
  rax: bigint;
  /** RBX. */
  rbx: bigint;
  /** RCX. */
  rcx: bigint;
  /** RDX. */
  rdx: bigint;
  /** RSI. */
  rsi: bigint;
  /** RDI. */
  rdi: bigint;
  /** RSP. */
  rsp: bigint;
  /** RBP. */
  rbp: bigint;
  /** R8. */
  r8: bigint;
  /** R9. */
  r9: bigint;
  /** R10. */
  r10: bigint;
  /** R11. */
  r11: bigint;
  /** R12. */
  r12: bigint;
  /** R13. */
  r13: bigint;
  /** R14. */
  r14: bigint;
  /** R15. */
  r15: bigint;
  /** The instruction pointer. */
  rip: bigint;
  /** The flags (bit 1 is always set). */
  rflags: bigint;
}

/** The field order of `struct kvm_regs`. */
export const REGISTER_NAMES = Object.freeze([
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const);

/** A segment register as KVM describes it (`struct kvm_segment`). */
export interface Segment {
  /** Linear base address. */
  base: bigint;
  /** Limit in bytes (KVM takes it already scaled by `g`). */
  limit: number;
  /** The selector (real mode: the segment, base = selector × 16). */
  selector: number;
  /** Descriptor type (e.g. 0xb: code, execute/read, accessed). */
  type: number;
  /** 1: present. */
  present: number;
  /** Descriptor privilege level, 0-3. */
  dpl: number;
  /** Default operation size: 1 for 32-bit code. */
  db: number;
  /** 1 for a code or data segment, 0 for a system one (TSS, LDT). */
  s: number;
  /** 1 for 64-bit code. */
  l: number;
  /** Granularity: 1 for 4 KiB units. */
  g: number;
  /** Available to software. */
  avl: number;
  /** 1: a null or unusable segment. */
  unusable: number;
}

/** A descriptor table register (GDTR, IDTR). */
export interface DescriptorTable {
  /** Linear address of the table. */
  base: bigint;
  /** Its size in bytes, minus 1. */
  limit: number;
}

/** The special registers (`struct kvm_sregs`). */
export interface SpecialRegisters {
  /** Code segment. */
  cs: Segment;
  /** Data segment. */
  ds: Segment;
  /** Extra segment. */
  es: Segment;
  /** FS. */
  fs: Segment;
  /** GS. */
  gs: Segment;
  /** Stack segment. */
  ss: Segment;
  /** Task register. */
  tr: Segment;
  /** Local descriptor table register. */
  ldt: Segment;
  /** Global descriptor table register. */
  gdt: DescriptorTable;
  /** Interrupt descriptor table register. */
  idt: DescriptorTable;
  /** CR0 (PE bit 0, PG bit 31). */
  cr0: bigint;
  /** CR2, the page fault address. */
  cr2: bigint;
  /** CR3, the page table root. */
  cr3: bigint;
  /** CR4 (PAE bit 5). */
  cr4: bigint;
  /** CR8, the task priority. */
  cr8: bigint;
  /** EFER (LME bit 8, LMA bit 10). */
  efer: bigint;
  /** The local APIC's base address MSR. */
  apicBase: bigint;
  /** The pending-interrupt bitmap, four 64-bit words, kept as read. */
  interruptBitmap: bigint[];
}

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SEGMENT_BYTES = 24;
const TABLES_AT = SEGMENTS.length * SEGMENT_BYTES;
const CONTROL_AT = TABLES_AT + 2 * 16;
const CONTROL = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;
const BITMAP_AT = CONTROL_AT + CONTROL.length * 8;
/** `sizeof(struct kvm_sregs)`, checked against the addon's at load. */
export const SREGS_BYTES = BITMAP_AT + 4 * 8;

/** Decodes `struct kvm_regs`. */
export function decodeRegisters(words: BigUint64Array): Registers {
  const out = {} as Registers;
  REGISTER_NAMES.forEach((name, i) => {
    out[name] = words[i];
  });
  return out;
}

/** Encodes `struct kvm_regs` into `words`. */
export function encodeRegisters(regs: Registers, words: BigUint64Array): void {
  REGISTER_NAMES.forEach((name, i) => {
    words[i] = BigInt.asUintN(64, regs[name]);
  });
}

/** Decodes `struct kvm_sregs`. */
export function decodeSpecialRegisters(bytes: Uint8Array): SpecialRegisters {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = {} as SpecialRegisters;
  SEGMENTS.forEach((name, i) => {
    const at = i * SEGMENT_BYTES;
    out[name] = {
      base: v.getBigUint64(at, true),
      limit: v.getUint32(at + 8, true),
      selector: v.getUint16(at + 12, true),
      type: v.getUint8(at + 14),
      present: v.getUint8(at + 15),
      dpl: v.getUint8(at + 16),
      db: v.getUint8(at + 17),
      s: v.getUint8(at + 18),
      l: v.getUint8(at + 19),
      g: v.getUint8(at + 20),
      avl: v.getUint8(at + 21),
      unusable: v.getUint8(at + 22),
    };
  });
  out.gdt = { base: v.getBigUint64(TABLES_AT, true), limit: v.getUint16(TABLES_AT + 8, true) };
  out.idt = { base: v.getBigUint64(TABLES_AT + 16, true), limit: v.getUint16(TABLES_AT + 24, true) };
  CONTROL.forEach((name, i) => {
    out[name] = v.getBigUint64(CONTROL_AT + 8 * i, true);
  });
  out.interruptBitmap = [0, 1, 2, 3].map((i) => v.getBigUint64(BITMAP_AT + 8 * i, true));
  return out;
}

/** Encodes `struct kvm_sregs` into `bytes`. */
export function encodeSpecialRegisters(s: SpecialRegisters, bytes: Uint8Array): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.fill(0);
  SEGMENTS.forEach((name, i) => {
    const at = i * SEGMENT_BYTES;
    const seg = s[name];
    v.setBigUint64(at, BigInt.asUintN(64, seg.base), true);
    v.setUint32(at + 8, seg.limit >>> 0, true);
    v.setUint16(at + 12, seg.selector, true);
    const bytesOf = [seg.type, seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g, seg.avl, seg.unusable];
    bytesOf.forEach((b, k) => v.setUint8(at + 14 + k, b));
  });
  v.setBigUint64(TABLES_AT, BigInt.asUintN(64, s.gdt.base), true);
  v.setUint16(TABLES_AT + 8, s.gdt.limit, true);
  v.setBigUint64(TABLES_AT + 16, BigInt.asUintN(64, s.idt.base), true);
  v.setUint16(TABLES_AT + 24, s.idt.limit, true);
  CONTROL.forEach((name, i) => {
    v.setBigUint64(CONTROL_AT + 8 * i, BigInt.asUintN(64, s[name]), true);
  });
  s.interruptBitmap.forEach((w, i) => v.setBigUint64(BITMAP_AT + 8 * i, BigInt.asUintN(64, w), true));
}
