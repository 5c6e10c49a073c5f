/**
 * A persistent hash array mapped trie (HAMT): the immutable mapping that
 * every Context holds.
 *
 * What it gives
 * -------------
 * A Context is a mutable cell over an immutable mapping. `copyContext()` must
 * be O(1) whatever the number of vars, so copies share the mapping; `set` must
 * then build a new mapping without touching the old one. A HAMT does both:
 * `set` and `delete` copy only the path from the root to the changed entry
 * (O(log32 n) nodes, each at most 32 slots), and everything else is shared.
 * This is the structure CPython's `Python/hamt.c` uses for the same job; the
 * node kinds and the operations below follow it.
 *
 * A hash, worked through in 5-bit levels
 * --------------------------------------
 * Every key carries a 32-bit hash (see `hash.ts`). Level 0 of the trie looks at
 * bits 0-4, level 1 at bits 5-9, and so on; level 6 sees the last two bits.
 * For the hash 0b_00011_10100_00001 (decimal 3713):
 *
 *     level 0: bits  0-4  = 00001 = 1   -> slot 1 of the root
 *     level 1: bits  5-9  = 10100 = 20  -> slot 20 of that child
 *     level 2: bits 10-14 = 00011 = 3   -> slot 3 of the grandchild
 *
 * A key sits at the shallowest level at which its hash prefix is unique, so a
 * map of n keys is about log32(n) levels deep: 2 levels for 1,000 keys, 4 for
 * 1,000,000. Two keys whose full hashes are equal share a collision node.
 *
 * Node kinds
 * ----------
 * - BitmapNode: up to 16 slots in use out of 32. A 32-bit `bitmap` says which
 *   slots are used, and `entries` holds them packed: slot s lives at index
 *   popcount(bitmap & ((1 << s) - 1)). Each used slot is a pair (key, value),
 *   or (undefined, child node) when more than one key shares the slot's
 *   prefix. The root is a BitmapNode (empty for an empty map) until it needs
 *   a 17th slot, when it becomes an ArrayNode like any other node.
 * - ArrayNode: more than 16 slots in use. A plain 32-element array of child
 *   nodes (or undefined), so a lookup is one index, no popcount. A BitmapNode
 *   that would grow to 17 slots becomes an ArrayNode; an ArrayNode that falls
 *   to 16 children becomes a BitmapNode again.
 * - CollisionNode: keys whose 32-bit hashes are all equal, in a flat list of
 *   pairs, searched linearly.
 *
 * Operations
 * ----------
 * - lookup (`Hamt.get`): walk the levels; each node kind's `find`.
 * - insert/replace (`Hamt.set`): each kind's `assoc`, returning a new node,
 *   or the same node when nothing changed (so `map.set(k, sameValue)` keeps
 *   the map's identity, and the `get` cache keyed on it stays warm).
 * - delete (`Hamt.delete`): each kind's `without`, returning the same node when
 *   the key is absent, `undefined` when the node becomes empty, else a new
 *   node; a BitmapNode left with a single pair is folded into its parent.
 * - iteration: depth-first over the nodes, so the order depends only on the
 *   keys' hashes: stable for the same contents, whatever the order of sets,
 *   except that keys with equal full hashes (one CollisionNode) keep the
 *   order in which they were added.
 *
 * Keys compare by identity (`===`): a ContextVar is equal only to itself.
 */

import { type Hashed, hashKey } from "./hash.ts";

// A module-local alias: an imported binding is read through the exporting
// module's cell, with a check that it has been initialised, at every use.
const HASH_KEY: typeof hashKey = hashKey;

/** Returned by `Hamt.get` for an absent key. */
export const NOT_FOUND: unique symbol = Symbol("contextvars.notFound");
export type NotFound = typeof NOT_FOUND;

const BITS = 5;
const MASK = 0b11111;
// A BitmapNode of this many slots becomes an ArrayNode when one more is added
// (as hamt.c: beyond 16 slots the 32-wide array is cheaper than popcounts
// and repacking).
const MAX_BITMAP_SLOTS = 16;

type Node<K extends Hashed, V> = BitmapNode<K, V> | ArrayNode<K, V> | CollisionNode<K, V>;

// Set by `assoc` when a key was added rather than replaced; read by Hamt.set
// to keep `size` without a second walk (hamt.c's `added_leaf`).
let addedLeaf = false;

function slotOf(hash: number, shift: number): number {
  return (hash >>> shift) & MASK;
}

function popcount(x: number): number {
  let n = x - ((x >>> 1) & 0x55555555);
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return (Math.imul((n + (n >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) | 0;
}

/** Two distinct keys under one slot: a node one level down holding both. */
function mergePairs<K extends Hashed, V>(
  shift: number,
  key1: K,
  value1: V,
  key2: K,
  hash2: number,
  value2: V,
): Node<K, V> {
  const hash1 = key1[HASH_KEY] | 0;
  if (hash1 === hash2) return new CollisionNode<K, V>(hash1, [key1, value1, key2, value2]);
  const slot1 = slotOf(hash1, shift);
  const slot2 = slotOf(hash2, shift);
  if (slot1 === slot2) {
    const child = mergePairs(shift + BITS, key1, value1, key2, hash2, value2);
    return new BitmapNode<K, V>(1 << slot1, [undefined, child]);
  }
  const entries = slot1 < slot2 ? [key1, value1, key2, value2] : [key2, value2, key1, value1];
  return new BitmapNode<K, V>((1 << slot1) | (1 << slot2), entries);
}

class BitmapNode<K extends Hashed, V> {
  readonly bitmap: number;
  // Pairs packed by slot: [key, value, ...]; key undefined means value is a child Node.
  readonly entries: unknown[];

  constructor(bitmap: number, entries: unknown[]) {
    this.bitmap = bitmap;
    this.entries = entries;
  }

  find(shift: number, hash: number, key: K): V | NotFound {
    const bit = 1 << slotOf(hash, shift);
    if ((this.bitmap & bit) === 0) return NOT_FOUND;
    const i = 2 * popcount(this.bitmap & (bit - 1));
    const k = this.entries[i];
    if (k === undefined) return (this.entries[i + 1] as Node<K, V>).find(shift + BITS, hash, key);
    return k === key ? (this.entries[i + 1] as V) : NOT_FOUND;
  }

  assoc(shift: number, hash: number, key: K, value: V): Node<K, V> {
    const slot = slotOf(hash, shift);
    const bit = 1 << slot;
    const i = 2 * popcount(this.bitmap & (bit - 1));

    if ((this.bitmap & bit) !== 0) {
      const k = this.entries[i];
      const v = this.entries[i + 1];
      let replacement: unknown;
      if (k === undefined) {
        const child = v as Node<K, V>;
        replacement = child.assoc(shift + BITS, hash, key, value);
        if (replacement === child) return this;
      } else if (k === key) {
        // Values compare as hamt.c compares them, by identity: Object.is, so that
        // -0 replaces 0 and NaN over NaN is a no-op.
        if (Object.is(v, value)) return this;
        const entries = this.entries.slice();
        entries[i + 1] = value;
        return new BitmapNode(this.bitmap, entries);
      } else {
        addedLeaf = true;
        replacement = mergePairs(shift + BITS, k as K, v as V, key, hash, value);
      }
      const entries = this.entries.slice();
      entries[i] = undefined;
      entries[i + 1] = replacement;
      return new BitmapNode(this.bitmap, entries);
    }

    addedLeaf = true;
    const used = this.entries.length >>> 1;
    if (used >= MAX_BITMAP_SLOTS) return this.#toArrayNode(shift, slot, hash, key, value);
    // Built at its final size: slice + push reallocated it as it grew (half the cost of a small insert).
    const old = this.entries;
    const entries = new Array<unknown>(old.length + 2);
    for (let j = 0; j < i; j++) entries[j] = old[j];
    entries[i] = key;
    entries[i + 1] = value;
    for (let j = i; j < old.length; j++) entries[j + 2] = old[j];
    return new BitmapNode(this.bitmap | bit, entries);
  }

  without(shift: number, hash: number, key: K): Node<K, V> | undefined {
    const bit = 1 << slotOf(hash, shift);
    if ((this.bitmap & bit) === 0) return this;
    const i = 2 * popcount(this.bitmap & (bit - 1));
    const k = this.entries[i];

    if (k === undefined) {
      const child = this.entries[i + 1] as Node<K, V>;
      const smaller = child.without(shift + BITS, hash, key);
      if (smaller === child) return this;
      if (smaller !== undefined) {
        const entries = this.entries.slice();
        // A child left with one plain pair is folded into this node (as hamt.c does), so
        // no chain of single-pair nodes grows under a slot after deletes.
        if (
          smaller instanceof BitmapNode &&
          smaller.entries.length === 2 &&
          smaller.entries[0] !== undefined
        ) {
          entries[i] = smaller.entries[0];
          entries[i + 1] = smaller.entries[1];
        } else {
          entries[i + 1] = smaller;
        }
        return new BitmapNode(this.bitmap, entries);
      }
      // The child became empty: drop the slot (falls through).
    } else if (k !== key) {
      return this;
    }

    if (this.entries.length === 2) return undefined;
    const entries = this.entries.slice(0, i);
    for (let j = i + 2; j < this.entries.length; j++) entries.push(this.entries[j]);
    return new BitmapNode(this.bitmap & ~bit, entries);
  }

  #toArrayNode(shift: number, slot: number, hash: number, key: K, value: V): ArrayNode<K, V> {
    const children: (Node<K, V> | undefined)[] = new Array(32).fill(undefined);
    let j = 0;
    for (let s = 0; s < 32; s++) {
      if ((this.bitmap & (1 << s)) === 0) continue;
      const k = this.entries[j];
      const v = this.entries[j + 1];
      j += 2;
      children[s] =
        k === undefined
          ? (v as Node<K, V>)
          : new BitmapNode<K, V>(1 << slotOf((k as K)[HASH_KEY], shift + BITS), [k, v]);
    }
    children[slot] = new BitmapNode<K, V>(1 << slotOf(hash, shift + BITS), [key, value]);
    return new ArrayNode(this.entries.length / 2 + 1, children);
  }

  forEach(fn: (value: V, key: K) => void): void {
    for (let i = 0; i < this.entries.length; i += 2) {
      const k = this.entries[i];
      if (k === undefined) (this.entries[i + 1] as Node<K, V>).forEach(fn);
      else fn(this.entries[i + 1] as V, k as K);
    }
  }

  dump(indent: string, out: string[]): void {
    out.push(`${indent}BitmapNode(size=${this.entries.length / 2} bitmap=${bin(this.bitmap)})`);
    for (let i = 0; i < this.entries.length; i += 2) {
      const k = this.entries[i];
      if (k === undefined) (this.entries[i + 1] as Node<K, V>).dump(`${indent}  `, out);
      else out.push(`${indent}  ${describe(k)}: ${describe(this.entries[i + 1])}`);
    }
  }
}

class ArrayNode<K extends Hashed, V> {
  readonly count: number;
  readonly children: readonly (Node<K, V> | undefined)[];

  constructor(count: number, children: (Node<K, V> | undefined)[]) {
    this.count = count;
    this.children = children;
  }

  find(shift: number, hash: number, key: K): V | NotFound {
    const child = this.children[slotOf(hash, shift)];
    return child === undefined ? NOT_FOUND : child.find(shift + BITS, hash, key);
  }

  assoc(shift: number, hash: number, key: K, value: V): Node<K, V> {
    const slot = slotOf(hash, shift);
    const child = this.children[slot];
    const children = this.children.slice();
    if (child === undefined) {
      addedLeaf = true;
      children[slot] = new BitmapNode<K, V>(1 << slotOf(hash, shift + BITS), [key, value]);
      return new ArrayNode(this.count + 1, children);
    }
    const replacement = child.assoc(shift + BITS, hash, key, value);
    if (replacement === child) return this;
    children[slot] = replacement;
    return new ArrayNode(this.count, children);
  }

  without(shift: number, hash: number, key: K): Node<K, V> | undefined {
    const slot = slotOf(hash, shift);
    const child = this.children[slot];
    if (child === undefined) return this;
    const smaller = child.without(shift + BITS, hash, key);
    if (smaller === child) return this;
    if (smaller !== undefined) {
      const children = this.children.slice();
      children[slot] = smaller;
      return new ArrayNode(this.count, children);
    }
    if (this.count - 1 > MAX_BITMAP_SLOTS) {
      const children = this.children.slice();
      children[slot] = undefined;
      return new ArrayNode(this.count - 1, children);
    }
    // Down to 16 children: back to a BitmapNode, inlining single-pair children.
    let bitmap = 0;
    const entries: unknown[] = [];
    for (let s = 0; s < 32; s++) {
      const c = this.children[s];
      if (s === slot || c === undefined) continue;
      bitmap |= 1 << s;
      if (c instanceof BitmapNode && c.entries.length === 2 && c.entries[0] !== undefined) {
        entries.push(c.entries[0], c.entries[1]);
      } else {
        entries.push(undefined, c);
      }
    }
    return new BitmapNode(bitmap, entries);
  }

  forEach(fn: (value: V, key: K) => void): void {
    for (const child of this.children) child?.forEach(fn);
  }

  dump(indent: string, out: string[]): void {
    out.push(`${indent}ArrayNode(count=${this.count})`);
    this.children.forEach((child, slot) => {
      if (child === undefined) return;
      out.push(`${indent}  [${slot}]:`);
      child.dump(`${indent}    `, out);
    });
  }
}

class CollisionNode<K extends Hashed, V> {
  readonly hash: number;
  readonly entries: readonly unknown[];

  constructor(hash: number, entries: unknown[]) {
    this.hash = hash;
    this.entries = entries;
  }

  #indexOf(key: K): number {
    for (let i = 0; i < this.entries.length; i += 2) if (this.entries[i] === key) return i;
    return -1;
  }

  find(_shift: number, _hash: number, key: K): V | NotFound {
    const i = this.#indexOf(key);
    return i < 0 ? NOT_FOUND : (this.entries[i + 1] as V);
  }

  assoc(shift: number, hash: number, key: K, value: V): Node<K, V> {
    if (hash !== this.hash) {
      // A key with another hash: this node moves one level down, under a
      // BitmapNode that can tell the two hashes apart.
      const wrapper = new BitmapNode<K, V>(1 << slotOf(this.hash, shift), [undefined, this]);
      return wrapper.assoc(shift, hash, key, value);
    }
    const i = this.#indexOf(key);
    if (i >= 0 && Object.is(this.entries[i + 1], value)) return this;
    const entries = this.entries.slice();
    if (i >= 0) {
      entries[i + 1] = value;
    } else {
      addedLeaf = true;
      entries.push(key, value);
    }
    return new CollisionNode(this.hash, entries);
  }

  without(shift: number, _hash: number, key: K): Node<K, V> | undefined {
    const i = this.#indexOf(key);
    if (i < 0) return this;
    if (this.entries.length === 4) {
      // One pair left: it becomes an ordinary pair, which the parent inlines.
      const j = i === 0 ? 2 : 0;
      return new BitmapNode<K, V>(1 << slotOf(this.hash, shift), [
        this.entries[j],
        this.entries[j + 1],
      ]);
    }
    const entries = this.entries.slice();
    entries.splice(i, 2);
    return new CollisionNode(this.hash, entries);
  }

  forEach(fn: (value: V, key: K) => void): void {
    for (let i = 0; i < this.entries.length; i += 2)
      fn(this.entries[i + 1] as V, this.entries[i] as K);
  }

  dump(indent: string, out: string[]): void {
    out.push(`${indent}CollisionNode(size=${this.entries.length / 2} hash=${this.hash})`);
    for (let i = 0; i < this.entries.length; i += 2) {
      out.push(`${indent}  ${describe(this.entries[i])}: ${describe(this.entries[i + 1])}`);
    }
  }
}

function bin(bitmap: number): string {
  return (bitmap >>> 0).toString(2).padStart(32, "0");
}

function describe(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x);
  if (typeof x === "object" && x !== null && "name" in x)
    return String((x as { name: unknown }).name);
  return String(x);
}

// Every map version gets a distinct id. ContextVar.get caches its last read
// keyed on this id rather than on the map object, so the cache never keeps a
// finished Context's whole mapping alive (CPython keys its cache on a
// version counter for the same reason: a cheap compare, no reference).
let nextId = 0;

const EMPTY_ROOT = new BitmapNode<never, never>(0, []);

/** An immutable map from hashed keys (compared by identity) to values. */
export class Hamt<K extends Hashed, V> {
  /** A number no other map version has: a cache key that keeps nothing alive. */
  readonly id: number;
  readonly size: number;
  readonly #root: Node<K, V>;
  // The key whose `set` made this map version, and its value: a one-entry
  // read cache that lives on the map, so it holds nothing the map does not
  // hold already and goes with it (CPython's `var_cached` is a borrowed
  // reference for the same reason). Written only by `set`: a cache that
  // reads wrote to would thrash when two vars are read in turn.
  #lastKey: K | undefined = undefined;
  #lastValue: V | undefined = undefined;

  private constructor(root: Node<K, V>, size: number) {
    this.#root = root;
    this.size = size;
    this.id = ++nextId;
  }

  static #empty = new Hamt<never, never>(EMPTY_ROOT, 0);

  /** The empty map (one shared instance). */
  static empty<K extends Hashed, V>(): Hamt<K, V> {
    return Hamt.#empty as unknown as Hamt<K, V>;
  }

  /** The value for `key`, or NOT_FOUND. */
  get(key: K): V | NotFound {
    return this.#root.find(0, key[HASH_KEY] | 0, key);
  }

  /** `get`, answered from the map's one-entry cache when `key` is the one whose set made it. */
  read(key: K): V | NotFound {
    if (this.#lastKey === key) return this.#lastValue as V;
    return this.#root.find(0, key[HASH_KEY] | 0, key);
  }

  has(key: K): boolean {
    return this.get(key) !== NOT_FOUND;
  }

  /** A map with `key` set to `value`; this same map if it already held exactly that. */
  set(key: K, value: V): Hamt<K, V> {
    addedLeaf = false;
    // `| 0`: a hash given as 2**31 and one given as -(2**31) are the same 32 bits.
    const root = this.#root.assoc(0, key[HASH_KEY] | 0, key, value);
    if (root === this.#root) return this;
    const map = new Hamt(root, addedLeaf ? this.size + 1 : this.size);
    map.#lastKey = key;
    map.#lastValue = value;
    return map;
  }

  /** A map without `key`; this same map if `key` was absent. */
  delete(key: K): Hamt<K, V> {
    const root = this.#root.without(0, key[HASH_KEY] | 0, key);
    if (root === this.#root) return this;
    if (root === undefined) return Hamt.empty();
    return new Hamt(root as Node<K, V>, this.size - 1);
  }

  /** Calls fn for every entry, in the map's stable (hash) order. */
  forEach(fn: (value: V, key: K) => void): void {
    this.#root.forEach(fn);
  }

  /** The entries as an array of [key, value], in the map's stable order. */
  toArray(): [K, V][] {
    const out: [K, V][] = [];
    this.#root.forEach((value, key) => {
      out.push([key, value]);
    });
    return out;
  }

  /** The trie drawn as text, one node a line: for tests and debugging. */
  dump(): string {
    const out: string[] = [`Hamt(size=${this.size})`];
    this.#root.dump("  ", out);
    return out.join("\n");
  }
}
