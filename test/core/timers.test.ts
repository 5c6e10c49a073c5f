/**
 * Timers and queued callbacks run in the Context that scheduled them: the
 * same cell, not a snapshot (contract section 1: every continuation of one
 * run shares that run's Context). callSoon/callLater take a copy instead.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs";
import { describe } from "node:test";
import * as timersPromises from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Context, ContextVar, callLater, callSoon, createTask, gather } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });

type Schedule = (callback: () => void) => void;

const schedulers: ReadonlyArray<readonly [string, Schedule]> = [
  ["setTimeout", (cb) => setTimeout(cb, 2)],
  ["setTimeout(0)", (cb) => setTimeout(cb, 0)],
  [
    "setInterval",
    (cb) => {
      const id = setInterval(() => {
        clearInterval(id);
        cb();
      }, 2);
    },
  ],
  ["setImmediate", (cb) => setImmediate(cb)],
  ["queueMicrotask", (cb) => queueMicrotask(cb)],
  ["process.nextTick", (cb) => process.nextTick(cb)],
  ["timers/promises setTimeout", (cb) => void timersPromises.setTimeout(2).then(cb)],
  ["timers/promises setImmediate", (cb) => void timersPromises.setImmediate().then(cb)],
];

/** Schedules a callback and resolves with what it returns, once it has run. */
function later<T>(schedule: Schedule, callback: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    schedule(() => {
      try {
        resolve(callback());
      } catch (error) {
        reject(error);
      }
    });
  });
}

for (const [name, schedule] of schedulers) {
  describe(name, () => {
    itFromEveryState("a callback sees the Context that scheduled it", async () => {
      v.set("scheduler");
      assert.equal(await later(schedule, () => v.get()), "scheduler");
      assert.equal(await v.run("in run", () => later(schedule, () => v.get())), "in run");
    });

    itFromEveryState("siblings with equal delays never see each other", async () => {
      v.set("parent");
      const sibling = async (value: string): Promise<string[]> => {
        v.set(value);
        const first = later(schedule, () => v.get());
        await null;
        const second = later(schedule, () => {
          const seen = v.get();
          v.set(`${value} (changed by callback)`);
          return seen;
        });
        return [await first, await second, v.get()];
      };
      const ctx = new Context();
      const results = await Promise.all([
        gather(
          () => sibling("task a"),
          () => sibling("task b"),
        ),
        ctx.run(() => sibling("ctx")),
        v.run("var.run", () => sibling("var.run")),
        createTask(() => sibling("task c")),
      ]);
      const expected = (value: string) => [value, value, `${value} (changed by callback)`];
      assert.deepEqual(results, [
        [expected("task a"), expected("task b")],
        expected("ctx"),
        expected("var.run"),
        expected("task c"),
      ]);
      assert.equal(v.get(), "parent");
    });

    // Pinned: the callback captures the Context cell, not its mapping, so it
    // sees a set made after scheduling, and its own sets land in that cell.
    itFromEveryState("a callback shares the scheduling run's Context (a cell)", async () => {
      v.set("outer");
      const ctx = new Context();
      const seen = ctx.run(() => {
        v.set("when scheduled");
        const pending = later(schedule, () => {
          const value = v.get();
          v.set("set by callback");
          return value;
        });
        v.set("after scheduling");
        return pending;
      });
      assert.equal(await seen, "after scheduling");
      assert.equal(ctx.get(v), "set by callback");
      assert.equal(v.get(), "outer");
    });
  });
}

// An I/O callback, as a timer: the cell of the run that started the I/O.
// Not among the schedulers above: when two reads complete is up to the
// runtime, so the siblings test's order cannot hold for it.
describe("an I/O callback (fs.readFile)", () => {
  const read = (callback: () => void) => readFile(fileURLToPath(import.meta.url), () => callback());

  itFromEveryState(
    "sees the run that started the I/O, after run has returned, and its sets land there",
    async () => {
      v.set("outer");
      const ctx = new Context();
      const seen = ctx.run(() => {
        v.set("when started");
        const pending = later(read, () => {
          const value = v.get();
          v.set("set by callback");
          return value;
        });
        v.set("after starting");
        return pending;
      });
      assert.equal(await seen, "after starting");
      assert.equal(ctx.get(v), "set by callback");
      assert.equal(v.get(), "outer");
      const [a, b] = await gather(
        () => v.run("task a", () => later(read, () => v.get())),
        () => v.run("task b", () => later(read, () => v.get())),
      );
      assert.deepEqual([a, b], ["task a", "task b"]);
    },
  );
});

describe("callSoon / callLater take a copy", () => {
  itFromEveryState("a later set is not seen and the callback's sets stay inside", async () => {
    v.set("outer");
    const ctx = new Context();
    const seen = await ctx.run(() => {
      v.set("when scheduled");
      const soon = new Promise<string>((resolve) =>
        callSoon(() => {
          resolve(v.get());
          v.set("set by callSoon");
        }),
      );
      const late = new Promise<string>((resolve) =>
        callLater(2, () => {
          resolve(v.get());
          v.set("set by callLater");
        }),
      );
      v.set("after scheduling");
      return Promise.all([soon, late]);
    });
    assert.deepEqual(seen, ["when scheduled", "when scheduled"]);
    assert.equal(ctx.get(v), "after scheduling");
    assert.equal(v.get(), "outer");
  });

  itFromEveryState("callLater siblings with equal delays see their own values", async () => {
    const fire = (value: string) =>
      v.run(value, () => new Promise<string>((resolve) => callLater(2, () => resolve(v.get()))));
    assert.deepEqual(await Promise.all([fire("a"), fire("b"), fire("c")]), ["a", "b", "c"]);
  });
});
