import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestAddress } from '../address/address.js';
import { MemoryBacking } from './backing.js';
import type { FlatSpan } from './flat-view.js';
import { MemoryManager } from './manager.js';
import type { Region, Visibility } from './regions.js';

const G = GuestAddress;
const PAGE = 0x100;
const PAGES = 48;

type Kind = 'ram' | 'rom' | 'device' | 'mmio' | 'alias';
type Command =
  | { op: 'add'; kind: Kind; start: number; pages: number; priority: number; pick: number; offset: number }
  | { op: 'remove' | 'map' | 'unmap'; pick: number }
  | { op: 'visibility'; pick: number; visibility: Visibility };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      kind: fc.constantFrom<Kind>('ram', 'rom', 'device', 'mmio', 'alias'),
      start: fc.nat(PAGES - 1),
      pages: fc.integer({ min: 1, max: 16 }),
      priority: fc.integer({ min: 0, max: 3 }),
      pick: fc.nat(),
      offset: fc.nat(8),
    }),
    weight: 3,
  },
  fc.record({ op: fc.constantFrom('remove' as const, 'map' as const, 'unmap' as const), pick: fc.nat() }),
  fc.record({ op: fc.constant('visibility' as const), pick: fc.nat(), visibility: fc.constantFrom<Visibility>('unmapped', 'read-only', 'read-write') }),
);

/** The model: what each page shows, worked out page by page from the regions alone. */
function modelPage(regions: readonly Region[], page: number, writes = false): string {
  const a = page * PAGE;
  let best: Region | undefined;
  for (const r of regions) {
    const showing = r.visibility !== 'unmapped' && (r.target === undefined || r.target.visibility !== 'unmapped');
    const t = r.target ?? r;
    if (writes && (t.kind === 'ram' || t.kind === 'device') && t.visibility === 'read-only') continue;
    if (showing && r.start <= a && a < r.end && (best === undefined || r.priority > best.priority)) best = r;
  }
  if (best === undefined) return '-';
  const src = best.target ?? best;
  const ro = src.kind === 'rom' || src.visibility === 'read-only';
  return `${best.name}>${src.name}+${(best.targetOffset + a - best.start).toString(16)}:${ro ? 'ro' : 'rw'}`;
}

function viewPage(spans: readonly FlatSpan[], page: number): string {
  const a = page * PAGE;
  const s = spans.find((x) => x.start <= a && a < x.end);
  if (s === undefined) return '-';
  return `${s.region.name}>${s.source.name}+${(s.offset + a - s.start).toString(16)}:${s.access === 'read-only' ? 'ro' : 'rw'}`;
}

/** Applies `c` to the manager and says which error code, if any, the model expects. */
function expectedError(mm: MemoryManager, c: Command): string | undefined {
  const regions = mm.regions();
  if (c.op === 'add') {
    const end = (c.start + c.pages) * PAGE;
    const clash = regions.some((r) => r.priority === c.priority && r.start < end && c.start * PAGE < r.end);
    if (c.kind !== 'alias') return clash ? 'ERR_PRIORITY_OVERLAP' : undefined;
    const targets = regions.filter((r) => r.kind !== 'alias');
    if (targets.length === 0) return 'none';
    const t = targets[c.pick % targets.length];
    if (c.offset * PAGE + c.pages * PAGE > t.length) return 'ERR_INVALID_REGION';
    return clash ? 'ERR_PRIORITY_OVERLAP' : undefined;
  }
  if (regions.length === 0) return 'none';
  const r = regions[c.pick % regions.length];
  if (c.op === 'remove') return regions.some((x) => x.target === r) ? 'ERR_REGION_IN_USE' : undefined;
  if (c.op !== 'visibility') return undefined;
  if (!r.backed || (r.kind === 'rom' && c.visibility === 'read-write')) return 'ERR_NOT_CONTROLLABLE';
  return undefined;
}

function apply(mm: MemoryManager, backing: MemoryBacking, c: Command, n: number): void {
  const regions = mm.regions();
  if (c.op === 'add') {
    const spec = { name: `${c.kind}${n}`, start: G(c.start * PAGE), length: c.pages * PAGE, priority: c.priority };
    const handler = { read: () => 0, write: () => {} };
    if (c.kind === 'mmio') mm.addMmio({ ...spec, handler });
    else if (c.kind === 'alias') {
      const targets = regions.filter((r) => r.kind !== 'alias');
      mm.addAlias({ ...spec, target: targets[c.pick % targets.length], offset: c.offset * PAGE });
    } else {
      const backed = { ...spec, backing, backingOffset: c.start * PAGE };
      if (c.kind === 'ram') mm.addRam(backed);
      else if (c.kind === 'rom') mm.addRom(backed);
      else mm.addDeviceMemory(backed);
    }
    return;
  }
  const r = regions[c.pick % regions.length];
  if (c.op === 'remove') mm.remove(r);
  else if (c.op === 'map') mm.map(r);
  else if (c.op === 'visibility') mm.setVisibility(r, c.visibility);
  else mm.unmap(r);
}

test('the flat view matches a per-page model, and a listener replaying events matches the flat view', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof({ arbitrary: command, weight: 4 }, fc.array(command, { minLength: 1, maxLength: 4 })), { maxLength: 40 }), (commands) => {
      const mm = new MemoryManager();
      const backing = MemoryBacking.allocate((PAGES + 16) * PAGE);
      const replay = new Map<number, FlatSpan>();
      let lastBatch = 0;
      mm.subscribe((events) => {
        lastBatch = events.length;
        for (const e of events) {
          if (e.type === 'removed') {
            assert.equal(replay.get(e.span.start), e.span, 'removed what it had');
            replay.delete(e.span.start);
          } else {
            if (e.type === 'changed') assert.equal(replay.get(e.span.start), e.previous, 'changed what it had');
            else assert.equal(replay.has(e.span.start), false, 'added where nothing was');
            replay.set(e.span.start, e.span);
          }
        }
      });
      /** Runs `c`, checking it fails as the model says; true when it was refused. */
      const step = (c: Command, n: number): boolean => {
        const want = expectedError(mm, c);
        if (want === 'none') return false;
        if (want === undefined) {
          apply(mm, backing, c, n);
          return false;
        }
        assert.throws(() => apply(mm, backing, c, n), { code: want });
        return true;
      };
      commands.forEach((c, n) => {
        const before = mm.flatView();
        const regions = mm.regions();
        const visibility = regions.map((r) => r.visibility);
        lastBatch = -1;
        let refused: boolean;
        if (Array.isArray(c)) {
          // A batch: one event call at most; a refused step undoes every step before it.
          refused = false;
          try {
            mm.batch(() => {
              for (const [k, sub] of c.entries()) {
                if (step(sub, n * 10 + k)) {
                  refused = true;
                  throw new Error('undo');
                }
              }
            });
          } catch (e) {
            assert.equal((e as Error).message, 'undo');
          }
        } else refused = step(c, n);
        if (refused) {
          assert.equal(mm.flatView(), before, 'a refused change changes nothing');
          assert.deepEqual(mm.regions(), regions);
          assert.deepEqual(regions.map((r) => r.visibility), visibility);
          assert.equal(lastBatch, -1, 'and tells no listener');
        }
        const spans = mm.flatView();
        const writeSpans = mm.flatView('writes');
        for (let p = 0; p < PAGES + 16; p++) {
          assert.equal(viewPage(spans, p), modelPage(mm.regions(), p), `page ${p}`);
          assert.equal(viewPage(writeSpans, p), modelPage(mm.regions(), p, true), `page ${p} for writes`);
        }
        // Spans are sorted, disjoint, and merged where one region continues.
        for (let i = 1; i < spans.length; i++) {
          assert.ok(spans[i - 1].end <= spans[i].start);
          if (spans[i - 1].end === spans[i].start) assert.notEqual(spans[i - 1].region, spans[i].region);
        }
        const replayed = [...replay.values()].sort((a, b) => a.start - b.start);
        assert.deepEqual(replayed, spans);
        // Guest memory holds exactly the backed pages.
        let memory: ReturnType<MemoryManager['memory']> | undefined;
        try {
          memory = mm.memory();
        } catch (e) {
          assert.equal((e as { code: string }).code, 'ERR_NO_MEMORY');
        }
        for (let p = 0; p < PAGES + 16; p++) {
          const s = spans.find((x) => x.start <= p * PAGE && p * PAGE < x.end);
          assert.equal(memory?.addressInRange(G(p * PAGE)) ?? false, s !== undefined && s.kind !== 'mmio', `memory at page ${p}`);
        }
      });
    }),
    { numRuns: 300 },
  );
});
