/**
 * GuestMemory held against a flat-array model: random multi-region layouts (adjacent regions,
 * holes, tiny regions so that boundaries are everywhere, some regions read-only) and random operations through every
 * Bytes method, including out-of-range and malformed addresses. Results, counts, thrown codes,
 * reported addresses and the whole memory contents must agree after every operation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestAddress } from '../address/address.js';
import { sharedBackend, heapBackend } from '../backend/buffer.js';
import { structLayout } from '../bytes/struct.js';
import { i16be, u32le, u64le, u8 } from '../bytes/values.js';
import { GuestMemoryRegion } from '../region/region.js';
import { GuestMemory } from './guest-memory.js';

interface Layout {
  shared: boolean;
  regions: { start: number; length: number; readOnly: boolean }[];
  space: number;
}

const layoutArb: fc.Arbitrary<Layout> = fc
  .record({
    shared: fc.boolean(),
    first: fc.nat(16),
    parts: fc.array(fc.record({
        gap: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 })),
        length: fc.integer({ min: 1, max: 40 }),
        readOnly: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, fc.constant(true)),
      }), {
      minLength: 1,
      maxLength: 6,
    }),
  })
  .map(({ shared, first, parts }) => {
    const regions: Layout['regions'] = [];
    let at = first;
    for (const p of parts) {
      at += regions.length === 0 ? 0 : p.gap;
      regions.push({ start: at, length: p.length, readOnly: p.readOnly });
      at += p.length;
    }
    return { shared, regions, space: at + 16 };
  });

// name, size, method suffix, DataView getter/setter, little-endian, value kind
type Kind = 'uint' | 'int' | 'big' | 'sbig' | 'float' | 'num64';
const TYPES: [string, number, string, string, boolean, Kind][] = [
  ['U8', 1, 'Uint8', 'Uint8', true, 'uint'],
  ['I8', 1, 'Int8', 'Int8', true, 'int'],
  ['U16LE', 2, 'Uint16', 'Uint16', true, 'uint'],
  ['U16BE', 2, 'Uint16', 'Uint16', false, 'uint'],
  ['I16LE', 2, 'Int16', 'Int16', true, 'int'],
  ['I16BE', 2, 'Int16', 'Int16', false, 'int'],
  ['U32LE', 4, 'Uint32', 'Uint32', true, 'uint'],
  ['U32BE', 4, 'Uint32', 'Uint32', false, 'uint'],
  ['I32LE', 4, 'Int32', 'Int32', true, 'int'],
  ['I32BE', 4, 'Int32', 'Int32', false, 'int'],
  ['U64LE', 8, 'BigUint64', 'BigUint64', true, 'big'],
  ['U64BE', 8, 'BigUint64', 'BigUint64', false, 'big'],
  ['I64LE', 8, 'BigInt64', 'BigInt64', true, 'sbig'],
  ['I64BE', 8, 'BigInt64', 'BigInt64', false, 'sbig'],
  ['F32LE', 4, 'Float32', 'Float32', true, 'float'],
  ['F32BE', 4, 'Float32', 'Float32', false, 'float'],
  ['F64LE', 8, 'Float64', 'Float64', true, 'float'],
  ['F64BE', 8, 'Float64', 'Float64', false, 'float'],
  ['U64LEAsNumber', 8, 'BigUint64', 'BigUint64', true, 'num64'],
  ['U64BEAsNumber', 8, 'BigUint64', 'BigUint64', false, 'num64'],
];

const Rec = structLayout('rec', { a: u8, b: u32le, c: u64le, d: i16be });

/** A value to write: mostly valid for the type, sometimes not (by one, fractional, wrong kind). */
function valueArb(kind: Kind, size: number): fc.Arbitrary<unknown> {
  const bits = size * 8;
  switch (kind) {
    case 'uint':
      return fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 2 ** bits - 1 }) }, fc.constantFrom(-1, 2 ** bits, 1.5, '1'));
    case 'int':
      return fc.oneof({ weight: 8, arbitrary: fc.integer({ min: -(2 ** (bits - 1)), max: 2 ** (bits - 1) - 1 }) }, fc.constantFrom(2 ** (bits - 1), -(2 ** (bits - 1)) - 1, 0.5));
    case 'big':
    case 'num64':
      return fc.oneof(
        { weight: 5, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
        { weight: 3, arbitrary: fc.maxSafeNat() },
        fc.constantFrom(-1n, 2n ** 64n, -1, 2 ** 53, 1.5),
      );
    case 'sbig':
      return fc.oneof(
        { weight: 5, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }) },
        { weight: 3, arbitrary: fc.maxSafeInteger() },
        fc.constantFrom(2n ** 63n, -(2n ** 63n) - 1n, 2 ** 53, 0.25),
      );
    case 'float':
      return fc.oneof({ weight: 8, arbitrary: fc.double({ noNaN: true }) }, fc.constantFrom('x', 1n));
  }
}

type Op =
  | { op: 'read' | 'write' | 'readSlice' | 'writeSlice'; addr: unknown; len: number; seed: number }
  | { op: 'fill'; addr: unknown; len: number; value: number }
  | { op: 'get'; t: number; addr: unknown }
  | { op: 'set'; t: number; addr: unknown; value: unknown }
  | { op: 'load' | 'store' | 'cas'; size: 1 | 2 | 4 | 8; addr: unknown; value: number; expected: number }
  | { op: 'getStruct'; addr: unknown }
  | { op: 'setStruct'; addr: unknown; value: { a: number; b: number; c: bigint; d: number } };

function opArb(space: number): fc.Arbitrary<Op> {
  const addr = fc.oneof(
    { weight: 30, arbitrary: fc.integer({ min: 0, max: space }) },
    fc.constantFrom(-1, 0.5, Number.NaN, 2 ** 53, Number.MAX_SAFE_INTEGER, '4'),
  );
  const len = fc.integer({ min: 0, max: 48 });
  const typed = fc.integer({ min: 0, max: TYPES.length - 1 });
  return fc.oneof(
    fc.record({ op: fc.constantFrom('read', 'write', 'readSlice', 'writeSlice'), addr, len, seed: fc.nat(255) }) as fc.Arbitrary<Op>,
    fc.record({ op: fc.constant('fill'), addr, len, value: fc.oneof({ weight: 9, arbitrary: fc.nat(255) }, fc.constant(256)) }) as fc.Arbitrary<Op>,
    fc.record({ op: fc.constant('get'), t: typed, addr }) as fc.Arbitrary<Op>,
    typed.chain((t) => fc.record({ op: fc.constant('set'), t: fc.constant(t), addr, value: valueArb(TYPES[t][5], TYPES[t][1]) })) as fc.Arbitrary<Op>,
    fc.record({ op: fc.constantFrom('load', 'store', 'cas'), size: fc.constantFrom(1, 2, 4, 8), addr, value: fc.nat(255), expected: fc.nat(3) }) as fc.Arbitrary<Op>,
    fc.record({ op: fc.constant('getStruct'), addr }) as fc.Arbitrary<Op>,
    fc.record({
      op: fc.constant('setStruct'),
      addr,
      value: fc.record({ a: fc.nat(255), b: fc.nat(0xffff_ffff), c: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), d: fc.integer({ min: -32768, max: 32767 }) }),
    }) as fc.Arbitrary<Op>,
  );
}

/** The flat model: bytes of the whole address space, which of them are memory, and where regions start. */
class Model {
  readonly bytes: Uint8Array;
  readonly regionOf: Int32Array;
  constructor(readonly layout: Layout) {
    this.bytes = new Uint8Array(layout.space);
    this.regionOf = new Int32Array(layout.space).fill(-1);
    layout.regions.forEach((r, i) => this.regionOf.fill(i, r.start, r.start + r.length));
  }
  valid(a: number): boolean {
    return a >= 0 && a < this.bytes.length && this.regionOf[a] >= 0;
  }
  firstInvalid(a: number, n: number): number {
    for (let i = a; i < a + n; i++) if (!this.valid(i)) return i;
    return -1;
  }
  readOnly(a: number): boolean {
    return this.layout.regions[this.regionOf[a]].readOnly;
  }
  /** Why a write of `n` bytes at `a` must be refused (the first byte that is no memory or read-only). */
  writeRefusal(a: number, n: number): Expected | undefined {
    for (let i = a; i < a + n; i++) {
      if (!this.valid(i)) return new Expected('ERR_GUEST_ADDRESS_INVALID', i);
      if (this.readOnly(i)) return new Expected('ERR_READ_ONLY', i);
    }
    return undefined;
  }
}

class Expected {
  constructor(readonly code: string, readonly address?: number) {}
}

function isAddr(a: unknown): a is number {
  return Number.isSafeInteger(a) && (a as number) >= 0;
}

function checkValue(kind: Kind, size: number, v: unknown): boolean {
  const bits = size * 8;
  switch (kind) {
    case 'uint':
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** bits;
    case 'int':
      return Number.isInteger(v) && (v as number) >= -(2 ** (bits - 1)) && (v as number) < 2 ** (bits - 1);
    case 'big':
    case 'num64':
      return typeof v === 'bigint' ? v >= 0n && v < 2n ** 64n : Number.isSafeInteger(v) && (v as number) >= 0;
    case 'sbig':
      return typeof v === 'bigint' ? v >= -(2n ** 63n) && v < 2n ** 63n : Number.isSafeInteger(v);
    case 'float':
      return typeof v === 'number';
  }
}

/** Runs `op` on the model: the result, or an Expected error; mutates the model like the real thing. */
function modelRun(m: Model, op: Op): unknown {
  const scratch = new DataView(new ArrayBuffer(16));
  const need = (addr: unknown) => {
    if (!isAddr(addr)) return new Expected('ERR_INVALID_ADDRESS');
    return undefined;
  };
  switch (op.op) {
    case 'read':
    case 'write': {
      const bad = need(op.addr);
      if (bad) return bad;
      const a = op.addr as number;
      if (op.len === 0) return op.op === 'read' ? [] : 0;
      if (!m.valid(a)) return new Expected('ERR_GUEST_ADDRESS_INVALID', a);
      if (op.op === 'write' && m.readOnly(a)) return new Expected('ERR_READ_ONLY', a);
      let n = 0;
      while (n < op.len && m.valid(a + n) && (op.op === 'read' || !m.readOnly(a + n))) {
        if (op.op === 'write') m.bytes[a + n] = (op.seed + n) & 0xff;
        n++;
      }
      return op.op === 'read' ? Array.from(m.bytes.subarray(a, a + n)) : n;
    }
    case 'readSlice':
    case 'writeSlice':
    case 'fill': {
      if (op.op === 'fill' && op.value > 255) return new Expected('ERR_VALUE_OUT_OF_RANGE');
      const bad = need(op.addr);
      if (bad) return bad;
      const a = op.addr as number;
      if (op.op === 'readSlice') {
        const fi = m.firstInvalid(a, op.len);
        if (fi >= 0) return new Expected('ERR_GUEST_ADDRESS_INVALID', fi);
        return Array.from(m.bytes.subarray(a, a + op.len));
      }
      const refused = m.writeRefusal(a, op.len);
      if (refused) return refused;
      for (let i = 0; i < op.len; i++) m.bytes[a + i] = op.op === 'fill' ? op.value : (op.seed + i) & 0xff;
      return undefined;
    }
    case 'get':
    case 'set': {
      const [, size, get, set, le, kind] = TYPES[op.t];
      if (op.op === 'set' && !checkValue(kind, size, op.value)) return new Expected('ERR_VALUE_OUT_OF_RANGE');
      const bad = need(op.addr);
      if (bad) return bad;
      const a = op.addr as number;
      if (op.op === 'set') {
        const refused = m.writeRefusal(a, size);
        if (refused) return refused;
      }
      const fi = m.firstInvalid(a, size);
      if (fi >= 0) return new Expected('ERR_GUEST_ADDRESS_INVALID', fi);
      if (op.op === 'get') {
        for (let i = 0; i < size; i++) scratch.setUint8(i, m.bytes[a + i]);
        const v = (scratch as unknown as Record<string, (o: number, le: boolean) => unknown>)[`get${get}`](0, le);
        if (kind === 'num64') return (v as bigint) > BigInt(Number.MAX_SAFE_INTEGER) ? new Expected('ERR_UNSAFE_INTEGER') : Number(v);
        return v;
      }
      const v = kind === 'big' || kind === 'sbig' || kind === 'num64' ? BigInt(op.value as number | bigint) : op.value;
      (scratch as unknown as Record<string, (o: number, v: unknown, le: boolean) => void>)[`set${set}`](0, v, le);
      for (let i = 0; i < size; i++) m.bytes[a + i] = scratch.getUint8(i);
      return undefined;
    }
    case 'load':
    case 'store':
    case 'cas': {
      const size = op.size;
      const bad = need(op.addr);
      if (bad) return bad;
      const a = op.addr as number;
      const refused = op.op === 'load' ? undefined : m.writeRefusal(a, size);
      if (refused) return refused;
      const fi = m.firstInvalid(a, size);
      if (fi >= 0) return new Expected('ERR_GUEST_ADDRESS_INVALID', fi);
      const r = m.regionOf[a];
      if (m.regionOf[a + size - 1] !== r || (a - m.layout.regions[r].start) % size !== 0) return new Expected('ERR_MISALIGNED');
      if (!m.layout.shared) return new Expected('ERR_NOT_SHARED');
      let old = 0n;
      for (let i = size - 1; i >= 0; i--) old = (old << 8n) | BigInt(m.bytes[a + i]);
      const put = (x: bigint) => {
        for (let i = 0; i < size; i++) m.bytes[a + i] = Number((x >> BigInt(8 * i)) & 0xffn);
      };
      const out = (x: bigint) => (size === 8 ? x : Number(x));
      if (op.op === 'load') return out(old);
      if (op.op === 'store') {
        put(BigInt(op.value));
        return undefined;
      }
      if (old === BigInt(op.expected)) put(BigInt(op.value));
      return out(old);
    }
    case 'getStruct':
    case 'setStruct': {
      const bad = need(op.addr);
      if (bad) return bad;
      const a = op.addr as number;
      const refused = op.op === 'setStruct' ? m.writeRefusal(a, Rec.size) : undefined;
      if (refused) return refused;
      const fi = m.firstInvalid(a, Rec.size);
      if (fi >= 0) return new Expected('ERR_GUEST_ADDRESS_INVALID', fi);
      const dv = new DataView(m.bytes.buffer);
      if (op.op === 'getStruct') {
        return { a: dv.getUint8(a), b: dv.getUint32(a + 1, true), c: dv.getBigUint64(a + 5, true), d: dv.getInt16(a + 13, false) };
      }
      dv.setUint8(a, op.value.a);
      dv.setUint32(a + 1, op.value.b, true);
      dv.setBigUint64(a + 5, op.value.c, true);
      dv.setInt16(a + 13, op.value.d, false);
      return undefined;
    }
  }
}

function realRun(mem: GuestMemory, op: Op): unknown {
  const a = op.addr as GuestAddress;
  const call = (): unknown => {
    switch (op.op) {
      case 'read': {
        const buf = new Uint8Array(op.len);
        const n = mem.read(a, buf);
        return Array.from(buf.subarray(0, n));
      }
      case 'write':
        return mem.write(a, Uint8Array.from({ length: op.len }, (_, i) => (op.seed + i) & 0xff));
      case 'readSlice': {
        const buf = new Uint8Array(op.len);
        mem.readSlice(a, buf);
        return Array.from(buf);
      }
      case 'writeSlice':
        return mem.writeSlice(a, Uint8Array.from({ length: op.len }, (_, i) => (op.seed + i) & 0xff));
      case 'fill':
        return mem.fill(a, op.len, op.value);
      case 'get':
        return (mem as unknown as Record<string, (a: unknown) => unknown>)[`read${TYPES[op.t][0]}`](a);
      case 'set': {
        const name = TYPES[op.t][0];
        const fns = mem as unknown as Record<string, (a: unknown, v: unknown) => unknown>;
        return fns[`write${name.replace('AsNumber', '')}`](a, op.value);
      }
      case 'load':
      case 'store':
      case 'cas': {
        const sfx = `U${op.size * 8}`;
        const conv = (x: number) => (op.size === 8 ? BigInt(x) : x);
        const fns = mem as unknown as Record<string, (...args: unknown[]) => unknown>;
        if (op.op === 'load') return fns[`load${sfx}`](a);
        if (op.op === 'store') return fns[`store${sfx}`](a, conv(op.value));
        return fns[`compareExchange${sfx}`](a, conv(op.expected), conv(op.value));
      }
      case 'getStruct':
        return mem.readStruct(Rec, a);
      case 'setStruct':
        return mem.writeStruct(Rec, a, op.value);
    }
  };
  try {
    return call();
  } catch (err) {
    const e = err as { code?: string; address?: number };
    if (e.code === undefined) throw err;
    return new Expected(e.code, e.address);
  }
}

function build(layout: Layout): GuestMemory {
  return GuestMemory.fromRegions(
    layout.regions.map(
      (r) => new GuestMemoryRegion(GuestAddress(r.start), layout.shared ? sharedBackend(r.length) : heapBackend(r.length), { readOnly: r.readOnly }),
    ),
  );
}

function snapshot(mem: GuestMemory, m: Model): number[] {
  const out: number[] = [];
  for (const r of m.layout.regions) {
    const buf = new Uint8Array(r.length);
    mem.readSlice(GuestAddress(r.start), buf);
    out.push(...buf);
  }
  return out;
}

function modelSnapshot(m: Model): number[] {
  return m.layout.regions.flatMap((r) => Array.from(m.bytes.subarray(r.start, r.start + r.length)));
}

test('GuestMemory agrees with a flat-array model over >= 100k random operations', (t) => {
  let total = 0;
  fc.assert(
    fc.property(
      layoutArb.chain((layout) => fc.tuple(fc.constant(layout), fc.array(opArb(layout.space), { minLength: 250, maxLength: 600, size: 'max' }))),
      ([layout, ops]) => {
        const mem = build(layout);
        const model = new Model(layout);
        ops.forEach((op, i) => {
          const want = modelRun(model, op);
          const got = realRun(mem, op);
          if (want instanceof Expected && got instanceof Expected) {
            assert.equal(got.code, want.code, `op ${i} ${JSON.stringify(op, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
            if (want.address !== undefined) assert.equal(got.address, want.address, `op ${i}: reported address`);
          } else {
            assert.deepStrictEqual(got, want, `op ${i} ${JSON.stringify(op, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
          }
          total++;
        });
        assert.deepStrictEqual(snapshot(mem, model), modelSnapshot(model));
      },
    ),
    { numRuns: 400 },
  );
  assert.ok(total >= 100_000, `ran ${total} operations`);
  t.diagnostic(`${total} operations checked against the model`);
});
