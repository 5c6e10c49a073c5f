/**
 * `ContextVar#get`: what every read of a request id, a logger or a trace
 * costs. Baselines read the same ALS by hand: `als.getStore()` and a
 * `Map.get` on the store, and a bare `als.getStore()` (the floor: no library
 * can read a value carried by ALS for less). Values are numbers except in
 * the object-value measure: the var's own cache holds primitives only.
 */

// Internal, used only for the cache-miss measure: swaps the mapping a Context holds.
import { type Mapping, mapOf, setMapOf } from "../src/core/context.ts";
import { Context, ContextVar } from "../src/index.ts";
import { alsOf, Suite, sink } from "./harness.ts";

const als = alsOf<Map<object, number>>();
const cells = alsOf<{ map: Map<object, number> }>();

// Contexts with the measured var set, alone and among 10.
const vars = Array.from({ length: 10 }, (_, i) => new ContextVar<number>(`v${i}`));
const v = vars[3] as ContextVar<number>;
const one = new Context();
one.run(() => v.set(3));
const ten = new Context();
ten.run(() => {
  for (const [i, x] of vars.entries()) x.set(i);
});
const withDefault = new ContextVar<number>("withDefault", { default: 7 });

// Object values: the var's own cache holds primitives only (a long-lived var must
// not keep a finished Context's objects alive), so an object comes from the map:
// its one-entry cache (the var whose set made it) or a lookup, measured here.
const objectVars = Array.from({ length: 10 }, (_, i) => new ContextVar<{ i: number }>(`o${i}`));
const objectVar = objectVars[3] as ContextVar<{ i: number }>;
const tenObjects = new Context();
tenObjects.run(() => {
  for (const [i, x] of objectVars.entries()) x.set({ i });
});
const objectMap = new Map<object, { i: number }>(objectVars.map((x, i) => [x, { i }]));
const objects = alsOf<Map<object, { i: number }>>();

// The same data as plain Maps keyed by the same objects.
const map1 = new Map<object, number>([[v, 3]]);
const map10 = new Map<object, number>(vars.map((x, i) => [x, i]));

// Read at the root: the var set in the root Context (no run entered).
const atRoot = new ContextVar<number>("atRoot");
atRoot.set(1);
const rootMap = new Map<object, number>([[atRoot, 1]]);

// Cache miss: two mappings that differ in another var, swapped before each read.
const missCtx = new Context();
let mapA: Mapping | undefined;
let mapB: Mapping | undefined;
missCtx.run(() => {
  for (const [i, x] of vars.entries()) x.set(i);
  mapA = mapOf(missCtx);
  (vars[0] as ContextVar<number>).set(100);
  mapB = mapOf(missCtx);
});
const mapsAB = [mapA as Mapping, mapB as Mapping];
const plainAB = [new Map(map10), new Map(map10).set(vars[0] as ContextVar<number>, 100)];
const missCell = { map: plainAB[0] as Map<object, number> };

const suite = new Suite("get.bench.ts", "ContextVar#get");

suite
  .add(
    "v.get(), 1 var set",
    (n) =>
      one.run(() => {
        for (let i = 0; i < n; i++) sink.n += v.get();
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore()+Map.get, 1 entry",
    (n) =>
      als.run(map1, () => {
        for (let i = 0; i < n; i++) sink.n += als.getStore()?.get(v) as number;
      }),
    { batch: 20_000 },
  )
  .add(
    "v.get(), 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) sink.n += v.get();
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore()+Map.get, 10 entries",
    (n) =>
      als.run(map10, () => {
        for (let i = 0; i < n; i++) sink.n += als.getStore()?.get(v) as number;
      }),
    { batch: 20_000 },
  )
  .add(
    "bare getStore()",
    (n) =>
      als.run(map10, () => {
        for (let i = 0; i < n; i++) sink.n += als.getStore() === undefined ? 0 : 1;
      }),
    { batch: 20_000 },
  )
  .add(
    "v.get(), object value, 10 vars set",
    (n) =>
      tenObjects.run(() => {
        for (let i = 0; i < n; i++) sink.n += objectVar.get().i;
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore()+Map.get, object value",
    (n) =>
      objects.run(objectMap, () => {
        for (let i = 0; i < n; i++)
          // biome-ignore lint/correctness/noUnsafeOptionalChaining: the store is set inside run; the same read as the other baselines
          sink.n += (objects.getStore()?.get(objectVar) as { i: number }).i;
      }),
    { batch: 20_000 },
  )
  .add(
    "unset var -> default, 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) sink.n += withDefault.get();
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore()+Map.get ?? default",
    (n) =>
      als.run(map10, () => {
        for (let i = 0; i < n; i++) sink.n += als.getStore()?.get(withDefault) ?? 7;
      }),
    { batch: 20_000 },
  )
  .add(
    "v.get() at the root",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += atRoot.get();
    },
    { batch: 20_000 },
  )
  .add(
    "(getStore() ?? root)+Map.get at the root",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += (als.getStore() ?? rootMap).get(atRoot) as number;
    },
    { batch: 20_000 },
  )
  .add(
    "v.get(), cache miss, 10 vars",
    (n) =>
      missCtx.run(() => {
        for (let i = 0; i < n; i++) {
          setMapOf(missCtx, mapsAB[i & 1] as Mapping);
          sink.n += v.get();
        }
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore().map.get, map swapped",
    (n) =>
      cells.run(missCell, () => {
        for (let i = 0; i < n; i++) {
          missCell.map = plainAB[i & 1] as Map<object, number>;
          sink.n += cells.getStore()?.map.get(v) as number;
        }
      }),
    { batch: 20_000 },
  )
  .compare(
    "get, 1 var set / getStore+Map.get",
    "v.get(), 1 var set",
    "getStore()+Map.get, 1 entry",
    {
      max: 1.0,
    },
  )
  .compare(
    "get, 10 vars set / getStore+Map.get",
    "v.get(), 10 vars set",
    "getStore()+Map.get, 10 entries",
    { max: 1.0 },
  )
  .compare("get, 1 var set / bare getStore", "v.get(), 1 var set", "bare getStore()", { max: 1.25 })
  .compare("get, 10 vars set / bare getStore", "v.get(), 10 vars set", "bare getStore()", {
    max: 1.25,
  })
  .compare(
    "get, object value / getStore+Map.get",
    "v.get(), object value, 10 vars set",
    "getStore()+Map.get, object value",
  )
  .compare(
    "get, unset -> default / Map.get ?? default",
    "unset var -> default, 10 vars set",
    "getStore()+Map.get ?? default",
    { max: 1.5 },
  )
  .compare(
    "get at the root / raw at the root",
    "v.get() at the root",
    "(getStore() ?? root)+Map.get at the root",
    { max: 1.5 },
  )
  .compare(
    "get, cache miss / getStore+Map.get (swapped)",
    "v.get(), cache miss, 10 vars",
    "getStore().map.get, map swapped",
  );

await suite.run();
