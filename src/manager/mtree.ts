import type { FlatSpan } from './flat-view.js';
import type { Region } from './regions.js';

/**
 * The region tree and the flat view as text, in the shape of QEMU's `info mtree` and
 * `info mtree -f`: one line per region or span, ranges in hex (inclusive ends), priority, kind,
 * visibility, and for aliases and spans what they show.
 */
export function formatMtree(regions: readonly Region[], spans: readonly FlatSpan[]): string {
  const sorted = [...regions].sort((a, b) => a.start - b.start || b.priority - a.priority || a._seq - b._seq);
  const lines = ['memory-region: guest'];
  for (const r of sorted) {
    let line = `  ${range(r.start, r.end)} (prio ${r.priority}, ${kindName(r.kind)}, ${visibilityName(r)}): ${r.name}`;
    if (r.target !== undefined) line += ` @${r.target.name} ${range(r.target.start + r.targetOffset, r.target.start + r.targetOffset + r.length)}`;
    lines.push(line);
  }
  lines.push('', 'flat view:');
  for (const s of spans) {
    const via = s.region === s.source ? '' : ` (alias ${s.region.name})`;
    const backing = s.backingOffset === undefined ? '' : ` backing ${hex16(s.backingOffset)}`;
    const access = s.access === 'read-only' ? 'ro' : 'rw';
    lines.push(`  ${range(s.start, s.end)} (prio ${s.region.priority}, ${kindName(s.kind)}, ${access}): ${s.source.name} @${hex16(s.offset)}${backing}${via}`);
  }
  return `${lines.join('\n')}\n`;
}

function kindName(kind: Region['kind']): string {
  return kind === 'mmio' ? 'i/o' : kind;
}

function visibilityName(r: Region): string {
  if (r.visibility === 'unmapped') return 'unmapped';
  if (!r.backed) return 'mapped';
  return r.kind === 'rom' || r.visibility === 'read-only' ? 'ro' : 'rw';
}

function range(start: number, end: number): string {
  return `${hex16(start)}-${hex16(end - 1)}`;
}

function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}
