import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nextHash } from "../../src/map/hash.ts";

const COUNT = 100_000;
const hashes = Array.from({ length: COUNT }, () => nextHash());

describe("nextHash", () => {
  it("gives signed int32s", () => {
    for (const h of hashes) if (h !== (h | 0)) assert.fail(`${h} is not an int32`);
  });

  it("gives no duplicates in 100,000", () => {
    assert.equal(new Set(hashes).size, COUNT);
  });

  // 2^23 keys drawn from random 32-bit hashes would share about 8,000 (n²/2³³);
  // a bijective mix shares none until the counter wraps.
  it("gives no duplicates in the 8,388,608 keys after those", () => {
    const count = 2 ** 23;
    const more = new Int32Array(count);
    for (let i = 0; i < count; i++) more[i] = nextHash();
    more.sort();
    let shared = 0;
    for (let i = 1; i < count; i++) if (more[i] === more[i - 1]) shared++;
    assert.equal(shared, 0, `${shared} hashes shared among ${count} keys`);
  });

  // The trie reads a hash 5 bits a level (2 at level 6): each level's slots
  // should fill evenly, or the trie grows deep on one side.
  it("spreads evenly over the slots of every trie level", () => {
    for (let level = 0; level <= 6; level++) {
      const slots = level === 6 ? 4 : 32;
      const counts = new Array<number>(slots).fill(0);
      for (const h of hashes) {
        const slot = (h >>> (5 * level)) & 31;
        counts[slot] = (counts[slot] ?? 0) + 1;
      }
      const expected = COUNT / slots;
      for (const [slot, count] of counts.entries()) {
        // ±10% is over 5 standard deviations for a uniform spread at level 0.
        assert.ok(
          Math.abs(count - expected) < expected * 0.1,
          `level ${level} slot ${slot}: ${count}, expected about ${expected}`,
        );
      }
    }
  });

  it("spreads the first 1,024 keys over every root slot and most level-1 prefixes", () => {
    const first = hashes.slice(0, 1024);
    assert.equal(new Set(first.map((h) => h & 31)).size, 32);
    // 1,024 random 10-bit prefixes would cover about 632 of the 1,024.
    assert.ok(new Set(first.map((h) => h & 1023)).size > 600);
  });
});
