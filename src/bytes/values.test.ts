import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { VolatileSlice } from '../volatile/slice.js';
import { type StructInput, type StructValue, structLayout } from './struct.js';
import { f64be, f64le, i64le, type InputOf, u16be, u32le, u64leNumber, u64le, u8, type ValueOf } from './values.js';

test('every typed accessor matches DataView at every alignment', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.nat(15), (bytes, at) => {
      const s = new VolatileSlice(bytes.slice());
      const dv = new DataView(bytes.buffer);
      for (const le of [true, false]) {
        const e = le ? 'LE' : 'BE';
        const S = s as unknown as Record<string, (a: number) => unknown>;
        assert.equal(S[`readU16${e}`](at), dv.getUint16(at, le));
        assert.equal(S[`readI16${e}`](at), dv.getInt16(at, le));
        assert.equal(S[`readU32${e}`](at), dv.getUint32(at, le));
        assert.equal(S[`readI32${e}`](at), dv.getInt32(at, le));
        assert.equal(S[`readU64${e}`](at), dv.getBigUint64(at, le));
        assert.equal(S[`readI64${e}`](at), dv.getBigInt64(at, le));
        assert.ok(Object.is(S[`readF32${e}`](at), dv.getFloat32(at, le)));
        assert.ok(Object.is(S[`readF64${e}`](at), dv.getFloat64(at, le)));
      }
      assert.equal(s.readU8(at), dv.getUint8(at));
      assert.equal(s.readI8(at), dv.getInt8(at));
    }),
    { numRuns: 300 },
  );
});

test('writes round-trip bit-exactly, including NaN payloads of big-endian floats', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(8), (bits, at) => {
      const s = new VolatileSlice(new Uint8Array(24));
      s.writeU64BE(at, bits);
      assert.equal(s.readU64BE(at), bits);
      // Reading bytes back as a big-endian double and writing them again must not canonicalise.
      const f = s.readF64BE(at);
      if (!Number.isNaN(f)) {
        s.writeF64BE(at + 8, f);
        assert.equal(s.readU64BE(at + 8), bits);
      }
      s.writeU64LE(at, bits);
      assert.equal(s.readU64LE(at), bits);
    }),
    { numRuns: 500 },
  );
});

test('u64 written from a number is one exact 8-byte value at every alignment', () => {
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.nat(8), (n, at) => {
      const s = new VolatileSlice(new Uint8Array(24));
      s.writeU64LE(at, n);
      assert.equal(s.readU64LE(at), BigInt(n));
      assert.equal(s.readU64LEAsNumber(at), n);
      s.writeU64BE(at, n);
      assert.equal(s.readU64BEAsNumber(at), n);
      s.writeI64LE(at, -n);
      assert.equal(s.readI64LE(at), BigInt(-n));
    }),
  );
});

test('a guest u64 that is not a safe integer is refused, never rounded (ERR_UNSAFE_INTEGER)', () => {
  const s = new VolatileSlice(new Uint8Array(16));
  s.writeU64LE(0, 2n ** 53n);
  assert.throws(() => s.readU64LEAsNumber(0), { name: 'VolatileMemoryError', code: 'ERR_UNSAFE_INTEGER' });
  s.writeU64LE(0, 0xfff8_0000_0000_0001n); // a NaN bit pattern as a double
  assert.throws(() => s.readU64LEAsNumber(0), (e: Error) => /0xfff8000000000001/.test(e.message));
  s.writeU64BE(3, 2n ** 53n);
  assert.throws(() => s.readU64BEAsNumber(3), { code: 'ERR_UNSAFE_INTEGER' });
  s.writeU64LE(0, 2n ** 53n - 1n);
  assert.equal(s.readU64LEAsNumber(0), Number.MAX_SAFE_INTEGER);
});

test('values that do not fit their type are refused before anything is written (ERR_VALUE_OUT_OF_RANGE)', () => {
  const s = new VolatileSlice(new Uint8Array(16));
  const cases: [string, unknown][] = [
    ['writeU8', 256], ['writeU8', -1], ['writeI8', 128], ['writeU16LE', 0x10000], ['writeI16BE', -32769],
    ['writeU32LE', 2 ** 32], ['writeU32BE', 1.5], ['writeI32LE', 2 ** 31], ['writeU64LE', -1n],
    ['writeU64LE', 2n ** 64n], ['writeU64LE', 2 ** 53], ['writeI64LE', 2n ** 63n], ['writeF32LE', '1'],
    ['writeU32LE', '7'],
  ];
  for (const [method, value] of cases) {
    assert.throws(() => (s as unknown as Record<string, (a: number, v: unknown) => void>)[method](0, value), { code: 'ERR_VALUE_OUT_OF_RANGE' }, `${method}(${String(value)})`);
  }
  assert.deepEqual([...s.view('read')], new Array(16).fill(0));
});

test('struct layouts: packed, read as a plain object, checked whole before writing', () => {
  const Desc = structLayout('virtq_desc', { addr: u64leNumber, len: u32le, flags: u16be, next: u8 });
  assert.equal(Desc.size, 15);
  assert.deepEqual(Desc.fields.map((f) => f.offset), [0, 8, 12, 14]);
  const s = new VolatileSlice(new Uint8Array(32));
  s.writeStruct(Desc, 3, { addr: 0x1_2345_6789, len: 512, flags: 0x0102, next: 9 });
  assert.deepEqual(s.readStruct(Desc, 3), { addr: 0x1_2345_6789, len: 512, flags: 0x0102, next: 9 });
  assert.equal(s.readU16BE(3 + 12), 0x0102);
  const before = [...s.view('read')];
  assert.throws(() => s.writeStruct(Desc, 0, { addr: 1, len: 2, flags: 3, next: 300 }), (e: any) => {
    assert.equal(e.code, 'ERR_VALUE_OUT_OF_RANGE');
    assert.match(e.message, /virtq_desc\.next/);
    return true;
  });
  assert.deepEqual([...s.view('read')], before, 'nothing written');
  assert.throws(() => s.readStruct(Desc, 20), { code: 'ERR_OUT_OF_BOUNDS', address: 20, length: 15 });
  assert.throws(() => structLayout('empty', {}), { code: 'ERR_INVALID_LAYOUT' });
  // A guest address field that is not a safe integer is refused, not rounded.
  s.writeU64LE(3, 2n ** 60n);
  assert.throws(() => s.readStruct(Desc, 3), { code: 'ERR_UNSAFE_INTEGER' });
});

test('readValue / writeValue take any value type', () => {
  const s = new VolatileSlice(new Uint8Array(16));
  s.writeValue(i64le, 0, -5n);
  assert.equal(s.readValue(i64le, 0), -5n);
  assert.equal(s.readValue(u64le, 0), 2n ** 64n - 5n);
  s.writeValue(f64le, 8, Math.PI);
  assert.equal(s.readValue(f64le, 8), Math.PI);
  assert.notEqual(s.readValue(f64be, 8), Math.PI);
  s.writeValue(u16be, 0, 0xabcd);
  assert.deepEqual([s.readU8(0), s.readU8(1)], [0xab, 0xcd]);
});

test('the value and struct types resolve to what the accessors read and take (checked by the compiler)', () => {
  const read: ValueOf<typeof u32le> = 1;
  const big: ValueOf<typeof u64le> = 1n;
  const taken: InputOf<typeof u64le> = 1; // 64-bit writes also take safe-integer numbers
  // @ts-expect-error a u32 reads as a number, not a bigint
  const wrong: ValueOf<typeof u32le> = 1n;
  const fields = { a: u32le, b: u64le };
  const value: StructValue<typeof fields> = { a: 1, b: 2n };
  const input: Partial<StructInput<typeof fields>> = { b: 2 };
  assert.deepEqual([read, big, taken, wrong, value, input], [1, 1n, 1, 1n, { a: 1, b: 2n }, { b: 2 }]);
});
