import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GuestAddress } from '../address/address.js';
import { MemoryBacking } from './backing.js';
import { MemoryManager } from './manager.js';

const G = GuestAddress;

test('the dump lists regions by address and priority, then the flat view', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x3000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x2000, backing, backingOffset: 0x1000 });
  mm.addMmio({ name: 'io', start: G(0x1000), length: 0x800, priority: 300, handler: { read: () => 0, write: () => {} }, mapped: false });
  mm.addRom({ name: 'boot', start: G(0), length: 0x1000, backing });
  mm.addAlias({ name: 'mirror', start: G(0x10000), length: 0x1000, target: ram, offset: 0x1000 });
  mm.setVisibility(ram, 'read-only');
  assert.equal(
    mm.mtree(),
    [
      'memory-region: guest',
      '  0000000000000000-0000000000001fff (prio 255, ram, ro): ram',
      '  0000000000000000-0000000000000fff (prio 0, rom, ro): boot',
      '  0000000000001000-00000000000017ff (prio 300, i/o, unmapped): io',
      '  0000000000010000-0000000000010fff (prio 255, alias, mapped): mirror @ram 0000000000001000-0000000000001fff',
      '',
      'flat view:',
      '  0000000000000000-0000000000001fff (prio 255, ram, ro): ram @0000000000000000 backing 0000000000001000',
      '  0000000000010000-0000000000010fff (prio 255, ram, ro): ram @0000000000001000 backing 0000000000002000 (alias mirror)',
      '',
    ].join('\n'),
  );
});

test('examples/x86-layout prints the x86 legacy layout', (t) => {
  const script = fileURLToPath(new URL('../../build/examples/x86-layout.js', import.meta.url));
  if (!existsSync(script)) {
    t.skip(`${script} is not built (npm run build builds it)`);
    return;
  }
  const out = execFileSync(process.execPath, [script], { encoding: 'utf8' });
  const flat = out.slice(out.indexOf('flat view:\n') + 'flat view:\n'.length).split('\n');
  const pam = [0xc0000, 0xc4000, 0xc8000, 0xcc000, 0xd0000, 0xd4000, 0xd8000, 0xdc000].map((s) => {
    const h = (n: number) => n.toString(16).padStart(16, '0');
    return `  ${h(s)}-${h(s + 0x3fff)} (prio 255, ram, rw): pam-${s.toString(16)} @0000000000000000 backing ${h(s)}`;
  });
  assert.deepEqual(flat, [
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
