/**
 * Tasks: `createTask` and `gather`. A task is a copy of the current Context
 * entered with `als.run` around the task's function, so the baseline is
 * exactly that done by hand on the same ALS: `als.run(newCell, fn)`, and
 * `Promise.all` of such calls. Each batch ends when every promise it made has
 * settled (a `setImmediate` after the last one), on both sides.
 *
 * A task must know when its function has settled (`done`, TaskGroup's wait,
 * handing a shared Context back), which takes one reaction on the function's
 * promise; `als.run(newCell, fn).then(onDone, onDone)` measures that floor,
 * so the report shows how much of the ratio is the reaction and how much the
 * task around it.
 */

import { ContextVar, createTask, gather } from "../src/index.ts";
import { alsOf, Suite, sink } from "./harness.ts";

interface Cell {
  map: Map<object, number>;
  task: object | undefined;
}
const cells = alsOf<Cell>();
const rootCell: Cell = { map: new Map(), task: undefined };

/** A new cell over the current one's mapping: what copyContext() is, by hand. */
function newCell(): Cell {
  const s = cells.getStore() ?? rootCell;
  return { map: s.map, task: s.task };
}

const settled = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const TASKS = 10_000;
const trivial = async (): Promise<number> => 1;
const trivials = Array.from({ length: TASKS }, () => trivial);

// Each task sets a var, yields once, and reads it back (the CPython side does the same).
const v = new ContextVar<number>("v");
const setGets = Array.from({ length: TASKS }, (_, i) => async (): Promise<number> => {
  v.set(i);
  await null;
  return v.get();
});
const setGetsByHand = Array.from({ length: TASKS }, (_, i) => async (): Promise<number> => {
  const cell = cells.getStore() as Cell;
  cell.map = new Map(cell.map).set(v, i);
  await null;
  return (cells.getStore() as Cell).map.get(v) as number;
});

const results: unknown[] = new Array(1_000);
const onDone = (): void => {};

const suite = new Suite("tasks.bench.ts", "createTask and gather");

suite
  .addAsync(
    "createTask(async fn)",
    async (n) => {
      for (let i = 0; i < n; i++) results[i] = createTask(trivial);
      await settled();
    },
    { batch: 1_000 },
  )
  .addAsync(
    "als.run(newCell, async fn)",
    async (n) => {
      for (let i = 0; i < n; i++) results[i] = cells.run(newCell(), trivial);
      await settled();
    },
    { batch: 1_000 },
  )
  .addAsync(
    "als.run(newCell, async fn).then(onDone, onDone)",
    async (n) => {
      for (let i = 0; i < n; i++) results[i] = cells.run(newCell(), trivial).then(onDone, onDone);
      await settled();
    },
    { batch: 1_000 },
  )
  .addAsync(
    "gather(10,000 fns), per task",
    async () => {
      sink.o = await gather(...trivials);
    },
    { batch: 1, units: TASKS },
  )
  .addAsync(
    "Promise.all(10,000 als.run), per task",
    async () => {
      sink.o = await Promise.all(trivials.map((f) => cells.run(newCell(), f)));
    },
    { batch: 1, units: TASKS },
  )
  .addAsync(
    "gather(10,000 set+await+get), per task",
    async () => {
      sink.o = await gather(...setGets);
    },
    { batch: 1, units: TASKS },
  )
  .addAsync(
    "Promise.all(10,000 set+await+get by hand), per task",
    async () => {
      sink.o = await Promise.all(setGetsByHand.map((f) => cells.run(newCell(), f)));
    },
    { batch: 1, units: TASKS },
  )
  .compare(
    "createTask / als.run(newCell, fn)",
    "createTask(async fn)",
    "als.run(newCell, async fn)",
    {
      max: 1.2,
    },
  )
  .compare(
    "createTask / als.run(newCell, fn) + one reaction",
    "createTask(async fn)",
    "als.run(newCell, async fn).then(onDone, onDone)",
  )
  .compare(
    "gather / Promise.all of als.run",
    "gather(10,000 fns), per task",
    "Promise.all(10,000 als.run), per task",
    { max: 1.2 },
  )
  .compare(
    "gather set+get / by hand",
    "gather(10,000 set+await+get), per task",
    "Promise.all(10,000 set+await+get by hand), per task",
  );

await suite.run();
