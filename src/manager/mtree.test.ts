import assert from 'node:assert/strict';
import { test } from 'node:test';
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
