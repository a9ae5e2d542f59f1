/**
 * The browser test's worker: rebuilds the page's guest memory from its description (the
 * SharedArrayBuffers arrive shared, not copied), writes as a device would, and says what it read.
 */
// A relative import of the root entry: a worker does not see its page's import map.
import { GuestAddress, type GuestMemoryDescription, rebuildGuestMemory } from '../../index.js';

/** A dedicated worker's globals (the project compiles without the DOM library). */
const scope = globalThis as unknown as {
  onmessage: ((event: { data: GuestMemoryDescription }) => void) | null;
  postMessage(message: unknown): void;
};
const G = GuestAddress;

scope.onmessage = ({ data }) => {
  const memory = rebuildGuestMemory(data);
  const fromPage = memory.readU32LE(G(0x100000));
  memory.writeU64LE(G(0x120000), 0x1122334455667788n); // a completion
  memory.fill(G(0x130000), 3 * 4096, 0xab); // and three pages of data
  scope.postMessage(`rebuilt ${memory}, read 0x${fromPage.toString(16)}`);
};
