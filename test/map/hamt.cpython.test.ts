/**
 * The persistent map against the behaviours of CPython's HamtTest
 * (`Lib/test/test_context.py`), keys steered with FixedHashKey.
 *
 * Tests named `test_hamt_*` are ported from CPython's HamtTest in
 * `Lib/test/test_context.py`. Not ported: `test_hamt_basics_1` (construct and
 * drop), `test_hamt_gc_*` (reference cycles are a refcounting concern), and
 * the HashKeyCrasher and `error_on_eq_to` parts of `test_hamt_stress`,
 * `test_hamt_delete_*`, `test_hamt_eq_2`, `test_hamt_in_1` and
 * `test_hamt_getitem_1`: keys here compare by identity, which cannot throw.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Hamt, NOT_FOUND } from "../../src/map/hamt.ts";
import { nextHash } from "../../src/map/hash.ts";
import { FixedHashKey } from "../helpers/fixed-hash-key.ts";
import {
  assertHolds,
  drawn,
  mapOf,
  numberedKeys,
  sameEntries,
  shuffled,
  singlePairChild,
  tree,
} from "../helpers/hamt-fixtures.ts";

describe("FixedHashKey", () => {
  // Hamt(size=2)
  //   BitmapNode(size=1 bitmap=0b10000000000)     hash 10: slot 10
  //     CollisionNode(size=2 hash=10)
  //       aaa: "a"
  //       bbb: "b"
  it("test_hashkey_helper_1: two keys with one hash are two keys, and really collide", () => {
    const k1 = new FixedHashKey("aaa", 10);
    const k2 = new FixedHashKey("bbb", 10);
    assert.notEqual(k1, k2);
    assert.equal(k1.hash, k2.hash);

    const h = mapOf([k1, "a"], [k2, "b"]);
    assert.equal(h.get(k1), "a");
    assert.equal(h.get(k2), "b");
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=2)
          BitmapNode(size=1 bitmap=0b10000000000)
            CollisionNode(size=2 hash=10)
              aaa: "a"
              bbb: "b"
      `,
    );
  });

  it("keeps a hash as the int32 nextHash would give, and reads well", () => {
    assert.equal(new FixedHashKey("top", 2 ** 31).hash, -(2 ** 31));
    assert.equal(new FixedHashKey("ones", 0xffffffff).hash, -1);
    assert.equal(new FixedHashKey("neg", -100).hash, -100);
    assert.equal(String(new FixedHashKey("a", 7)), 'FixedHashKey("a", 7)');
  });

  it("rejects a hash that is not a 32-bit integer", () => {
    for (const bad of [1.5, 2 ** 32, -(2 ** 31) - 1, Number.NaN]) {
      assert.throws(() => new FixedHashKey("bad", bad), RangeError);
    }
  });
});

describe("Hamt, ported from CPython's HamtTest", () => {
  it("test_hamt_basics_2: set makes a new map and leaves the old one as it was", () => {
    const a = new FixedHashKey("a", 1);
    const b = new FixedHashKey("b", 2);
    const h = Hamt.empty<FixedHashKey, string | number>();
    assert.equal(h.size, 0);

    const h2 = h.set(a, "b");
    assert.notEqual(h, h2);
    assert.equal(h.size, 0);
    assert.equal(h2.size, 1);
    assert.equal(h.get(a), NOT_FOUND);
    assert.equal(h2.get(a), "b");

    const h3 = h2.set(b, 10);
    assert.notEqual(h2, h3);
    assert.deepEqual([h.size, h2.size, h3.size], [0, 1, 2]);
    assert.equal(h3.get(a), "b");
    assert.equal(h3.get(b), 10);
    assert.equal(h.get(b), NOT_FOUND);
    assert.equal(h2.get(b), NOT_FOUND);
    assert.equal(h.get(a), NOT_FOUND);
    assert.equal(h2.get(a), "b");
  });

  it("test_hamt_basics_3: setting the identical value returns the same map", () => {
    const k = new FixedHashKey("1", 1);
    const o = {};
    const h1 = Hamt.empty<FixedHashKey, object>().set(k, o);
    assert.equal(h1.set(k, o), h1);
  });

  it("test_hamt_basics_4: an equal but distinct value makes a new map", () => {
    const k = new FixedHashKey("key", 1);
    const h1 = Hamt.empty<FixedHashKey, unknown[]>().set(k, []);
    const h2 = h1.set(k, []);
    assert.notEqual(h1, h2);
    assert.equal(h1.size, 1);
    assert.equal(h2.size, 1);
    assert.notEqual(h1.get(k), h2.get(k));
  });

  it("test_hamt_collision_1: colliding keys are set, replaced and added independently", () => {
    const k1 = new FixedHashKey("aaa", 10);
    const k2 = new FixedHashKey("bbb", 10);
    const k3 = new FixedHashKey("ccc", 10);

    const h = Hamt.empty<FixedHashKey, string>();
    const h2 = h.set(k1, "a");
    const h3 = h2.set(k2, "b");
    assert.equal(h.get(k1), NOT_FOUND);
    assert.equal(h.get(k2), NOT_FOUND);
    assert.equal(h2.get(k1), "a");
    assert.equal(h2.get(k2), NOT_FOUND);
    assert.equal(h3.get(k1), "a");
    assert.equal(h3.get(k2), "b");

    const h4 = h3.set(k2, "cc");
    const h5 = h4.set(k3, "aa");
    assert.equal(h3.get(k1), "a");
    assert.equal(h3.get(k2), "b");
    assert.equal(h4.get(k1), "a");
    assert.equal(h4.get(k2), "cc");
    assert.equal(h4.get(k3), NOT_FOUND);
    assert.equal(h5.get(k1), "a");
    assert.equal(h5.get(k2), "cc");
    assert.equal(h5.get(k3), "aa");
    assert.deepEqual([h.size, h2.size, h3.size, h4.size, h5.size], [0, 1, 2, 2, 3]);
  });

  // The deepest tree possible: C and D differ from E only in bit 31, so they
  // share slot 0 for six levels; level 6 (bits 30-31) tells them apart.
  //
  // Hamt(size=3)
  //   BitmapNode(size=1 bitmap=0b1)                   level 0
  //     BitmapNode(size=1 bitmap=0b1)                 level 1
  //       BitmapNode(size=1 bitmap=0b1)               level 2
  //         BitmapNode(size=1 bitmap=0b1)             level 3
  //           BitmapNode(size=1 bitmap=0b1)           level 4
  //             BitmapNode(size=1 bitmap=0b1)         level 5
  //               BitmapNode(size=2 bitmap=0b101)     level 6: E in slot 0, C and D in slot 2
  //                 E: "E"
  //                 CollisionNode(size=2 hash=-2147483648)
  //                   C: "C"
  //                   D: "D"
  it("test_hamt_collision_3: iteration and deletion work on the deepest tree possible", () => {
    const C = new FixedHashKey("C", 0b10000000_00000000_00000000_00000000);
    const D = new FixedHashKey("D", 0b10000000_00000000_00000000_00000000);
    const E = new FixedHashKey("E", 0);
    const h = mapOf([C, "C"], [D, "D"], [E, "E"]);

    assert.equal(
      drawn(h),
      tree`
        Hamt(size=3)
          BitmapNode(size=1 bitmap=0b1)
            BitmapNode(size=1 bitmap=0b1)
              BitmapNode(size=1 bitmap=0b1)
                BitmapNode(size=1 bitmap=0b1)
                  BitmapNode(size=1 bitmap=0b1)
                    BitmapNode(size=1 bitmap=0b1)
                      BitmapNode(size=2 bitmap=0b101)
                        E: "E"
                        CollisionNode(size=2 hash=-2147483648)
                          C: "C"
                          D: "D"
      `,
    );
    assert.deepEqual(new Set(h.toArray().map(([k]) => k.name)), new Set(["C", "D", "E"]));

    // Not in CPython: deleting D leaves C a single pair, folded up all seven levels.
    const h2 = h.delete(E).delete(D);
    assert.equal(h2.get(C), "C");
    assert.equal(
      drawn(h2),
      tree`
        Hamt(size=1)
          BitmapNode(size=1 bitmap=0b1)
            C: "C"
      `,
    );
  });

  it("test_hamt_stress: 7000 keys set and deleted agree with a Map at every step", () => {
    const COLLECTION_SIZE = 7000;
    const TEST_ITERS_EVERY = 647;
    const keys = Array.from(
      { length: COLLECTION_SIZE },
      (_, i) => new FixedHashKey(String(i), nextHash()),
    );

    for (const seed of [1, 2, 3]) {
      let h = Hamt.empty<FixedHashKey, number>();
      const d = new Map<FixedHashKey, number>();
      keys.forEach((key, i) => {
        h = h.set(key, i);
        d.set(key, i);
        assert.equal(h.size, d.size);
        if (i % TEST_ITERS_EVERY === 0) assertHolds(h, d);
      });
      assert.equal(h.size, COLLECTION_SIZE);
      for (const [i, key] of keys.entries()) assert.equal(h.get(key), i);

      let hm: Hamt<FixedHashKey, number> | undefined;
      let dm: Map<FixedHashKey, number> | undefined;
      shuffled(keys, seed).forEach((key, i) => {
        h = h.delete(key);
        assert.equal(h.get(key), NOT_FOUND);
        d.delete(key);
        assert.equal(h.size, d.size);
        if (i === COLLECTION_SIZE / 2) [hm, dm] = [h, new Map(d)];
        if (i % TEST_ITERS_EVERY === 0) assertHolds(h, d);
      });
      assert.equal(h.size, 0);
      assert.equal(h, Hamt.empty());

      // The version from halfway through is untouched by the deletes after it.
      assert.ok(hm !== undefined && dm !== undefined);
      assert.equal(hm.size, dm.size);
      for (const [key, value] of dm) assert.equal(hm.get(key), value);
      assertHolds(hm, dm);
    }
  });

  // Hamt(size=5)
  //   BitmapNode(size=5 bitmap=0b111110000)     hashes 100..104: slots 4..8
  //     A: "a"
  //     B: "b"
  //     C: "c"
  //     D: "d"
  //     E: "e"
  it("test_hamt_delete_1: deleting from one BitmapNode", () => {
    const [A, B, C, D, E] = ["A", "B", "C", "D", "E"].map((n, i) => new FixedHashKey(n, 100 + i));
    const Z = new FixedHashKey("Z", -100);
    const twinOfD = new FixedHashKey("D", 103);

    let h = mapOf([A, "a"], [B, "b"], [C, "c"], [D, "d"], [E, "e"]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=5)
          BitmapNode(size=5 bitmap=0b111110000)
            A: "a"
            B: "b"
            C: "c"
            D: "d"
            E: "e"
      `,
    );
    h = h.delete(C);
    assert.equal(h.size, 4);
    assert.equal(h.delete(twinOfD), h, "a same-hash twin of D is another key");
    h = h.delete(D);
    assert.equal(h.size, 3);
    assert.equal(h.delete(Z), h);
    h = h.delete(A);
    assert.equal(h.size, 2);
    assert.equal(h.get(A), NOT_FOUND);
    assert.equal(h.get(B), "b");
    assert.equal(h.get(E), "e");
  });

  // B (201001) and C (101001) share slot 9 at level 0, and part at level 1
  // (slots 9 and 20).
  //
  // Hamt(size=5)
  //   BitmapNode(size=4 bitmap=0b1110010000)
  //     A: "a"
  //     D: "d"
  //     E: "e"
  //     BitmapNode(size=2 bitmap=0b100000000001000000000)
  //       B: "b"
  //       C: "c"
  it("test_hamt_delete_2: deleting from a sub-node folds the last pair into the root", () => {
    const A = new FixedHashKey("A", 100);
    const B = new FixedHashKey("B", 201001);
    const C = new FixedHashKey("C", 101001);
    const D = new FixedHashKey("D", 103);
    const E = new FixedHashKey("E", 104);
    const Z = new FixedHashKey("Z", -100);

    let h = mapOf([A, "a"], [B, "b"], [C, "c"], [D, "d"], [E, "e"]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=5)
          BitmapNode(size=4 bitmap=0b1110010000)
            A: "a"
            D: "d"
            E: "e"
            BitmapNode(size=2 bitmap=0b100000000001000000000)
              B: "b"
              C: "c"
      `,
    );
    assert.equal(h.delete(Z), h);
    assert.equal(h.delete(new FixedHashKey("B", 201001)), h, "a twin of B is another key");

    h = h.delete(C);
    assert.equal(h.size, 4);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=4)
          BitmapNode(size=4 bitmap=0b1110010000)
            A: "a"
            D: "d"
            E: "e"
            B: "b"
      `,
    );
    h = h.delete(B).delete(A);
    assert.equal(h.size, 2);
    assert.equal(h.get(D), "d");
    assert.equal(h.get(E), "e");
    h = h.delete(A).delete(B).delete(D).delete(E);
    assert.equal(h.size, 0);
  });

  // C and D (100100) share slot 4 with A (100) at level 0, part from A at level 1
  // (slot 24 against 3), and collide.
  //
  // Hamt(size=5)
  //   BitmapNode(size=3 bitmap=0b100110000)
  //     BitmapNode(size=2 bitmap=0b1000000000000000000001000)
  //       A: "a"
  //       CollisionNode(size=2 hash=100100)
  //         C: "c"
  //         D: "d"
  //     B: "b"
  //     E: "e"
  it("test_hamt_delete_3: deleting beside a collision node", () => {
    const A = new FixedHashKey("A", 100);
    const B = new FixedHashKey("B", 101);
    const C = new FixedHashKey("C", 100100);
    const D = new FixedHashKey("D", 100100);
    const E = new FixedHashKey("E", 104);

    let h = mapOf([A, "a"], [B, "b"], [C, "c"], [D, "d"], [E, "e"]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=5)
          BitmapNode(size=3 bitmap=0b100110000)
            BitmapNode(size=2 bitmap=0b1000000000000000000001000)
              A: "a"
              CollisionNode(size=2 hash=100100)
                C: "c"
                D: "d"
            B: "b"
            E: "e"
      `,
    );
    h = h.delete(A);
    assert.equal(h.size, 4);
    h = h.delete(E);
    assert.equal(h.size, 3);
    assert.equal(h.get(C), "c");
    assert.equal(h.get(D), "d");
    assert.equal(h.get(B), "b");
  });

  // Hamt(size=5)
  //   BitmapNode(size=2 bitmap=0b110000)
  //     BitmapNode(size=2 bitmap=0b1000000000000000000001000)
  //       A: "a"
  //       CollisionNode(size=3 hash=100100)
  //         C: "c"
  //         D: "d"
  //         E: "e"
  //     B: "b"
  it("test_hamt_delete_4: emptying a collision node of three", () => {
    const A = new FixedHashKey("A", 100);
    const B = new FixedHashKey("B", 101);
    const C = new FixedHashKey("C", 100100);
    const D = new FixedHashKey("D", 100100);
    const E = new FixedHashKey("E", 100100);

    let h = mapOf([A, "a"], [B, "b"], [C, "c"], [D, "d"], [E, "e"]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=5)
          BitmapNode(size=2 bitmap=0b110000)
            BitmapNode(size=2 bitmap=0b1000000000000000000001000)
              A: "a"
              CollisionNode(size=3 hash=100100)
                C: "c"
                D: "d"
                E: "e"
            B: "b"
      `,
    );
    const sizes: number[] = [];
    for (const key of [D, E, C, A, B]) {
      h = h.delete(key);
      sizes.push(h.size);
    }
    assert.deepEqual(sizes, [4, 3, 2, 1, 0]);
  });

  // Hamt(size=18)
  //   ArrayNode(count=17)
  //     [0]:
  //       BitmapNode(size=1 bitmap=0b1)
  //         0: "v0"
  //     ... [1] to [15] alike ...
  //     [16]:
  //       BitmapNode(size=1 bitmap=0b1)
  //         CollisionNode(size=2 hash=16)
  //           16: "v16"
  //           18: "collision"
  it("test_hamt_delete_5: deleting through an ArrayNode that holds a collision", () => {
    const keys = numberedKeys(17);
    let h = mapOf(...keys.map((k, i): [FixedHashKey, string] => [k, `v${i}`]));
    const collisionKey16 = new FixedHashKey("18", 16);
    h = h.set(collisionKey16, "collision");
    assert.equal(
      drawn(h),
      [
        "Hamt(size=18)",
        "  ArrayNode(count=17)",
        ...Array.from({ length: 16 }, (_, i) => singlePairChild(i)).flat(),
        "    [16]:",
        "      BitmapNode(size=1 bitmap=0b1)",
        "        CollisionNode(size=2 hash=16)",
        '          16: "v16"',
        '          18: "collision"',
      ].join("\n"),
    );
    assert.equal(h.size, 18);

    const sizes: number[] = [];
    for (const key of [keys[2], collisionKey16, keys[16], keys[1], keys[1]]) {
      h = h.delete(key);
      sizes.push(h.size);
    }
    assert.deepEqual(sizes, [17, 16, 15, 14, 14]);
    for (const key of keys) h = h.delete(key);
    assert.equal(h.size, 0);
  });

  it("test_hamt_items_1, test_hamt_items_2, test_hamt_keys_1: every entry is visited", () => {
    const A = new FixedHashKey("A", 100);
    const B = new FixedHashKey("B", 201001);
    const C = new FixedHashKey("C", 101001);
    const C2 = new FixedHashKey("C", 100100);
    const D2 = new FixedHashKey("D", 100100);
    const E2 = new FixedHashKey("E", 100100);
    const D = new FixedHashKey("D", 103);
    const E = new FixedHashKey("E", 104);
    const F = new FixedHashKey("F", 110);
    for (const keys of [
      [A, B, C, D, E, F],
      [A, B, C2, D2, E2, F],
    ]) {
      const h = mapOf(...keys.map((k): [FixedHashKey, string] => [k, k.name.toLowerCase()]));
      const items = new Set(h.toArray().map(([k, v]) => `${k}=${v}`));
      assert.deepEqual(items, new Set(keys.map((k) => `${k}=${k.name.toLowerCase()}`)));
      const visited: FixedHashKey[] = [];
      h.forEach((_, key) => {
        visited.push(key);
      });
      assert.deepEqual(new Set(visited), new Set(keys));
      assert.equal(visited.length, keys.length);
    }
  });

  it("test_hamt_items_3: the empty map has no entries", () => {
    assert.deepEqual(Hamt.empty().toArray(), []);
    Hamt.empty().forEach(() => {
      assert.fail("visited an entry of the empty map");
    });
  });

  it("test_hamt_eq_1: maps are equal only with the same keys and identical values", () => {
    const A = new FixedHashKey("A", 100);
    const B = new FixedHashKey("B", 101);
    const C = new FixedHashKey("C", 100100);
    const D = new FixedHashKey("D", 100100);
    const E = new FixedHashKey("E", 120);
    const h1 = mapOf([A, "a"], [B, "b"], [C, "c"], [D, "d"]);

    let h2 = mapOf([A, "a"]);
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.set(B, "b");
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.set(C, "c");
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.set(D, "d2");
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.set(D, "d");
    assert.ok(sameEntries(h1, h2));
    assert.deepEqual(h2.toArray(), h1.toArray(), "equal maps iterate alike");
    h2 = h2.set(E, "e");
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.delete(D);
    assert.ok(!sameEntries(h1, h2));
    h2 = h2.set(E, "d");
    assert.ok(!sameEntries(h1, h2));
  });

  it("test_hamt_in_1, test_hamt_getitem_1: a key is found only by itself, not by a twin", () => {
    const A = new FixedHashKey("A", 100);
    const AA = new FixedHashKey("A", 100); // equal in CPython; another key here
    const B = new FixedHashKey("B", 101);
    const h = mapOf([A, 1]);
    assert.ok(h.has(A));
    assert.equal(h.get(A), 1);
    assert.ok(!h.has(B));
    assert.equal(h.get(B), NOT_FOUND);
    assert.ok(!h.has(AA));
    assert.equal(h.get(AA), NOT_FOUND);
  });
});
