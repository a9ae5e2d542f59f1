/**
 * A small guest: 64 KiB of RAM below a 4 KiB hole and 64 KiB above it, split into two adjacent
 * regions below the hole. Writes and reads typed values, one of them straddling the boundary
 * between the adjacent regions, a virtio descriptor as a struct, and shows what a hole does.
 */
import { GuestAddress, GuestMemory, GuestmemError, structLayout, u16le, u32le, u64leNumber } from 'guestmem';

const G = GuestAddress;
const mem = GuestMemory.fromRanges([
  [G(0x0000), 0x8000],
  [G(0x8000), 0x8000], // adjacent to the first: one 64 KiB span of RAM in two regions
  [G(0x11000), 0x10000], // after a 4 KiB hole
]);
console.log(`guest memory: ${mem}`);

const boundary = G(0x8000 - 4);
mem.writeU64LE(boundary, 0x1122334455667788n);
console.log(`wrote u64 0x1122334455667788 at ${hex(boundary)} (4 bytes in each region)`);
console.log(`  read back as u64le: 0x${mem.readU64LE(boundary).toString(16)}`);
console.log(`  u32le in region 0 at 0x7ffc: ${hex(mem.readU32LE(G(0x7ffc)))}, in region 1 at 0x8000: ${hex(mem.readU32LE(G(0x8000)))}`);
console.log(`  the same bytes as u32be at 0x7ffe: ${hex(mem.readU32BE(G(0x7ffe)))}`);

const VirtqDesc = structLayout('virtq_desc', { addr: u64leNumber, len: u32le, flags: u16le, next: u16le });
mem.writeStruct(VirtqDesc, G(0x11000), { addr: 0x11400, len: 512, flags: 1, next: 1 });
console.log(`virtq_desc at 0x11000: ${JSON.stringify(mem.readStruct(VirtqDesc, G(0x11000)))}`);

const buf = new Uint8Array(0x20);
console.log(`a partial read of 0x20 bytes at 0xfff0 stops at the hole: ${mem.read(G(0xfff0), buf)} bytes`);
try {
  mem.readSlice(G(0xfff0), buf);
} catch (err) {
  if (!(err instanceof GuestmemError)) throw err;
  console.log(`an exact read there fails: ${err.code} at ${hex(err.address ?? -1)}`);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
