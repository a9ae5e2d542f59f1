/**
 * `guestmem/node`: everything in `guestmem`, plus what needs Node.js: snapshots written to and
 * restored from files. In Node.js, `import … from 'guestmem'` resolves here too (the package's
 * `node` export condition), so Node users need not name it; a browser build gets the root entry,
 * which imports nothing from Node.
 *
 * @module
 */
export * from './index.js';
export { layoutPath, MAX_LAYOUT_BYTES, type SnapshotLayout, type SnapshotRegion } from './snapshot/layout.js';
export { type ProgressCallback, type WriteSnapshotOptions, writeDiffSnapshot, writeFullSnapshot } from './snapshot/write.js';
export { mergeSnapshots, type RestoreSnapshotOptions, restoreSnapshot } from './snapshot/restore.js';
