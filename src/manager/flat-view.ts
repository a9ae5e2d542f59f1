import type { GuestAddress } from '../address/address.js';
import type { Region } from './regions.js';

/** What a guest sees in one span: its memory kind (an alias shows its target's). */
export type SpanKind = 'ram' | 'rom' | 'device' | 'mmio';

/**
 * One piece of the flat view: `[start, end)` shows `source` (the winning region, or the target
 * of a winning alias) from `offset` on.
 */
export interface FlatSpan {
  /** The guest address of its first byte. */
  readonly start: GuestAddress;
  /** The exclusive end. */
  readonly end: GuestAddress;
  /** The region that wins here (possibly an alias). */
  readonly region: Region;
  /** The region whose contents show: `region`, or its target. */
  readonly source: Region;
  /** The kind of `source`. */
  readonly kind: SpanKind;
  /** Offset in `source` of the byte at `start` (an MMIO handler's offset). */
  readonly offset: number;
  /** Backed kinds: where the byte at `start` lives in the backing. */
  readonly backingOffset: number | undefined;
  /** ROM is always read-only; RAM and device memory as their visibility says. */
  readonly access: 'read-only' | 'read-write';
}

/** A change of the flat view, as a listener receives it. */
export type FlatViewEvent = SpanRemoved | SpanChanged | SpanAdded;

/** A span that no longer shows. */
export interface SpanRemoved {
  /** The event kind. */
  readonly type: 'removed';
  /** The span as it was. */
  readonly span: FlatSpan;
}

/** A span that keeps its range but shows something else (another region, offset or access). */
export interface SpanChanged {
  /** The event kind. */
  readonly type: 'changed';
  /** The span now. */
  readonly span: FlatSpan;
  /** The span it replaces. */
  readonly previous: FlatSpan;
}

/** A new span. */
export interface SpanAdded {
  /** The event kind. */
  readonly type: 'added';
  /** The span. */
  readonly span: FlatSpan;
}

/** True when a region shows anything now: mapped, and for an alias, its target mapped too. */
function isShowing(r: Region): boolean {
  return r._visibility !== 'unmapped' && (r.target === undefined || r.target._visibility !== 'unmapped');
}

/** True for RAM or device memory (or an alias of it) that shows read-only: it takes no writes. */
function refusesWrites(r: Region): boolean {
  const src = r.target ?? r;
  return src.backed && src.kind !== 'rom' && src._visibility === 'read-only';
}

/**
 * The visible, non-overlapping spans of `regions`, sorted by address: at every address the
 * highest-priority showing region wins, and where none shows there is no span. Adjacent pieces
 * of one region are one span.
 *
 * The view for `'writes'` is where guest writes go: read-only RAM and device memory step aside
 * there, so a write lands on what lies below (MMIO, device memory, ROM), as OpenVMM's
 * RamVisibility::ReadOnly and x86 PAM registers have it.
 *
 * A sweep over the region boundaries with a max-heap of the regions covering the current
 * point: O(n log n) for n regions.
 */
export function computeFlatView(regions: readonly Region[], purpose: 'reads' | 'writes' = 'reads'): FlatSpan[] {
  const showing = regions.filter((r) => isShowing(r) && !(purpose === 'writes' && refusesWrites(r))).sort((a, b) => a.start - b.start);
  const points = [...new Set(showing.flatMap((r) => [r.start, r.end]))].sort((a, b) => a - b);
  const heap = new RegionHeap();
  const spans: FlatSpan[] = [];
  let next = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const p = points[i];
    while (next < showing.length && showing[next].start <= p) heap.push(showing[next++]);
    while (heap.size > 0 && heap.top().end <= p) heap.pop();
    if (heap.size === 0) continue;
    const winner = heap.top();
    const last = spans[spans.length - 1];
    if (last !== undefined && last.region === winner && last.end === p) {
      spans[spans.length - 1] = spanOf(winner, last.start, points[i + 1]);
    } else {
      spans.push(spanOf(winner, p, points[i + 1]));
    }
  }
  return spans.map((s) => Object.freeze(s));
}

function spanOf(region: Region, start: number, end: number): FlatSpan {
  const source = region.target ?? region;
  const offset = region.targetOffset + (start - region.start);
  return {
    start: start as GuestAddress,
    end: end as GuestAddress,
    region,
    source,
    kind: source.kind as SpanKind,
    offset,
    backingOffset: source.backing === undefined ? undefined : source.backingOffset + offset,
    access: source.kind === 'rom' || source._visibility === 'read-only' ? 'read-only' : 'read-write',
  };
}

/** True when two spans show the same thing at the same addresses. */
function sameSpan(a: FlatSpan, b: FlatSpan): boolean {
  return (
    a.start === b.start &&
    a.end === b.end &&
    a.region === b.region &&
    a.source === b.source &&
    a.kind === b.kind &&
    a.offset === b.offset &&
    a.access === b.access
  );
}

/**
 * The events that turn flat view `before` into `after`: first every span that went (in address
 * order), then spans that kept their range but show something else, then the new spans. A
 * consumer that applies them in order never holds two overlapping spans. `view` is `after` with
 * every unchanged span replaced by its object from `before`, so that spans compare by identity.
 */
export function diffFlatViews(before: readonly FlatSpan[], after: readonly FlatSpan[]): { events: FlatViewEvent[]; view: FlatSpan[] } {
  const old = new Map(before.map((s) => [s.start as number, s]));
  const kept = new Set<FlatSpan>();
  const changed: FlatViewEvent[] = [];
  const added: FlatViewEvent[] = [];
  const view = after.map((s) => {
    const o = old.get(s.start);
    if (o !== undefined && o.end === s.end) {
      kept.add(o);
      if (sameSpan(o, s)) return o;
      changed.push({ type: 'changed', span: s, previous: o });
    } else {
      added.push({ type: 'added', span: s });
    }
    return s;
  });
  const removed: FlatViewEvent[] = before.filter((s) => !kept.has(s)).map((span) => ({ type: 'removed', span }));
  return { events: [...removed, ...changed, ...added], view };
}

/** A binary max-heap of regions by priority. */
class RegionHeap {
  readonly #items: Region[] = [];

  get size(): number {
    return this.#items.length;
  }

  top(): Region {
    return this.#items[0];
  }

  push(r: Region): void {
    const a = this.#items;
    a.push(r);
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (a[parent].priority >= a[i].priority) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }

  pop(): void {
    const a = this.#items;
    const last = a.pop() as Region;
    if (a.length === 0) return;
    a[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l].priority > a[m].priority) m = l;
      if (r < a.length && a[r].priority > a[m].priority) m = r;
      if (m === i) return;
      [a[m], a[i]] = [a[i], a[m]];
      i = m;
    }
  }
}
