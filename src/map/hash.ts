/**
 * Hashes for the keys of the persistent map.
 *
 * CPython hashes a ContextVar by its address; JavaScript objects have no
 * address, so each key is given a hash when it is made. Hashes come from a
 * counter passed through a multiplicative mix (Knuth's golden-ratio constant),
 * which spreads consecutive counters over all 32 bits: the trie then stays
 * shallow and balanced however many vars a program makes, and collisions are
 * as rare as for random hashes (two keys still collide now and then, and the
 * map handles it).
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
  return Math.imul(counter, 0x9e3779b1) ^ (counter >>> 16);
}
