/**
 * The ALS tax: on Node 20/22 the first `AsyncLocalStorage#run` in a process
 * turns on async_hooks, and from then on every promise and every `await` of
 * any code costs more (Node 24's AsyncContextFrame has no such tax). Not the
 * library's cost, but every application that uses ALS pays it, so it is
 * stated here on its own: the same async function with 10 awaits, with
 * async_hooks off and on, in alternating rounds (`disable()` turns them off
 * again when no other instance is enabled).
 *
 * This file never touches the library's ALS; it uses its own instance.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { Suite, sink } from "./harness.ts";

const als = new AsyncLocalStorage<number>();

async function tenAwaits(): Promise<number> {
  let x = 0;
  for (let j = 0; j < 10; j++) x += await j;
  return x;
}

const body = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) sink.n += await tenAwaits();
};

const suite = new Suite("als-tax.bench.ts", "The ALS tax (Node 20/22)", { touchAls: false });

suite
  .addAsync("10 awaits, async_hooks off", body, { batch: 500, before: () => als.disable() })
  .addAsync("10 awaits, async_hooks on", body, {
    batch: 500,
    before: () => als.run(1, () => {}),
  })
  .compare(
    "10 awaits: hooks on / hooks off",
    "10 awaits, async_hooks on",
    "10 awaits, async_hooks off",
  );

await suite.run();
