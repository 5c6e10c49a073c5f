// 100,000 concurrent tasks with interleaved awaits: each sees only its own
// values, and the memory they held is given back once they finish.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import { ContextVar, createTask, currentTask, gather, type Task } from "contextvars";
import { gc } from "../helpers/gc.ts";

const TASKS = 100_000;
// A guard against a hang, not a speed assertion.
const GUARD = { timeout: 60_000 };

async function collectedHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await turn();
    gc();
  }
  return process.memoryUsage().heapUsed;
}

const id = new ContextVar<number>("id");
const echo = new ContextVar<string>("echo");
const inherited = new ContextVar<string>("inherited", { default: "none" });

/** Starts TASKS tasks whose awaits interleave; resolves with how many saw a value not their own. */
async function runAll(): Promise<number> {
  let wrong = 0;
  const check = (i: number, self: Task<unknown> | undefined, expected: string) => {
    if (id.get() !== i || echo.get() !== `#${i}` || inherited.get() !== expected) wrong++;
    if (currentTask() !== self) wrong++;
  };
  inherited.set("parent");
  let tasks: Task<void>[] | undefined = [];
  for (let i = 0; i < TASKS; i++) {
    tasks.push(
      createTask(async () => {
        const self = currentTask();
        id.set(i);
        await null;
        echo.set(`#${i}`);
        if (i % 5 === 0) inherited.set("changed by a child");
        check(i, self, i % 5 === 0 ? "changed by a child" : "parent");
        // Every third task yields to the event loop, the rest to the microtask
        // queue, so the tasks wake in an order unlike the one they started in.
        if (i % 3 === 0) await turn();
        else await Promise.resolve();
        check(i, self, i % 5 === 0 ? "changed by a child" : "parent");
      }),
    );
  }
  await Promise.all(tasks);
  tasks = undefined;
  return wrong;
}

describe("stress", () => {
  it(
    `${TASKS} tasks with interleaved awaits see only their own values; memory is given back`,
    GUARD,
    async () => {
      const baseline = await collectedHeap();
      assert.equal(await createTask(runAll), 0);
      // The tasks ran inside one outer task: none of their sets reached here.
      assert.equal(inherited.get(), "none");
      const grownMb = ((await collectedHeap()) - baseline) / 2 ** 20;
      assert.ok(grownMb < 20, `heap grew by ${grownMb.toFixed(1)} MB after gc`);
    },
  );

  it(
    `gather over ${TASKS / 10} functions keeps every result with its own task`,
    GUARD,
    async () => {
      const fns = Array.from({ length: TASKS / 10 }, (_, i) => async () => {
        id.set(i);
        await turn();
        return id.get();
      });
      const results = await gather(...fns);
      assert.ok(results.every((value, i) => value === i));
      assert.equal(id.get(-1), -1);
    },
  );
});
