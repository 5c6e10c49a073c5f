// callSoon / callLater: asyncio's loop.call_soon / call_later, which copy the
// current Context when the callback is scheduled. Ports test_context_2 of
// CPython's Lib/test/test_asyncio/test_tasks.py.
import assert from "node:assert/strict";
import { readFile } from "node:fs";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import {
  type CallHandle,
  ContextVar,
  callLater,
  callSoon,
  createTask,
  currentTask,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

/** Resolves once the callbacks already scheduled (immediates, short timers) have run. */
async function nextTurn(): Promise<void> {
  await sleep(5);
  await new Promise((resolve) => setImmediate(resolve));
}

describe("callSoon / callLater: a copy taken at scheduling", () => {
  for (const [name, schedule] of [
    ["callSoon", (fn: () => void) => callSoon(fn)],
    ["callLater", (fn: () => void) => callLater(1, fn)],
  ] as const) {
    itFromEveryState(
      `${name}: sees the values at scheduling, and its sets stay inside`,
      async () => {
        const v = new ContextVar<string>("v");
        v.set("scheduled");
        const seen: string[] = [];
        schedule(() => {
          seen.push(v.get());
          v.set("callback");
          seen.push(v.get());
        });
        v.set("after scheduling");
        await nextTurn();
        assert.deepEqual(seen, ["scheduled", "callback"]);
        assert.equal(v.get(), "after scheduling");
      },
    );
  }

  itFromEveryState("test_context_2: callbacks do not pollute the task's context", async () => {
    const cvar = new ContextVar<string>("cvar", { default: "nope" });
    await createTask(async () => {
      const onDone = () => {
        // This change must not pollute the context of the main() task.
        cvar.set("something else");
      };
      assert.equal(cvar.get(), "nope");
      for (let j = 0; j < 2; j++) {
        cvar.set(`yes${j}`);
        await new Promise<void>((resolve) =>
          callSoon(() => {
            resolve();
            onDone();
          }),
        );
        assert.equal(cvar.get(), `yes${j}`);
        for (let i = 0; i < 3; i++) {
          cvar.set(`yes${i}-${j}`);
          callLater(0, onDone);
          await sleep(1);
          assert.equal(cvar.get(), `yes${i}-${j}`);
        }
      }
    });
    assert.equal(cvar.get(), "nope");
  });

  itFromEveryState("callLater with equal delays: in order, each in its own copy", async () => {
    const v = new ContextVar<number>("v");
    const seen: [number, number][] = [];
    for (let i = 0; i < 5; i++) {
      v.set(i);
      callLater(
        3,
        (n: number) => {
          seen.push([n, v.get()]);
          v.set(-1);
        },
        i,
      );
    }
    await sleep(10);
    assert.deepEqual(
      seen,
      [0, 1, 2, 3, 4].map((i) => [i, i]),
    );
  });

  itFromEveryState("callbacks run outside any task", async () => {
    const seen: unknown[] = [];
    await createTask(async () => {
      callSoon(() => seen.push(currentTask()));
      callLater(1, () => seen.push(currentTask()));
      await sleep(10);
    });
    assert.deepEqual(seen, [undefined, undefined]);
  });
});

describe("callSoon / callLater: handles", () => {
  it("callSoon runs on a later macrotask, after pending microtasks, with its args", async () => {
    const order: string[] = [];
    callSoon((a: string, b: number) => order.push(`soon ${a} ${b}`), "x", 1);
    void Promise.resolve().then(() => order.push("microtask"));
    order.push("sync");
    await nextTurn();
    assert.deepEqual(order, ["sync", "microtask", "soon x 1"]);
  });

  it("callSoon queues with setImmediate: in order with the immediates scheduled around it", async () => {
    // Scheduled from an I/O callback, where Node runs the immediates (its check
    // phase) before any timer, so a timer-based callSoon could not pass.
    const order = await new Promise<string[]>((resolve) => {
      readFile(fileURLToPath(import.meta.url), () => {
        const seen: string[] = [];
        setImmediate(() => seen.push("immediate 1"));
        callSoon(() => seen.push("soon"));
        setImmediate(() => seen.push("immediate 2"));
        // An immediate too, so no timer races the check phase (one did on Deno under load).
        setImmediate(() => resolve(seen));
      });
    });
    assert.deepEqual(order, ["immediate 1", "soon", "immediate 2"]);
  });

  for (const [name, schedule] of [
    ["callSoon", (fn: () => void) => callSoon(fn)],
    ["callLater", (fn: () => void) => callLater(1, fn)],
  ] as const) {
    it(`${name}: cancel() before it runs stops it; cancelled is true`, async () => {
      let ran = false;
      const handle = schedule(() => {
        ran = true;
      });
      assert.equal(handle.cancelled, false);
      handle.cancel();
      handle.cancel();
      assert.equal(handle.cancelled, true);
      await nextTurn();
      assert.equal(ran, false);
    });

    it(`${name}: cancel() after it ran is a no-op; cancelled stays false`, async () => {
      let runs = 0;
      const handle = schedule(() => {
        runs++;
      });
      await nextTurn();
      handle.cancel();
      assert.equal(runs, 1);
      assert.equal(handle.cancelled, false);
    });

    it(`${name}: cancel() from inside its own callback is a no-op; cancelled stays false`, async () => {
      let cancelledInside: boolean | undefined;
      const handle: CallHandle = schedule(() => {
        handle.cancel();
        cancelledInside = handle.cancelled;
      });
      await nextTurn();
      assert.equal(cancelledInside, false);
      assert.equal(handle.cancelled, false);
      assert.doesNotMatch(String(handle), /cancelled/);
    });
  }

  it("callLater rounds a delay under 1 ms up to 1 ms, as setTimeout does: equal delays run in the order scheduled (asyncio would run the 0 first)", async () => {
    const order: string[] = [];
    callLater(1, () => order.push("a"));
    callLater(0, () => order.push("b"));
    callLater(0.5, () => order.push("c"));
    await sleep(20);
    assert.deepEqual(order, ["a", "b", "c"]);
  });

  it("callLater waits its delay: a shorter delay scheduled later runs first, and a callback runs no sooner than asked", async () => {
    const order: string[] = [];
    const start = performance.now();
    let waited = 0;
    callLater(30, () => {
      order.push("30 ms");
      waited = performance.now() - start;
    });
    callLater(1, () => order.push("1 ms"));
    await sleep(60);
    assert.deepEqual(order, ["1 ms", "30 ms"]);
    // setTimeout may fire up to a millisecond early by the clock it is measured against.
    assert.ok(waited >= 29, `ran after ${waited} ms`);
  });

  it("toString and toStringTag", () => {
    const handle = callSoon(function tick() {});
    assert.equal(Object.prototype.toString.call(handle), "[object CallHandle]");
    assert.equal(String(handle), "<callSoon tick>");
    handle.cancel();
    assert.equal(String(handle), "<callSoon tick cancelled>");
    const later = callLater(1000, function tock() {});
    assert.equal(Object.prototype.toString.call(later), "[object CallHandle]");
    assert.equal(String(later), "<callLater tock>");
    later.cancel();
    assert.equal(String(later), "<callLater tock cancelled>");
    // A name that is not a string counts as none, as for an anonymous function.
    const symbolNamed = Object.defineProperty(() => {}, "name", { value: Symbol("tick") });
    const other = callSoon(symbolNamed);
    assert.equal(String(other), "<callSoon anonymous>");
    other.cancel();
  });
});

describe("callSoon / callLater: bad input", () => {
  for (const delay of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, "5", null]) {
    it(`callLater(${String(delay)}): TypeError naming delayMs, nothing scheduled`, async () => {
      let ran = false;
      assert.throws(
        () => callLater(delay as never, () => (ran = true)),
        (e: unknown) => e instanceof TypeError && /`delayMs`/.test(e.message),
      );
      await nextTurn();
      assert.equal(ran, false);
    });
  }

  for (const fn of [42, null, "fn"]) {
    it(`callSoon(${String(fn)}) and callLater(0, ${String(fn)}): TypeError naming fn`, () => {
      const check = (e: unknown) => e instanceof TypeError && /`fn`/.test(e.message);
      assert.throws(() => callSoon(fn as never), check);
      assert.throws(() => callLater(0, fn as never), check);
    });
  }
});

describe("callLater: the largest delay", () => {
  it("takes 2**31-1 ms, the most a timer holds", () => {
    callLater(2 ** 31 - 1, () => {}).cancel();
  });
});
