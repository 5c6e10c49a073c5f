/**
 * `Context#run` and `ContextVar#run`: entering a Context for a synchronous
 * function. The baseline is `als.run(store, fn)` on the same ALS, which is
 * what entering costs without the library.
 */

import { Context, ContextVar } from "../src/index.ts";
import { alsOf, Suite, sink } from "./harness.ts";

const als = alsOf<object>();
const maps = alsOf<Map<object, number>>();

const vars = Array.from({ length: 10 }, (_, i) => new ContextVar<number>(`v${i}`));
const v = vars[3] as ContextVar<number>;
const ctx = new Context();
ctx.run(() => {
  for (const [i, x] of vars.entries()) x.set(i);
});
const store = { map: new Map<object, number>() };
const map10 = new Map<object, number>(vars.map((x, i) => [x, i]));

const fn = (): number => 1;

const suite = new Suite("run.bench.ts", "Context#run and ContextVar#run");

suite
  .add(
    "ctx.run(fn)",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += ctx.run(fn);
    },
    { batch: 10_000 },
  )
  .add(
    "als.run(store, fn)",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += als.run(store, fn);
    },
    { batch: 10_000 },
  )
  .add(
    // What ctx.run cost when it also refused to enter a Context an async
    // continuation was already running in (Python's rule for a Task's step):
    // als.run plus asking which Context is current.
    "als.getStore() check + als.run(store, fn)",
    (n) => {
      for (let i = 0; i < n; i++) {
        if (als.getStore() === store) throw new Error("entered");
        sink.n += als.run(store, fn);
      }
    },
    { batch: 10_000 },
  )
  .add(
    "v.run(value, fn), 10 vars set",
    (n) =>
      ctx.run(() => {
        for (let i = 0; i < n; i++) sink.n += v.run(i, fn);
      }),
    { batch: 10_000 },
  )
  .add(
    "als.run(new Map(cur).set(k, v), fn)",
    (n) =>
      maps.run(map10, () => {
        for (let i = 0; i < n; i++) {
          const cur = maps.getStore() as Map<object, number>;
          sink.n += maps.run(new Map(cur).set(v, i), fn);
        }
      }),
    { batch: 10_000 },
  )
  .compare("ctx.run / als.run", "ctx.run(fn)", "als.run(store, fn)", { max: 1.1 })
  .compare(
    "ctx.run / getStore check + als.run",
    "ctx.run(fn)",
    "als.getStore() check + als.run(store, fn)",
  )
  .compare("var.run / als.run", "v.run(value, fn), 10 vars set", "als.run(store, fn)")
  .compare(
    "var.run / als.run of a copied Map",
    "v.run(value, fn), 10 vars set",
    "als.run(new Map(cur).set(k, v), fn)",
  );

await suite.run();
