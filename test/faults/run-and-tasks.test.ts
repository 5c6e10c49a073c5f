/**
 * A throw never moves the current Context. Each fault below is thrown (or
 * rejected) and caught by the test, from every starting state (root, inside
 * a run, inside a copy, inside a task); afterwards the current Context is
 * the very same cell with the very same values (helpers/pin-context.ts), and
 * whatever the fault ran in is left usable (a Context can be run again).
 *
 * Timers, scheduled callbacks and AbortSignal listeners that throw reach
 * `uncaughtException` instead of the caller: process-handlers.test.ts.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  bind,
  bindEmitter,
  Context,
  ContextEnteredError,
  ContextVar,
  copyContext,
  createTask,
  gather,
  isolated,
  run,
  TimeoutError,
  TokenMismatchError,
  TokenUsedError,
  timeout,
} from "contextvars";
import { pinContext } from "../helpers/pin-context.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });
const w = new ContextVar<string>("w", { default: "unset" });

class Fault extends Error {}

// Faults run in a Context of their own (a run, a task, a copy) set a var
// first: that set must stay inside. Faults called directly (a listener in
// emit, a `using` scope) share the caller's Context by design, so they set
// nothing but their own scoped var.
const fail = (): never => {
  v.set("set before the throw");
  throw new Fault("fault");
};
const failLater = async (): Promise<never> => {
  v.set("set before the await");
  await sleep(1);
  v.set("set after the await");
  throw new Fault("fault");
};
const throwPlain = (): never => {
  throw new Fault("fault");
};
const throwLater = async (): Promise<never> => {
  await sleep(1);
  throw new Fault("fault");
};

/** Faults that throw synchronously into the caller. */
const throwing: ReadonlyArray<readonly [string, () => unknown]> = [
  ["ctx.run(fn) where fn throws", () => new Context().run(fail)],
  ["var.run(value, fn) where fn throws", () => w.run("inside", fail)],
  ["a bind()-wrapped function that throws", () => bind(fail)()],
  ["an isolated() function that throws", () => isolated(fail)()],
  [
    "nested runs, thrown three levels down",
    () => new Context().run(() => w.run("a", () => new Context().run(() => v.run("b", fail)))),
  ],
  ["a listener throwing inside emit()", () => new EventEmitter().on("e", throwPlain).emit("e")],
  [
    "a listener of a bindEmitter()-bound emitter throwing",
    () => bindEmitter(new EventEmitter()).on("e", fail).emit("e"),
  ],
  [
    "a `using` scope left by a throw",
    () => {
      using _ = w.set("scoped");
      throwPlain();
    },
  ],
];

/** Faults that reject a promise the caller awaits. */
const rejecting: ReadonlyArray<readonly [string, () => PromiseLike<unknown>]> = [
  ["ctx.run(async fn) that rejects after an await", () => new Context().run(failLater)],
  ["var.run(value, async fn) that rejects after an await", () => w.run("inside", failLater)],
  ["a bind()-wrapped async function that rejects after an await", () => bind(failLater)()],
  ["a task whose function throws synchronously", () => createTask(fail)],
  ["a task that rejects after an await", () => createTask(failLater)],
  ["run(main) that rejects", () => run(failLater)],
  ["gather() with one failing item", () => gather(failLater, async () => sleep(2))],
  ["an isolated() async function that rejects", () => isolated(failLater)()],
  [
    "a thenable whose then() throws",
    // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
    async () => await ({ then: () => throwPlain() } as PromiseLike<never>),
  ],
  [
    "an async function with `using`, rejecting after an await",
    async () => {
      using _ = w.set("scoped");
      await throwLater();
    },
  ],
];

describe("a throw into the caller leaves its Context as it was", () => {
  for (const [name, fault] of throwing) {
    itFromEveryState(name, () => {
      const pin = pinContext();
      assert.throws(fault, Fault);
      pin.check(name);
    });
  }
});

describe("a rejection the caller awaits leaves its Context as it was", () => {
  for (const [name, fault] of rejecting) {
    itFromEveryState(name, async () => {
      const pin = pinContext();
      await assert.rejects(async () => fault(), Fault);
      pin.check(name);
    });
  }
});

describe("misuse errors change no Context", () => {
  itFromEveryState("reset with a used, foreign-var or foreign-Context token", () => {
    const used = v.set("x");
    v.reset(used);
    const foreign = new Context().run(() => v.set("elsewhere"));
    const pin = pinContext();
    assert.throws(() => v.reset(used), TokenUsedError);
    assert.throws(() => v.reset(foreign), TokenMismatchError);
    const own = v.set("y");
    assert.throws(() => w.reset(own as never), TokenMismatchError);
    assert.equal(v.get(), "y");
    v.reset(own);
    pin.check();
  });

  itFromEveryState("a timeout() that runs out of time: TimeoutError", async () => {
    const pin = pinContext();
    const late = timeout(1, async (signal) => {
      v.set("set in the timed task");
      await new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason)),
      );
    });
    await assert.rejects(late, TimeoutError);
    pin.check();
  });

  itFromEveryState("entering a Context that is already entered", () => {
    const ctx = new Context();
    ctx.run(() => {
      const pin = pinContext();
      assert.throws(() => ctx.run(() => {}), ContextEnteredError);
      pin.check("inside the run");
    });
    assert.equal(
      ctx.run(() => "entered again"),
      "entered again",
    );
  });
});

describe("the pin itself", () => {
  it("tells the very cell from a copy with equal values", () => {
    const pin = pinContext();
    copyContext().run(() => assert.throws(() => pin.check(), TokenMismatchError));
    pin.check();
  });
});

describe("what the fault ran in stays usable", () => {
  it("a Context whose run threw keeps the sets made before the throw and can be entered again", () => {
    const ctx = new Context();
    assert.throws(() => ctx.run(fail), Fault);
    assert.equal(ctx.get(v), "set before the throw");
    assert.equal(
      ctx.run(() => v.get()),
      "set before the throw",
    );
  });

  it("a failed task's Context holds what it set up to the failure", async () => {
    const task = createTask(failLater);
    await assert.rejects(task, Fault);
    assert.equal(task.context.get(v), "set after the await");
    assert.equal(v.get(), "unset");
  });
});
