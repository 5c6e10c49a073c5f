/**
 * Builders and drawings shared by the HAMT tests (test/map/hamt*.test.ts).
 */
import assert from "node:assert/strict";
import { Hamt } from "../../src/map/hamt.ts";
import { FixedHashKey } from "./fixed-hash-key.ts";

/** A map with `entries` set in the order given. */
export function mapOf<V>(...entries: [FixedHashKey, V][]): Hamt<FixedHashKey, V> {
  let map = Hamt.empty<FixedHashKey, V>();
  for (const [key, value] of entries) map = map.set(key, value);
  return map;
}

/** `dump()` with each bitmap written short, as the drawings show it. */
export function drawn<V>(map: Hamt<FixedHashKey, V>): string {
  return map
    .dump()
    .replace(/bitmap=([01]{32})/g, (_, bits: string) => `bitmap=0b${bits.replace(/^0+(?=.)/, "")}`);
}

/** A drawing written indented in the source, without its indentation. */
export function tree(strings: TemplateStringsArray): string {
  const lines = strings.raw
    .join("")
    .split("\n")
    .filter((line) => line.trim() !== "");
  const indent = Math.min(...lines.map((line) => line.search(/\S/)));
  return lines.map((line) => line.slice(indent)).join("\n");
}

/** Keys named "0", "1", … whose hash is their number: key i sits in slot i of the root. */
export function numberedKeys(count: number): FixedHashKey[] {
  return Array.from({ length: count }, (_, i) => new FixedHashKey(String(i), i));
}

/** The drawing of an ArrayNode child holding the single pair `i: "v<i>"` (hash i < 32). */
export function singlePairChild(i: number): string[] {
  return [`    [${i}]:`, "      BitmapNode(size=1 bitmap=0b1)", `        ${i}: "v${i}"`];
}

/** Content equality, as CPython's `h1 == h2`: same size, same keys, identical values. */
export function sameEntries<V>(a: Hamt<FixedHashKey, V>, b: Hamt<FixedHashKey, V>): boolean {
  return a.size === b.size && a.toArray().every(([key, value]) => Object.is(b.get(key), value));
}

/**
 * Asserts that `map` holds exactly the entries of `model`, in O(n) (deepEqual
 * on Maps with object keys is quadratic).
 */
export function assertHolds<V>(
  map: Hamt<FixedHashKey, V>,
  model: ReadonlyMap<FixedHashKey, V>,
): void {
  assert.equal(map.size, model.size);
  const entries = map.toArray();
  assert.equal(entries.length, model.size);
  for (const [key, value] of entries) {
    assert.ok(model.has(key), `${key} is not in the model`);
    assert.equal(value, model.get(key));
  }
}

/** A seeded shuffle (mulberry32), so a failure replays. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const j = ((t ^ (t >>> 14)) >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
