/**
 * The side-by-side table of a benchmark run: RESULT lines of any implementations (peer-bench's
 * rust / c / node, guestmem's guestmem / guestmem-mmap / raw) as columns, with guestmem's ratios
 * against vm-memory and against plain Node typed arrays measured in the same run.
 *
 *   node build/bench/table.js results/<run>/*.tsv
 *
 * Ratios are in the row's unit: for ns/op rows time / time (below 1 = guestmem faster), for GB/s
 * rows throughput / throughput (above 1 = guestmem faster).
 */
import { readFileSync } from 'node:fs';

interface Result {
  bytes: number;
  samples: number[];
}

const NAMES: Record<string, string> = {
  rust: 'vm-memory 0.10',
  c: 'C limit',
  node: 'Node raw',
  raw: 'Node raw',
  guestmem: 'guestmem',
  'guestmem-mmap': 'guestmem mmap',
};
const ORDER = ['rust', 'c', 'node', 'raw', 'guestmem', 'guestmem-mmap'];
const OURS = ['guestmem', 'guestmem-mmap'];

/** Rows: [id, label]; a single string starts a section. */
function rows(): (string | [string, string])[] {
  const out: (string | [string, string])[] = ['Sequential slices, 1 region of 256 MiB (GB/s)'];
  for (const d of ['write', 'read']) for (const s of ['4k', '64k', '1m']) out.push([`slice.${d}.${s}`, `${d}_slice ${s}`]);
  for (const hot of ['', '.hot']) {
    out.push(hot ? 'Random objects, HOT: 1024 addresses (ns/op)' : 'Random objects, COLD: 2^20 addresses over 256 MiB (ns/op)');
    for (const op of ['read.u32', 'write.u32', 'read.u64', 'write.u64']) {
      for (const r of [1, 8, 64]) out.push([`obj.${op}.r${r}${hot}`, `${op}, ${r} region${r > 1 ? 's' : ''}`]);
    }
    for (const r of [1, 8, 64]) out.push([`obj.read.u64num.r${r}${hot}`, `read u64 as a checked number (guestmem only), ${r} region${r > 1 ? 's' : ''}`]);
    out.push([`obj.read.u64split.r1${hot}`, 'read u64 as 2 x u32, 1 region']);
    out.push([`obj.write.u64split.r1${hot}`, 'write u64 as 2 x u32, 1 region']);
  }
  out.push('write u64 with a dirty bitmap, 4 KiB pages (ns/op)');
  for (const hot of ['', '.hot']) for (const r of [1, 8, 64]) out.push([`obj.write.u64.r${r}${hot}.bitmap`, `write.u64 + bitmap, ${r} region${r > 1 ? 's' : ''}${hot ? ', HOT' : ''}`]);
  out.push('64 KiB at a fixed address, 2 adjacent regions (GB/s, cache-hot)');
  for (const d of ['write', 'read']) {
    out.push([`slice.${d}.64k.cross`, `${d}_slice 64 KiB across the boundary`]);
    out.push([`slice.${d}.64k.fixed`, `${d}_slice 64 KiB inside a region`]);
  }
  out.push([`slice.write.64k.fixed.host-16`, 'write_slice 64 KiB, host src at guest-16']);
  out.push([`slice.read.64k.fixed.host+16`, 'read_slice 64 KiB, host dst at guest+16']);
  return out;
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Reads RESULT and TABLE lines; returns impl -> id -> result, and the table checks. */
export function load(files: string[]): { results: Map<string, Map<string, Result>>; tables: Map<string, Map<string, string>> } {
  const results = new Map<string, Map<string, Result>>();
  const tables = new Map<string, Map<string, string>>();
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const c = line.split('\t');
      if (c[0] === 'RESULT') {
        if (!results.has(c[1])) results.set(c[1], new Map());
        results.get(c[1])?.set(c[2], { bytes: Number(c[3]), samples: c[5].split(',').map(Number) });
      } else if (c[0] === 'TABLE') {
        if (!tables.has(c[2])) tables.set(c[2], new Map());
        tables.get(c[2])?.set(c[1], `${c[3]} ${c[4]}`);
      }
    }
  }
  return { results, tables };
}

/** The value shown for a result: GB/s for byte rows, ns/op otherwise (medians). */
function value(r: Result | undefined): number | undefined {
  if (r === undefined) return undefined;
  return r.bytes > 0 ? r.bytes / median(r.samples) : median(r.samples);
}

/** The plain-Node row an id is compared with: the same access on one flat buffer. */
function rawId(id: string): string {
  return id.replace(/\.r(8|64)(?=\.|$)/, '.r1').replace(/\.bitmap$/, '');
}

const fmt = (v: number | undefined): string => (v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '-' : `${(a / b).toFixed(2)}x`);

export function render(files: string[]): string {
  const { results, tables } = load(files);
  const impls = ORDER.filter((i) => results.has(i)).concat([...results.keys()].filter((i) => !ORDER.includes(i)));
  const ours = OURS.filter((i) => results.has(i));
  const raw = results.has('node') ? 'node' : results.has('raw') ? 'raw' : undefined;
  const peer = results.has('rust') ? 'rust' : undefined;
  const ratioCols: [string, string, (id: string) => string][] = [];
  for (const o of ours) {
    const short = o === 'guestmem' ? 'gm' : 'gm-mmap';
    if (peer) ratioCols.push([o, `${short} / vm-memory`, (id) => `${peer}\t${id}`]);
    if (raw) ratioCols.push([o, `${short} / raw`, (id) => `${raw}\t${rawId(id)}`]);
  }
  const get = (impl: string, id: string) => value(results.get(impl)?.get(id));
  const header = `| id | operation | ${impls.map((i) => NAMES[i] ?? i).join(' | ')} | ${ratioCols.map((c) => c[1]).join(' | ')} |`;
  const sep = `|---|---|${[...impls, ...ratioCols].map(() => '---:').join('|')}|`;
  const lines: string[] = [];
  let section: string[] = [];
  let title = '';
  const flush = () => {
    if (section.length > 0) lines.push('', `**${title}**`, '', header, sep, ...section);
    section = [];
  };
  for (const row of rows()) {
    if (typeof row === 'string') {
      flush();
      title = row;
      continue;
    }
    const [id, label] = row;
    if (!impls.some((i) => results.get(i)?.has(id))) continue;
    const cells = impls.map((i) => fmt(get(i, id)));
    const rcells = ratioCols.map(([o, , base]) => {
      const [bi, bid] = base(id).split('\t');
      return ratio(get(o, id), get(bi, bid));
    });
    section.push(`| ${id} | ${label} | ${cells.join(' | ')} | ${rcells.join(' | ')} |`);
  }
  flush();

  // Derived ratios of guestmem against itself: regions and dirty tracking.
  const derived: string[] = [];
  for (const o of ours) {
    const parts: string[] = [];
    for (const hot of ['', '.hot']) {
      for (const op of ['read.u32', 'write.u32', 'read.u64', 'write.u64']) {
        const r = ratio(get(o, `obj.${op}.r64${hot}`), get(o, `obj.${op}.r1${hot}`));
        if (r !== '-') parts.push(`${op}${hot} r64/r1 ${r}`);
      }
      for (const n of [1, 8, 64]) {
        const r = ratio(get(o, `obj.write.u64.r${n}${hot}.bitmap`), get(o, `obj.write.u64.r${n}${hot}`));
        if (r !== '-') parts.push(`bitmap/untracked r${n}${hot} ${r}`);
      }
    }
    if (parts.length) derived.push(`- ${NAMES[o]}: ${parts.join('; ')}`);
  }
  if (derived.length) lines.push('', '**guestmem against itself (time ratios)**', '', ...derived);

  const problems = [...tables].filter(([, m]) => new Set(m.values()).size > 1).map(([l, m]) => `${l}: ${[...m].map(([k, v]) => `${k}=${v}`).join(' / ')}`);
  lines.push(
    '',
    'Medians of the repetitions. Ratios: ns/op rows time/time (< 1: guestmem faster), GB/s rows throughput/throughput (> 1: guestmem faster). "raw" = plain Node typed arrays/DataView on one flat buffer (for r8/r64 rows: the same access at 1 region).',
    problems.length ? `WARNING: address tables differ: ${problems.join('; ')}` : `Address tables agree: ${[...tables.keys()].join(', ')}.`,
  );
  return lines.join('\n');
}

if (process.argv[1]?.endsWith('table.js') && process.argv.length > 2) console.log(render(process.argv.slice(2)));
