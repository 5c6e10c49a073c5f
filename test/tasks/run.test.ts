// run(main): asyncio.run. main runs as a task named "main" in a copy of the
// current Context; whatever it sets stays inside.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, currentTask, gather, run, Task } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

describe("run(main)", () => {
  itFromEveryState("resolves with main's result; main's sets stay inside", async () => {
    const v = new ContextVar<string>("v");
    v.set("caller");
    const result = await run(async () => {
      assert.equal(v.get(), "caller");
      v.set("main");
      await sleep(1);
      return v.get();
    });
    assert.equal(result, "main");
    assert.equal(v.get(), "caller");
  });

  itFromEveryState("main sees the caller's values as at the call, not later sets", async () => {
    const v = new ContextVar<string>("v");
    v.set("at call");
    const pending = run(async () => {
      await sleep(1);
      return v.get();
    });
    v.set("later");
    assert.equal(await pending, "at call");
  });

  itFromEveryState("main runs as a task named main, through its awaits", async () => {
    const outer = currentTask();
    const [before, after] = await run(async () => {
      const before = currentTask();
      await sleep(1);
      return [before, currentTask()];
    });
    assert.ok(before instanceof Task);
    assert.equal(before.name, "main");
    assert.equal(after, before);
    assert.notEqual(before, outer);
    assert.equal(currentTask(), outer);
  });

  itFromEveryState("concurrent runs with equal delays are isolated from each other", async () => {
    const v = new ContextVar<number>("v", { default: 0 });
    const main = (n: number) => async () => {
      v.set(n);
      await sleep(5);
      return v.get();
    };
    assert.deepEqual(await Promise.all([run(main(1)), run(main(2)), run(main(3))]), [1, 2, 3]);
    assert.equal(v.get(), 0);
  });

  itFromEveryState("gather inside run: each worker in a copy of main's Context", async () => {
    const v = new ContextVar<string>("v");
    const results = await run(async () => {
      v.set("main");
      const gathered = await gather(
        async () => {
          const seen = v.get();
          v.set("w1");
          await sleep(2);
          return `${seen}>${v.get()}`;
        },
        async () => {
          const seen = v.get();
          v.set("w2");
          await sleep(2);
          return `${seen}>${v.get()}`;
        },
      );
      return [...gathered, v.get()];
    });
    assert.deepEqual(results, ["main>w1", "main>w2", "main"]);
    assert.equal(v.get("unset"), "unset");
  });

  it("a synchronous main: its value, or its throw as a rejection", async () => {
    assert.equal(await run(() => 7), 7);
    const boom = new Error("boom");
    const failing = run(() => {
      throw boom;
    });
    assert.ok(failing instanceof Promise);
    await assert.rejects(failing, (e) => e === boom);
  });

  it("an async main's rejection rejects run", async () => {
    const boom = new Error("boom");
    await assert.rejects(
      run(async () => {
        await sleep(1);
        throw boom;
      }),
      (e) => e === boom,
    );
  });

  for (const value of [undefined, null, 42, "main", Promise.resolve(1)]) {
    it(`run(${String(value)}): TypeError synchronously, naming main`, () => {
      assert.throws(
        () => run(value as never),
        (e: unknown) => e instanceof TypeError && /`main`/.test(e.message),
      );
    });
  }
});
