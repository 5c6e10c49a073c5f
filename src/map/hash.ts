/**
 * Hashes for the keys of the persistent map.
 *
 * CPython hashes a ContextVar by its address; JavaScript objects have no
 * address, so each key is given a hash when it is made. Hashes come from a
 * counter passed through a multiplicative mix (Knuth's golden-ratio constant),
 * which spreads consecutive counters over all 32 bits. Multiplying by an odd
 * constant is a bijection on 32-bit integers, so no two of the first 2^32 keys
 * share a hash (the map still handles a collision: a program could make more).
 * And the low bits, which the trie reads first, of consecutive counters run
 * through every value in turn, so the trie stays shallow and balanced however
 * many vars a program makes.
 */

/** The property under which a key carries its 32-bit hash. Internal. */
export const hashKey: unique symbol = Symbol("contextvars.hash");

/** What the map needs of a key: a stable 32-bit hash. Keys compare by identity. */
export interface Hashed {
  readonly [hashKey]: number;
}

let counter = 0;

/** A fresh well-spread 32-bit hash (a signed int32, so V8 keeps it a small integer). */
export function nextHash(): number {
  counter = (counter + 1) | 0;
  // Nothing folded in: xoring in `counter >>> 16`, as this once did, broke
  // the bijection, and the first 8,388,608 keys then held 216,761 shared
  // hashes, 26 times what random hashes would.
  return Math.imul(counter, 0x9e3779b1);
}
