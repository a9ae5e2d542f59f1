/**
 * The x86 legacy layout: 64 MiB of low RAM split for the VGA window and the PAM ranges, a PCI
 * hole, 64 MiB above 4 GiB, and what a chipset does early in boot: the VGA window shows the VGA
 * device's MMIO, 0xE0000-0xEFFFF shows the BIOS ROM below it, and the shadowed BIOS at 0xF0000
 * is read-only RAM.
 *
 * Run: node build/examples/x86-layout.js
 */
import { AddressRange, GuestAddress, GuestMemoryBuilder, MemoryBacking } from 'guestmem';

const MIB = 2 ** 20;
const { manager, ram } = new GuestMemoryBuilder().x86LegacySupport(true).build({
  ram: [AddressRange.fromLength(GuestAddress(0), 64 * MIB), AddressRange.fromLength(GuestAddress(2 ** 32), 64 * MIB)],
  mmio: [AddressRange.fromLength(GuestAddress(0xe000_0000), 0x2000_0000)],
});

// The VGA device: its frame buffer behind an MMIO handler, below the VGA window's RAM.
const vram = new Uint8Array(0x20000);
manager.addMmio({
  name: 'vga-mmio',
  start: GuestAddress(0xa0000),
  length: 0x20000,
  handler: {
    read: (offset, size) => vram.subarray(offset, offset + size).reduceRight((v, b) => v * 256 + b, 0),
    write: (offset, size, value) => {
      for (let i = 0; i < size; i++) vram[offset + i] = Math.floor(value / 256 ** i) & 0xff;
    },
  },
});
// The BIOS ROM, below the PAM ranges.
const biosImage = MemoryBacking.allocate(0x20000);
manager.addRom({ name: 'bios', start: GuestAddress(0xe0000), length: 0x20000, backing: biosImage });

function byName(name: string) {
  const region = ram.find((r) => r.name === name);
  if (region === undefined) throw new Error(`no RAM region ${name}`);
  return region;
}
manager.unmap(byName('vga'));
for (const pam of ['pam-e0000', 'pam-e4000', 'pam-e8000', 'pam-ec000']) manager.unmap(byName(pam));
manager.setVisibility(AddressRange.fromLength(GuestAddress(0xf0000), 0x10000), 'read-only');

manager.write(GuestAddress(0xb8000), 2, 0x0741); // 'A', grey on black: into the VGA device
process.stdout.write(manager.mtree());
process.stdout.write(`\nVGA text cell 0: char ${vram[0x18000].toString(16)}, attribute ${vram[0x18001].toString(16)}\n`);
