/** Reads what the kernel says about this process's mappings (/proc/self/smaps, /proc/meminfo). */
import { readFileSync } from 'node:fs';

/** The fields of the /proc/self/smaps entry that contains `address`, or undefined. */
export function smapsAt(address: bigint): { fields: Map<string, number>; flags: string[] } | undefined {
  const lines = readFileSync('/proc/self/smaps', 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(lines[i]);
    if (m === null || address < BigInt(`0x${m[1]}`) || address >= BigInt(`0x${m[2]}`)) continue;
    const fields = new Map<string, number>();
    let flags: string[] = [];
    for (let j = i + 1; j < lines.length && !/^[0-9a-f]+-/.test(lines[j]); j++) {
      const [key, rest] = lines[j].split(/:\s+/, 2);
      if (key === 'VmFlags') flags = rest.trim().split(/\s+/);
      else if (rest !== undefined) fields.set(key, Number.parseInt(rest, 10) * 1024);
    }
    return { fields, flags };
  }
  return undefined;
}

/** True while some mapping of this process starts at `address`. */
export function isMapped(address: bigint): boolean {
  return `\n${readFileSync('/proc/self/maps', 'utf8')}`.includes(`\n${address.toString(16)}-`);
}

/** A /proc/meminfo field in bytes (or a count, for HugePages_*). */
export function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)( kB)?`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  if (m === null) return 0;
  return Number(m[1]) * (m[2] === undefined ? 1 : 1024);
}
