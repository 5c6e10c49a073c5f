/**
 * The persistent map's identities, size, ids, order and persistence.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Hamt, NOT_FOUND } from "../../src/map/hamt.ts";
import { FixedHashKey } from "../helpers/fixed-hash-key.ts";
import { drawn, mapOf, numberedKeys, shuffled } from "../helpers/hamt-fixtures.ts";

describe("Hamt identity", () => {
  // One map for each place a key can sit: a root pair, a pair in a sub-node, a
  // pair under an ArrayNode, a pair in a CollisionNode.
  const keys = numberedKeys(20);
  const sub = new FixedHashKey("sub", 33); // beside key 1, at level 1
  const twin = new FixedHashKey("twin", 7); // collides with key 7
  const small = mapOf(...keys.slice(0, 8).map((k): [FixedHashKey, string] => [k, k.name]));
  const places: [string, Hamt<FixedHashKey, string>, FixedHashKey][] = [
    ["a root pair", small, keys[3]],
    ["a sub-node pair", small.set(sub, "sub"), sub],
    [
      "an ArrayNode's pair",
      mapOf(...keys.map((k): [FixedHashKey, string] => [k, k.name])),
      keys[18],
    ],
    ["a CollisionNode pair", small.set(twin, "twin"), twin],
  ];

  for (const [place, map, key] of places) {
    it(`set(k, sameValue) returns the same map: ${place}`, () => {
      const value = map.get(key);
      assert.equal(typeof value, "string");
      assert.equal(map.set(key, value as string), map);
      const changed = map.set(key, "other");
      assert.notEqual(changed, map);
      assert.equal(changed.set(key, "other"), changed);
    });
  }

  it("delete(absent) returns the same map, wherever the search ends", () => {
    const [small0, withSub, array, withCollision] = places.map(([, map]) => map);
    const absent: [Hamt<FixedHashKey, string>, FixedHashKey, string][] = [
      [Hamt.empty(), keys[0], "the empty map"],
      [small0, new FixedHashKey("x", 20), "an empty root slot"],
      [small0, new FixedHashKey("x", 35), "a root slot holding another key"],
      [small0, new FixedHashKey("x", 3), "a root slot holding a same-hash twin"],
      [withSub, new FixedHashKey("x", 65), "a sub-node's empty slot"],
      [withSub, new FixedHashKey("x", 1025), "a sub-node's slot holding another key"],
      [array, new FixedHashKey("x", 25), "an ArrayNode's empty slot"],
      [array, new FixedHashKey("x", 50), "an ArrayNode's child"],
      [withCollision, new FixedHashKey("x", 7), "a CollisionNode"],
    ];
    for (const [map, key, where] of absent) assert.equal(map.delete(key), map, where);
  });

  it("Hamt.empty() is one shared map, and emptying a map returns it", () => {
    const k = new FixedHashKey("k", 5);
    const twin = new FixedHashKey("twin", 5);
    assert.equal(Hamt.empty(), Hamt.empty());
    assert.equal(Hamt.empty<FixedHashKey, number>().set(k, 1).delete(k), Hamt.empty());
    assert.equal(mapOf([k, 1], [twin, 2]).delete(k).delete(twin), Hamt.empty());
    assert.equal(Hamt.empty().size, 0);
  });

  // Values compare by identity, as hamt.c does (`val == node_val`); in
  // JavaScript identity is Object.is: 0 and -0 are two values, NaN is one.
  it("set(k, -0) over 0 stores -0", () => {
    const k = new FixedHashKey("k", 5);
    const twin = new FixedHashKey("twin", 5);
    const h = mapOf([k, 0]);
    assert.ok(Object.is(h.set(k, -0).get(k), -0), "in a BitmapNode");
    const collided = h.set(twin, 0);
    assert.ok(Object.is(collided.set(twin, -0).get(twin), -0), "in a CollisionNode");
  });

  it("set(k, NaN) over NaN returns the same map", () => {
    const k = new FixedHashKey("k", 5);
    const twin = new FixedHashKey("twin", 5);
    const h = mapOf([k, Number.NaN]);
    assert.equal(h.set(k, Number.NaN), h, "in a BitmapNode");
    const collided = h.set(twin, Number.NaN);
    assert.equal(collided.set(twin, Number.NaN), collided, "in a CollisionNode");
  });
});

describe("Hamt size, id, order and persistence", () => {
  it("size counts adds, not replaces or absent deletes", () => {
    const a = new FixedHashKey("a", 1);
    const b = new FixedHashKey("b", 33);
    const c = new FixedHashKey("c", 33);
    const steps: [string, (h: Hamt<FixedHashKey, number>) => Hamt<FixedHashKey, number>, number][] =
      [
        ["add a", (h) => h.set(a, 1), 1],
        ["replace a", (h) => h.set(a, 2), 1],
        ["add b beside a", (h) => h.set(b, 1), 2],
        ["add c colliding with b", (h) => h.set(c, 1), 3],
        ["replace c", (h) => h.set(c, 2), 3],
        ["delete absent", (h) => h.delete(new FixedHashKey("c", 33)), 3],
        ["delete b", (h) => h.delete(b), 2],
        ["delete b again", (h) => h.delete(b), 2],
        ["delete a", (h) => h.delete(a), 1],
        ["delete c", (h) => h.delete(c), 0],
      ];
    let h = Hamt.empty<FixedHashKey, number>();
    for (const [step, apply, size] of steps) {
      h = apply(h);
      assert.equal(h.size, size, step);
      assert.equal(h.toArray().length, size, step);
    }
  });

  it("every version has its own id; a no-op keeps it", () => {
    const keys = numberedKeys(40);
    const ids = new Set<number>([Hamt.empty().id]);
    let h = Hamt.empty<FixedHashKey, number>();
    for (const [i, key] of keys.entries()) {
      h = h.set(key, i);
      ids.add(h.id);
      const again = h.set(key, i);
      assert.equal(again.id, h.id);
    }
    for (const key of keys.slice(0, 30)) {
      h = h.delete(key);
      ids.add(h.id);
      assert.equal(h.delete(key).id, h.id);
    }
    assert.equal(ids.size, 1 + 40 + 30);
  });

  it("read answers as get: for the key whose set made the version, another key, and an absent one", () => {
    const [a, b, c] = numberedKeys(3);
    const ab = mapOf<unknown>([a, "a"], [b, "b"]);
    for (const [map, name] of [
      [ab, "made by set(b)"],
      [ab.delete(a), "made by delete(a)"],
      [ab.set(c, undefined), "made by set(c, undefined)"],
    ] as const) {
      for (const key of [a, b, c]) assert.equal(map.read(key), map.get(key), `${name}: ${key}`);
    }
    assert.equal(ab.read(b), "b");
    assert.equal(ab.read(a), "a");
    assert.equal(ab.read(c), NOT_FOUND);
  });

  it("dump draws each value, null and undefined included", () => {
    const [a, b, c] = numberedKeys(3);
    const shown = mapOf<unknown>([a, null], [b, undefined], [c, 7]).dump();
    assert.ok(shown.includes(`${a.name}: null`), shown);
    assert.ok(shown.includes(`${b.name}: undefined`), shown);
    assert.ok(shown.includes(`${c.name}: 7`), shown);
  });

  it("equal contents built in different orders iterate alike and have one shape", () => {
    // Hashes that share prefixes at every level, cross 16 children, and split deep.
    const hashes = [0, 1, 2, 33, 65, 1025, 1057, 31, 63, 2 ** 31, -1, 0x7fffffff];
    for (let i = 3; i < 24; i++) hashes.push(i * 37);
    const keys = hashes.map((h) => new FixedHashKey(`h${h}`, h));
    const entries = keys.map((k, i): [FixedHashKey, number] => [k, i]);
    const base = mapOf(...entries);
    for (const seed of [1, 2, 3, 4]) {
      const other = mapOf(...shuffled(entries, seed));
      assert.deepEqual(other.toArray(), base.toArray(), `seed ${seed}`);
      assert.equal(drawn(other), drawn(base), `seed ${seed}`);
    }
    // The same contents reached through extra keys set and deleted again.
    const extras = numberedKeys(40).map((k): [FixedHashKey, number] => [k, -1]);
    let roundabout = mapOf(...extras, ...shuffled(entries, 9));
    for (const [k] of shuffled(extras, 10)) roundabout = roundabout.delete(k);
    assert.deepEqual(roundabout.toArray(), base.toArray());
    assert.equal(drawn(roundabout), drawn(base));
  });

  // Keys with one full hash cannot be told apart by it: inside a
  // CollisionNode they keep the order in which they were set.
  it("colliding keys iterate in the order they were set", () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => new FixedHashKey(n, 10));
    const names = (h: Hamt<FixedHashKey, number>) => h.toArray().map(([k]) => k.name);
    assert.deepEqual(names(mapOf([a, 1], [b, 2], [c, 3])), ["a", "b", "c"]);
    assert.deepEqual(names(mapOf([c, 3], [a, 1], [b, 2])), ["c", "a", "b"]);
  });

  it("old versions are unchanged by later sets and deletes", () => {
    const keys = [
      ...numberedKeys(20),
      new FixedHashKey("c1", 7),
      new FixedHashKey("c2", 7),
      new FixedHashKey("deep", 1025),
    ];
    const versions: [Hamt<FixedHashKey, number>, string, [FixedHashKey, number][]][] = [];
    let h = Hamt.empty<FixedHashKey, number>();
    const record = () => versions.push([h, drawn(h), h.toArray()]);
    record();
    for (const [i, key] of keys.entries()) {
      h = h.set(key, i);
      record();
    }
    for (const [i, key] of keys.entries()) {
      h = h.set(key, i * 10);
      record();
    }
    for (const key of shuffled(keys, 5)) {
      h = h.delete(key);
      record();
    }
    for (const [map, drawing, entries] of versions) {
      assert.equal(drawn(map), drawing);
      assert.deepEqual(map.toArray(), entries);
      for (const [key, value] of entries) assert.equal(map.get(key), value);
    }
  });
});

describe("Hamt: iteration order across node kinds", () => {
  it("entries come in hash order with 16 keys (bitmap root) and 17 (array root)", () => {
    for (const n of [16, 17]) {
      const keys = numberedKeys(n);
      let map = Hamt.empty<(typeof keys)[number], number>();
      for (const k of [...keys].reverse()) map = map.set(k, 0);
      assert.deepEqual(
        map.toArray().map(([k]) => k),
        keys,
      );
    }
  });
});
