/**
 * The persistent map's shapes, steered key by key with FixedHashKey.
 *
 *
 * Shape tests draw the expected tree above them as `drawn(map)` prints it:
 * `dump()` with each 32-bit bitmap written short, so `bitmap=0b10001` means
 * slots 0 and 4 are used (read the bits right to left). A key's slot at level
 * n is bits 5n to 5n+4 of its hash.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NOT_FOUND } from "../../src/map/hamt.ts";
import { FixedHashKey } from "../helpers/fixed-hash-key.ts";
import { drawn, mapOf, numberedKeys, singlePairChild, tree } from "../helpers/hamt-fixtures.ts";

describe("Hamt shapes", () => {
  // Hashes 3, 1, 30: slots 3, 1, 30 of the root, packed in slot order.
  //
  // Hamt(size=3)
  //   BitmapNode(size=3 bitmap=0b1000000000000000000000000001010)
  //     a: "a"
  //     c: "c"
  //     z: "z"
  it("a BitmapNode packs its pairs in slot order, whatever the order of sets", () => {
    const a = new FixedHashKey("a", 1);
    const c = new FixedHashKey("c", 3);
    const z = new FixedHashKey("z", 30);
    const expected = tree`
      Hamt(size=3)
        BitmapNode(size=3 bitmap=0b1000000000000000000000000001010)
          a: "a"
          c: "c"
          z: "z"
    `;
    assert.equal(drawn(mapOf([c, "c"], [a, "a"], [z, "z"])), expected);
    assert.equal(drawn(mapOf([z, "z"], [c, "c"], [a, "a"])), expected);
  });

  // 1 = 0b00000_00001 and 33 = 0b00001_00001: slot 1 at level 0; slots 0 and 1 at level 1.
  //
  // Hamt(size=2)
  //   BitmapNode(size=1 bitmap=0b10)
  //     BitmapNode(size=2 bitmap=0b11)
  //       a: "a"
  //       b: "b"
  it("two keys sharing a slot split into a sub-node at level 1", () => {
    const h = mapOf([new FixedHashKey("a", 1), "a"], [new FixedHashKey("b", 33), "b"]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=2)
          BitmapNode(size=1 bitmap=0b10)
            BitmapNode(size=2 bitmap=0b11)
              a: "a"
              b: "b"
      `,
    );
  });

  // 1 = 0b00000_00000_00001 and 1025 = 0b00001_00000_00001 share 10 bits: a
  // one-slot node at level 1 leads to the split at level 2. Then 33 joins at level 1.
  //
  // Hamt(size=2)                          Hamt(size=3)
  //   BitmapNode(size=1 bitmap=0b10)        BitmapNode(size=1 bitmap=0b10)
  //     BitmapNode(size=1 bitmap=0b1)         BitmapNode(size=2 bitmap=0b11)
  //       BitmapNode(size=2 bitmap=0b11)        BitmapNode(size=2 bitmap=0b11)
  //         a: "a"                                a: "a"
  //         b: "b"                                b: "b"
  //                                             c: "c"
  it("two keys sharing 10 bits split at level 2; a third joins at level 1", () => {
    const a = new FixedHashKey("a", 1);
    const b = new FixedHashKey("b", 1025);
    const c = new FixedHashKey("c", 33);
    const h2 = mapOf([a, "a"], [b, "b"]);
    assert.equal(
      drawn(h2),
      tree`
        Hamt(size=2)
          BitmapNode(size=1 bitmap=0b10)
            BitmapNode(size=1 bitmap=0b1)
              BitmapNode(size=2 bitmap=0b11)
                a: "a"
                b: "b"
      `,
    );
    assert.equal(
      drawn(h2.set(c, "c")),
      tree`
        Hamt(size=3)
          BitmapNode(size=1 bitmap=0b10)
            BitmapNode(size=2 bitmap=0b11)
              BitmapNode(size=2 bitmap=0b11)
                a: "a"
                b: "b"
              c: "c"
      `,
    );
  });

  // Deleting b leaves a alone at level 2; it is folded into level 1, then into the root.
  //
  // Hamt(size=1)
  //   BitmapNode(size=1 bitmap=0b10)
  //     a: "a"
  it("deleting folds a lone pair up through every level", () => {
    const a = new FixedHashKey("a", 1);
    const b = new FixedHashKey("b", 1025);
    const h = mapOf([a, "a"], [b, "b"]).delete(b);
    assert.equal(h.size, 1);
    assert.equal(drawn(h), drawn(mapOf([a, "a"])));
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=1)
          BitmapNode(size=1 bitmap=0b10)
            a: "a"
      `,
    );
  });

  // Keys 0..15 fill 16 slots of one BitmapNode; key 16 makes 17, an ArrayNode
  // whose every child is a one-pair BitmapNode at level 1 (slot 0: the hashes
  // are below 32).
  //
  // Hamt(size=16)                           Hamt(size=17)
  //   BitmapNode(size=16                      ArrayNode(count=17)
  //              bitmap=0b1111111111111111)     [0]:
  //     0: "v0"                                   BitmapNode(size=1 bitmap=0b1)
  //     ... 1 to 14 ...                             0: "v0"
  //     15: "v15"                               ... [1] to [16] alike ...
  it("16 slots make a BitmapNode, 17 an ArrayNode, and 16 again a BitmapNode", () => {
    const keys = numberedKeys(17);
    const h16 = mapOf(...keys.slice(0, 16).map((k, i): [FixedHashKey, string] => [k, `v${i}`]));
    const bitmap16 = [
      "Hamt(size=16)",
      "  BitmapNode(size=16 bitmap=0b1111111111111111)",
      ...Array.from({ length: 16 }, (_, i) => `    ${i}: "v${i}"`),
    ].join("\n");
    assert.equal(drawn(h16), bitmap16);

    const h17 = h16.set(keys[16], "v16");
    assert.equal(
      drawn(h17),
      [
        "Hamt(size=17)",
        "  ArrayNode(count=17)",
        ...Array.from({ length: 17 }, (_, i) => singlePairChild(i)).flat(),
      ].join("\n"),
    );

    // Back to 16: a BitmapNode again, the one-pair children inlined as pairs.
    assert.equal(drawn(h17.delete(keys[16])), bitmap16);
    assert.equal(drawn(h16), bitmap16, "the 16-key version is untouched");
  });

  // Key 32 shares slot 0 with key 0; the ArrayNode's child there holds both,
  // and keeps holding both when the ArrayNode turns back into a BitmapNode.
  //
  // Hamt(size=17)
  //   BitmapNode(size=16 bitmap=0b1111111111111111)
  //     BitmapNode(size=2 bitmap=0b11)
  //       0: "v0"
  //       32: "v32"
  //     1: "v1"
  //     ... 2 to 14 ...
  //     15: "v15"
  it("an ArrayNode turning back into a BitmapNode keeps a shared slot's sub-node", () => {
    const keys = numberedKeys(17);
    const k32 = new FixedHashKey("32", 32);
    const h18 = mapOf(...[...keys, k32].map((k): [FixedHashKey, string] => [k, `v${k.name}`]));
    assert.match(
      drawn(h18),
      /ArrayNode\(count=17\)\n {4}\[0\]:\n {6}BitmapNode\(size=2 bitmap=0b11\)/,
    );

    assert.equal(
      drawn(h18.delete(keys[16])),
      [
        "Hamt(size=17)",
        "  BitmapNode(size=16 bitmap=0b1111111111111111)",
        "    BitmapNode(size=2 bitmap=0b11)",
        '      0: "v0"',
        '      32: "v32"',
        ...Array.from({ length: 15 }, (_, i) => `    ${i + 1}: "v${i + 1}"`),
      ].join("\n"),
    );
  });

  it("an ArrayNode stays one while more than 16 children remain", () => {
    const keys = numberedKeys(18);
    const h18 = mapOf(...keys.map((k, i): [FixedHashKey, string] => [k, `v${i}`]));
    const h17 = h18.delete(keys[5]);
    assert.match(drawn(h18), /^Hamt\(size=18\)\n {2}ArrayNode\(count=18\)/);
    assert.equal(
      drawn(h17),
      [
        "Hamt(size=17)",
        "  ArrayNode(count=17)",
        ...Array.from({ length: 18 }, (_, i) => (i === 5 ? [] : singlePairChild(i))).flat(),
      ].join("\n"),
    );
  });

  // Three keys of hash 10 share one CollisionNode in slot 10, in insertion order:
  //
  // Hamt(size=3)
  //   BitmapNode(size=1 bitmap=0b10000000000)
  //     CollisionNode(size=3 hash=10)
  //       a: 1
  //       b: 2
  //       c: 3
  //
  // It shrinks to two, then its last pair becomes a plain pair of the root.
  it("a CollisionNode is created, grows, shrinks and turns back into a plain pair", () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => new FixedHashKey(n, 10));
    const h1 = mapOf([a, 1]);
    const h2 = h1.set(b, 2);
    const h3 = h2.set(c, 3);
    assert.match(drawn(h2), /CollisionNode\(size=2 hash=10\)/);
    assert.equal(
      drawn(h3),
      tree`
        Hamt(size=3)
          BitmapNode(size=1 bitmap=0b10000000000)
            CollisionNode(size=3 hash=10)
              a: 1
              b: 2
              c: 3
      `,
    );
    assert.equal(
      drawn(h3.delete(b)),
      tree`
        Hamt(size=2)
          BitmapNode(size=1 bitmap=0b10000000000)
            CollisionNode(size=2 hash=10)
              a: 1
              c: 3
      `,
    );
    const last = h3.delete(b).delete(a);
    assert.equal(
      drawn(last),
      tree`
        Hamt(size=1)
          BitmapNode(size=1 bitmap=0b10000000000)
            c: 3
      `,
    );
    assert.equal(last.get(c), 3);
    assert.equal(drawn(h3.delete(c).delete(b)), drawn(h1), "deleting in another order");
  });

  // A CollisionNode made at level 1 (a and b, hash 111 = 0b00011_01111, in
  // root slot 15) is carried as it is into the ArrayNode a 17th slot makes:
  //
  // Hamt(size=18)
  //   ArrayNode(count=17)
  //     ... [0] to [14] ...
  //     [15]:
  //       CollisionNode(size=2 hash=111)
  //         a: "a"
  //         b: "b"
  //     [16]: ...
  //
  // Deleting a leaves b a plain pair at level 1, in slot 3 (bits 5-9 of 111)
  // of its own BitmapNode, since no BitmapNode parent inlines it there.
  it("a CollisionNode straight under an ArrayNode turns back into a pair in its level-1 slot", () => {
    const keys = numberedKeys(17);
    const [a, b] = ["a", "b"].map((n) => new FixedHashKey(n, 111));
    const h = mapOf(
      ...keys.slice(0, 15).map((k, i): [FixedHashKey, string] => [k, `v${i}`]),
      [a, "a"],
      [b, "b"],
      [keys[16], "v16"],
    );
    assert.equal(
      drawn(h),
      [
        "Hamt(size=18)",
        "  ArrayNode(count=17)",
        ...Array.from({ length: 15 }, (_, i) => singlePairChild(i)).flat(),
        "    [15]:",
        "      CollisionNode(size=2 hash=111)",
        '        a: "a"',
        '        b: "b"',
        ...singlePairChild(16),
      ].join("\n"),
    );
    const withoutA = h.delete(a);
    assert.equal(withoutA.get(b), "b");
    assert.equal(withoutA.get(a), NOT_FOUND);
    assert.match(drawn(withoutA), /\[15\]:\n {6}BitmapNode\(size=1 bitmap=0b1000\)\n {8}b: "b"\n/);
    assert.equal(
      withoutA.delete(keys[16]).get(b),
      "b",
      "after the ArrayNode turns back into a BitmapNode",
    );
    assert.equal(h.delete(b).get(a), "a");
  });

  // C (42 = 0b00001_01010) shares slot 10 with the colliding a and b (10 =
  // 0b00000_01010): the CollisionNode moves down a level, beside C.
  //
  // Hamt(size=3)                                  after deleting C: the lone
  //   BitmapNode(size=1 bitmap=0b10000000000)     sub-node is not folded (only
  //     BitmapNode(size=2 bitmap=0b11)            a lone pair is)
  //       CollisionNode(size=2 hash=10)
  //         a: 1                                  Hamt(size=2)
  //         b: 2                                    BitmapNode(size=1 bitmap=0b10000000000)
  //       C: 3                                        BitmapNode(size=1 bitmap=0b1)
  //                                                     CollisionNode(size=2 hash=10)
  it("a key of another hash pushes a CollisionNode one level down", () => {
    const a = new FixedHashKey("a", 10);
    const b = new FixedHashKey("b", 10);
    const C = new FixedHashKey("C", 42);
    const h = mapOf([a, 1], [b, 2], [C, 3]);
    assert.equal(
      drawn(h),
      tree`
        Hamt(size=3)
          BitmapNode(size=1 bitmap=0b10000000000)
            BitmapNode(size=2 bitmap=0b11)
              CollisionNode(size=2 hash=10)
                a: 1
                b: 2
              C: 3
      `,
    );
    assert.deepEqual([h.get(a), h.get(b), h.get(C)], [1, 2, 3]);
    const withoutC = h.delete(C);
    assert.equal(
      drawn(withoutC),
      tree`
        Hamt(size=2)
          BitmapNode(size=1 bitmap=0b10000000000)
            BitmapNode(size=1 bitmap=0b1)
              CollisionNode(size=2 hash=10)
                a: 1
                b: 2
      `,
    );
    assert.equal(
      drawn(withoutC.delete(b)),
      tree`
        Hamt(size=1)
          BitmapNode(size=1 bitmap=0b10000000000)
            a: 1
      `,
    );
  });
});
