/**
 * The main job (`npm start`): a tour of guestmem that runs every example in turn, each on
 * in-process memory with nothing to set up, and prints what each one did.
 */
import { execFileSync } from 'node:child_process';

const stops: [name: string, what: string][] = [
  ['multi-region', 'guest memory of three regions: typed values, a value across a region boundary, a struct, a hole'],
  ['dirty-snapshot', 'dirty-page tracking, a full snapshot, a diff snapshot, and a restore of both'],
  ['shared-worker', 'guest RAM in a memfd, rebuilt in a worker that writes into it and into the same dirty bitmap'],
  ['x86-layout', 'the memory manager: an x86 address space with the legacy VGA/PAM split, as an mtree dump'],
  ['virtio-blk', 'a virtio-blk device over a disk image, driven through a split virtqueue by the test driver'],
  ['kvm-tiny-guest', 'a tiny guest on a real KVM: memory slots from the memory manager, port I/O, MMIO, dirty pages'],
];

for (const [i, [name, what]] of stops.entries()) {
  console.log(`\n=== ${i + 1}/${stops.length} ${name}: ${what}\n`);
  execFileSync(process.execPath, [new URL(`./${name}.js`, import.meta.url).pathname], { stdio: 'inherit' });
}
console.log(`\nTour done: ${stops.length} examples ran. Each is in examples/; npm test runs them all.`);
