/**
 * `copyContext()`: what a task, a bound callback or a request pays to take a
 * snapshot. The baseline is the least a snapshot can cost on ALS: read the
 * store and allocate a small object (as many fields as a Context). A copy
 * shares the mapping, so its cost must not grow with the number of vars set.
 */

import { Context, ContextVar, copyContext } from "../src/index.ts";
import { alsOf, Suite, sink } from "./harness.ts";

interface Cell {
  map: Map<object, number>;
  task: object | undefined;
}
const cells = alsOf<Cell>();

const vars = Array.from({ length: 100_000 }, (_, i) => new ContextVar<number>(`v${i}`));

/** A Context with the first `count` vars set. */
function contextWith(count: number): Context {
  const ctx = new Context();
  ctx.run(() => {
    for (let i = 0; i < count; i++) (vars[i] as ContextVar<number>).set(i);
  });
  return ctx;
}
const one = contextWith(1);
const ten = contextWith(10);
const thousand = contextWith(1_000);
const all = contextWith(100_000);

const cell: Cell = {
  map: new Map(vars.slice(0, 10).map((x, i) => [x, i])),
  task: undefined,
};
let ids = 0;

const suite = new Suite("copy.bench.ts", "copyContext()");

suite
  .add(
    "copyContext(), 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) sink.o = copyContext();
      }),
    { batch: 20_000 },
  )
  .add(
    "getStore() + small object",
    (n) =>
      cells.run(cell, () => {
        for (let i = 0; i < n; i++) {
          const s = cells.getStore() as Cell;
          sink.o = { map: s.map, entered: false, task: s.task, id: ++ids };
        }
      }),
    { batch: 20_000 },
  )
  .add(
    "copyContext(), 1 var set",
    (n) =>
      one.run(() => {
        for (let i = 0; i < n; i++) sink.o = copyContext();
      }),
    { batch: 20_000 },
  )
  .add(
    "copyContext(), 1,000 vars set",
    (n) =>
      thousand.run(() => {
        for (let i = 0; i < n; i++) sink.o = copyContext();
      }),
    { batch: 20_000 },
  )
  .add(
    "copyContext(), 100,000 vars set",
    (n) =>
      all.run(() => {
        for (let i = 0; i < n; i++) sink.o = copyContext();
      }),
    { batch: 20_000 },
  )
  .compare(
    "copyContext / getStore+alloc",
    "copyContext(), 10 vars set",
    "getStore() + small object",
    { max: 1.1 },
  )
  .compare(
    "copyContext 100,000 vars / 1 var",
    "copyContext(), 100,000 vars set",
    "copyContext(), 1 var set",
    { max: 1.2 },
  )
  .compare(
    "copyContext 1,000 vars / 1 var",
    "copyContext(), 1,000 vars set",
    "copyContext(), 1 var set",
  );

await suite.run();
