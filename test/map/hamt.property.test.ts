/**
 * Model tests: random programs of set/delete/get/has/iterate run on a Hamt and
 * on a native Map side by side, over a small pool of keys (so operations hit
 * keys already present) whose hashes come from one of four regimes:
 *
 * - tiny: 0..3, so most keys collide and CollisionNodes form, grow and shrink;
 * - wide: 0..63, so the root fills more than 16 slots and turns into an
 *   ArrayNode and back while keys still collide: CollisionNodes form, shrink
 *   and turn back into pairs under an ArrayNode as under a BitmapNode;
 * - prefixes: each 5-bit level is 0, 1 or 31, so keys share prefixes for
 *   one to seven levels and split at every depth, down to bits 30-31;
 * - full: any int32, the spread nextHash gives, with ArrayNodes at the root.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Hamt, NOT_FOUND } from "../../src/map/hamt.ts";
import { nextHash } from "../../src/map/hash.ts";
import { FixedHashKey } from "../helpers/fixed-hash-key.ts";

type Op =
  | { readonly kind: "set"; readonly key: number; readonly value: number }
  | { readonly kind: "delete"; readonly key: number }
  | { readonly kind: "get"; readonly key: number }
  | { readonly kind: "has"; readonly key: number }
  | { readonly kind: "iterate" };

const POOL_MAX = 40;

const hashRegimes: readonly [string, fc.Arbitrary<number>][] = [
  ["tiny", fc.integer({ min: 0, max: 3 })],
  ["wide", fc.integer({ min: 0, max: 63 })],
  [
    "prefixes",
    fc
      .array(fc.constantFrom(0, 1, 31), { minLength: 7, maxLength: 7 })
      .map((groups) =>
        groups.reduce<number>((hash, group, level) => hash | (group << (5 * level)), 0),
      ),
  ],
  ["full", fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })],
];

const keyIndex = fc.nat({ max: POOL_MAX - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("set" as const),
      key: keyIndex,
      // Few values, so setting the value a key already has (a no-op) is common.
      value: fc.integer({ min: 0, max: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("delete" as const), key: keyIndex }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("get" as const), key: keyIndex }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("has" as const), key: keyIndex }) },
  { weight: 1, arbitrary: fc.constant({ kind: "iterate" as const }) },
);

/** Asserts that `map` holds exactly `model`, probing every key of `pool`. */
function assertMatches(
  map: Hamt<FixedHashKey, number>,
  model: ReadonlyMap<FixedHashKey, number>,
  pool: readonly FixedHashKey[],
): void {
  assert.equal(map.size, model.size);
  for (const key of pool) {
    assert.equal(map.has(key), model.has(key), `has(${key})`);
    assert.equal(map.get(key), model.has(key) ? model.get(key) : NOT_FOUND, `get(${key})`);
  }
  const entries = map.toArray();
  assert.equal(entries.length, model.size);
  for (const [key, value] of entries) assert.equal(value, model.get(key), `entry ${key}`);
  const visited: [FixedHashKey, number][] = [];
  map.forEach((value, key) => {
    visited.push([key, value]);
  });
  assert.equal(visited.length, entries.length);
  visited.forEach(([key, value], i) => {
    assert.equal(key, entries[i]?.[0], "forEach and toArray visit in one order");
    assert.equal(value, entries[i]?.[1]);
  });
}

/** Runs `ops` on a Hamt and a Map; checks each step, then every earlier version. */
function runAgainstModel(hashes: readonly number[], ops: readonly Op[]): void {
  const pool = hashes.map((hash, i) => new FixedHashKey(`k${i}`, hash));
  const keyAt = (index: number) => pool[index % pool.length];
  let map = Hamt.empty<FixedHashKey, number>();
  let model = new Map<FixedHashKey, number>();
  const versions: [Hamt<FixedHashKey, number>, Map<FixedHashKey, number>][] = [[map, model]];

  for (const op of ops) {
    switch (op.kind) {
      case "set": {
        const key = keyAt(op.key);
        const next = map.set(key, op.value);
        if (model.has(key) && Object.is(model.get(key), op.value)) {
          assert.equal(next, map, `set(${key}, ${op.value}) again keeps the map`);
          break;
        }
        assert.notEqual(next.id, map.id);
        model = new Map(model).set(key, op.value);
        map = next;
        versions.push([map, model]);
        break;
      }
      case "delete": {
        const key = keyAt(op.key);
        const next = map.delete(key);
        if (!model.has(key)) {
          assert.equal(next, map, `delete(${key}) of an absent key keeps the map`);
          break;
        }
        assert.notEqual(next.id, map.id);
        model = new Map(model);
        model.delete(key);
        map = next;
        if (model.size === 0) assert.equal(map, Hamt.empty());
        versions.push([map, model]);
        break;
      }
      case "get": {
        const key = keyAt(op.key);
        assert.equal(map.get(key), model.has(key) ? model.get(key) : NOT_FOUND);
        break;
      }
      case "has":
        assert.equal(map.has(keyAt(op.key)), model.has(keyAt(op.key)));
        break;
      case "iterate":
        assertMatches(map, model, pool);
        break;
    }
    assert.equal(map.size, model.size);
  }

  for (const [version, snapshot] of versions) assertMatches(version, snapshot, pool);
}

describe("Hamt against a Map model", () => {
  for (const [regime, hash] of hashRegimes) {
    it(`random set/delete/get/has/iterate agree with Map; old versions unchanged (${regime} hashes)`, () => {
      fc.assert(
        fc.property(
          fc.array(hash, { minLength: 1, maxLength: POOL_MAX, size: "max" }),
          fc.array(opArb, { maxLength: 200, size: "max" }),
          runAgainstModel,
        ),
        { numRuns: 200 },
      );
    });
  }

  for (const [regime, hash] of hashRegimes.slice(1)) {
    it(`equal contents iterate alike and have one shape, whatever the history (${regime} hashes)`, () => {
      const contents = fc
        .uniqueArray(hash, { maxLength: 60, size: "max" })
        .chain((hashes) =>
          fc.tuple(
            fc.constant(hashes),
            fc.shuffledSubarray(hashes, { minLength: hashes.length, maxLength: hashes.length }),
          ),
        );
      fc.assert(
        fc.property(
          contents,
          fc.array(hash, { maxLength: 40, size: "max" }),
          ([hashes, shuffledHashes], extraHashes) => {
            const keys = new Map(hashes.map((h) => [h, new FixedHashKey(`h${h}`, h)]));
            const extras = extraHashes.map((h, i) => new FixedHashKey(`extra${i}`, h));
            let direct = Hamt.empty<FixedHashKey, number>();
            for (const h of hashes) direct = direct.set(keys.get(h) as FixedHashKey, h);

            // Another order, with extra keys (which may collide with the
            // contents) set first and deleted after.
            let roundabout = Hamt.empty<FixedHashKey, number>();
            for (const key of extras) roundabout = roundabout.set(key, -1);
            for (const h of shuffledHashes)
              roundabout = roundabout.set(keys.get(h) as FixedHashKey, h);
            for (const key of extras.reverse()) roundabout = roundabout.delete(key);

            assert.deepEqual(
              roundabout.toArray().map(([key]) => key.name),
              direct.toArray().map(([key]) => key.name),
            );
            assert.equal(roundabout.dump(), direct.dump());
          },
        ),
        { numRuns: 200 },
      );
    });
  }
});

describe("Hamt at scale", () => {
  it("100,000 keys: set, verify, delete half, verify both versions", { timeout: 10_000 }, () => {
    const COUNT = 100_000;
    const keys = Array.from({ length: COUNT }, (_, i) => new FixedHashKey(String(i), nextHash()));
    let full = Hamt.empty<FixedHashKey, number>();
    for (const [i, key] of keys.entries()) full = full.set(key, i);

    const verifyFull = () => {
      assert.equal(full.size, COUNT);
      for (const [i, key] of keys.entries()) {
        if (full.get(key) !== i) assert.fail(`full.get(${key}) is ${String(full.get(key))}`);
      }
      let visited = 0;
      full.forEach((value, key) => {
        if (keys[value] !== key) assert.fail(`${key} visited with ${value}`);
        visited++;
      });
      assert.equal(visited, COUNT);
    };
    verifyFull();

    let half = full;
    for (let i = 0; i < COUNT; i += 2) half = half.delete(keys[i]);
    assert.equal(half.size, COUNT / 2);
    for (const [i, key] of keys.entries()) {
      const expected = i % 2 === 0 ? NOT_FOUND : i;
      if (half.get(key) !== expected) assert.fail(`half.get(${key}) is ${String(half.get(key))}`);
    }
    assert.equal(half.toArray().length, COUNT / 2);
    verifyFull(); // the full version is untouched by the deletes

    let empty = half;
    for (let i = 1; i < COUNT; i += 2) empty = empty.delete(keys[i]);
    assert.equal(empty, Hamt.empty());
  });
});
