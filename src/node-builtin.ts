/**
 * Node's built-in modules for the few parts of guestmem that need them (fd transfers, the
 * addon's loader), got without a static `import 'node:…'`, so that the modules that use them
 * still load in a browser, and synchronously, so that `require()` of guestmem works.
 */

/** The built-in module `id` (`'node:fs'`), or undefined outside Node.js (20.16+). */
export function nodeBuiltin<T>(id: string): T | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  return typeof proc?.getBuiltinModule === 'function' ? (proc.getBuiltinModule(id) as T) : undefined;
}
