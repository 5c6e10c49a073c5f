/**
 * `ContextVar#set` (and `reset`): a new immutable mapping per set, so that
 * copies taken before never see it. The baseline is the obvious way to do
 * that by hand: copy a native Map and set the key (`new Map(old).set(k, v)`)
 * in the store of the same ALS. Sets rotate over 10 vars; the token is kept
 * (put in a sink), as code that resets it does.
 */

import { Context, ContextVar } from "../src/index.ts";
import { alsOf, Suite, sink } from "./harness.ts";

const cells = alsOf<{ map: Map<object, number> }>();

const vars = Array.from({ length: 100_000 }, (_, i) => new ContextVar<number>(`v${i}`));
const first10 = vars.slice(0, 10);

function contextWith(count: number): Context {
  const ctx = new Context();
  ctx.run(() => {
    for (let i = 0; i < count; i++) (vars[i] as ContextVar<number>).set(i);
  });
  return ctx;
}
const ten = contextWith(10);
const all = contextWith(100_000);
const cell = { map: new Map<object, number>(first10.map((x, i) => [x, i])) };

const suite = new Suite("set.bench.ts", "ContextVar#set and #reset");

suite
  .add(
    "v.set(), 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) sink.o = (first10[i % 10] as ContextVar<number>).set(i);
      }),
    { batch: 10_000 },
  )
  .add(
    "new Map(old).set(k, v), 10 entries",
    (n) =>
      cells.run(cell, () => {
        for (let i = 0; i < n; i++) {
          const s = cells.getStore() as { map: Map<object, number> };
          s.map = new Map(s.map).set(first10[i % 10] as object, i);
        }
      }),
    { batch: 2_000 },
  )
  .add(
    "v.set(), 100,000 vars set",
    (n) =>
      all.run(() => {
        for (let i = 0; i < n; i++) sink.o = (first10[i % 10] as ContextVar<number>).set(i);
      }),
    { batch: 5_000 },
  )
  .add(
    "v.reset(v.set()), 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) {
          const x = first10[i % 10] as ContextVar<number>;
          x.reset(x.set(i));
        }
      }),
    { batch: 10_000 },
  )
  .add(
    "Map copy+set, then restore, 10 entries",
    (n) =>
      cells.run(cell, () => {
        for (let i = 0; i < n; i++) {
          const s = cells.getStore() as { map: Map<object, number> };
          const old = s.map;
          s.map = new Map(old).set(first10[i % 10] as object, i);
          s.map = old;
        }
      }),
    { batch: 2_000 },
  )
  .compare(
    "set, 10 vars / new Map(old).set",
    "v.set(), 10 vars set",
    "new Map(old).set(k, v), 10 entries",
    { max: 0.2 },
  )
  .compare("set, 100,000 vars / 10 vars", "v.set(), 100,000 vars set", "v.set(), 10 vars set", {
    max: 3.5,
  })
  .compare(
    "set+reset / Map copy+set+restore",
    "v.reset(v.set()), 10 vars set",
    "Map copy+set, then restore, 10 entries",
  )
  .compare("set+reset / set alone", "v.reset(v.set()), 10 vars set", "v.set(), 10 vars set");

await suite.run();
