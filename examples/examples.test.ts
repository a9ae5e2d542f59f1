/** Every example runs as a user would run it, and says what it should. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';

/** Runs `build/examples/<name>.js` and returns what it printed (a failure throws with its stderr). */
function run(name: string): string {
  return execFileSync(process.execPath, [new URL(`./${name}.js`, import.meta.url).pathname], { encoding: 'utf8' });
}

describe('examples', () => {
  it('multi-region', () => {
    const out = run('multi-region');
    assert.match(out, /read back as u64le: 0x1122334455667788/);
    assert.match(out, /stops at the hole: 16 bytes/);
    assert.match(out, /fails: ERR_GUEST_ADDRESS_INVALID at 0x10000/);
  });

  it('dirty-snapshot', () => {
    const out = run('dirty-snapshot');
    assert.match(out, /written since: \[0x100000, \+2 pages\) \[0x100008000, \+3 pages\)/);
    assert.match(out, /restored full \+ diff into a fresh guest: identical/);
  });

  it('shared-worker', () => {
    const out = run('shared-worker');
    assert.match(out, /read 0xc0ffee written by the main thread/);
    assert.match(out, /main thread reads the worker's u64 at 0x200000: 0x1122334455667788/);
    assert.match(out, /harvested by the main thread: \[0x200000, \+0x1000\) \[0x300000, \+0x3000\)$/m);
  });

  it('x86-layout', () => {
    const out = run('x86-layout');
    const h = (n: number) => n.toString(16).padStart(16, '0');
    const pam = [0xc0000, 0xc4000, 0xc8000, 0xcc000, 0xd0000, 0xd4000, 0xd8000, 0xdc000].map(
      (s) => `  ${h(s)}-${h(s + 0x3fff)} (prio 255, ram, rw): pam-${s.toString(16)} @0000000000000000 backing ${h(s)}`,
    );
    assert.deepEqual(out.slice(out.indexOf('flat view:\n') + 'flat view:\n'.length).split('\n'), [
      '  0000000000000000-000000000009ffff (prio 255, ram, rw): ram-low @0000000000000000 backing 0000000000000000',
      '  00000000000a0000-00000000000bffff (prio 0, i/o, rw): vga-mmio @0000000000000000',
      ...pam,
      '  00000000000e0000-00000000000effff (prio 0, rom, ro): bios @0000000000000000 backing 0000000000000000',
      '  00000000000f0000-00000000000fffff (prio 255, ram, ro): pam-f0000 @0000000000000000 backing 00000000000f0000',
      '  0000000000100000-0000000003ffffff (prio 255, ram, rw): ram-0 @0000000000000000 backing 0000000000100000',
      '  0000000100000000-0000000103ffffff (prio 255, ram, rw): ram-1 @0000000000000000 backing 0000000004000000',
      '',
      'VGA text cell 0: char 41, attribute 7',
      '',
    ]);
    const tree = out.slice(0, out.indexOf('\n\nflat view:')).split('\n');
    assert.equal(tree.length, 1 + 15 + 2 + 2); // header, 15 legacy pieces, ram-0 and ram-1, vga-mmio and bios
    assert.ok(tree.includes('  00000000000a0000-00000000000bffff (prio 255, ram, unmapped): vga'));
    assert.ok(tree.includes('  00000000000e0000-00000000000e3fff (prio 255, ram, unmapped): pam-e0000'));
    assert.ok(tree.includes('  00000000000e0000-00000000000fffff (prio 0, rom, ro): bios'));
  });

  it('virtio-blk', () => {
    const out = run('virtio-blk');
    assert.match(out, /2048 sectors of 512 bytes, seg_max 62/);
    assert.match(out, /device handled 3, interrupt: true, statuses: 0,0,0/);
    assert.match(out, /read back 8 sectors: status 0, identical/);
    assert.match(out, /device id: guestmem-example/);
    assert.match(out, /write-zeroes of sectors 18-19: status 0/);
    assert.match(out, /past the end\): status 1 \(refused\)/);
    assert.match(out, /image check: sectors 16-23 as written, 18-19 zeroed, nothing else touched/);
  });

  it('kvm-tiny-guest', () => {
    const out = run('kvm-tiny-guest');
    if (out.startsWith('No usable /dev/kvm here')) {
      assert.match(out, /nested-KVM rig test/);
      return;
    }
    assert.match(out, /slot 0: \[0x0, \+0xd000\) ram region ram\n {2}slot 1: \[0xe000, \+0x2000\) ram region ram\n/);
    assert.match(out, /the guest printed: Hello from a KVM guest\n/);
    assert.match(out, /the device saw: 2-byte write of 0x1234 at offset 0\n/);
    assert.match(out, /dirty pages: .*\[0x3000, \+0x1000\)/);
    assert.match(out, /RAM at 0x3000: 1/);
  });

  it('tour (npm start) runs every example', () => {
    const out = run('tour');
    assert.equal(out.match(/^=== \d\/6 /gm)?.length, 6);
    assert.match(out, /Tour done: 6 examples ran/);
  });
});
