/**
 * A map key whose hash the test chooses, so a test can put keys exactly where
 * it wants them in the trie: in one slot or another, sharing a 5-bit prefix
 * for one level or six, or colliding outright (CPython's `HashKey` in
 * `Lib/test/test_context.py`, Effect's `FixedHashKey`).
 *
 * Like a ContextVar, a FixedHashKey compares by identity: two keys with the
 * same name and hash are still two keys, and collide.
 */
import { inspect } from "node:util";
import { type Hashed, hashKey } from "../../src/map/hash.ts";

export class FixedHashKey implements Hashed {
  readonly name: string;
  readonly [hashKey]: number;

  /**
   * @param hash any 32-bit pattern, signed or unsigned; it is stored as the
   * signed int32 that `nextHash` would give (so CPython's `0b1000…0`, 2**31,
   * is stored as -2**31).
   * @throws RangeError when `hash` is not an integer that fits in 32 bits.
   */
  constructor(name: string, hash: number) {
    if (!Number.isInteger(hash) || hash < -(2 ** 31) || hash >= 2 ** 32) {
      throw new RangeError(
        `Expected \`hash\` to be a 32-bit integer, got \`${String(hash)}\` (${typeof hash})`,
      );
    }
    this.name = name;
    this[hashKey] = hash | 0;
  }

  /** The int32 the trie sees. */
  get hash(): number {
    return this[hashKey];
  }

  toString(): string {
    return `FixedHashKey(${JSON.stringify(this.name)}, ${this.hash})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
