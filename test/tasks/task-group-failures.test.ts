// TaskGroup failures: ports of CPython's Lib/test/test_asyncio/test_taskgroups.py
// (delays shortened; ZeroDivisionError is a RangeError here, ExceptionGroup an
// AggregateError; the group body heeds `tg.signal` where asyncio cancels the
// parent task). The first failure cancels the rest; the group rejects with an
// AggregateError of the failures, never of the cancellations they caused.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runInNewContext } from "node:vm";
import {
  ContextVar,
  currentTask,
  type Task,
  TaskGroup,
  TaskGroupClosedError,
  taskGroup,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

class MyExc extends Error {}

function divideByZero(): never {
  throw new RangeError("division by zero");
}

/** The set of error classes in an AggregateError (CPython's get_error_types). */
function errorTypes(error: unknown): Set<Function> {
  assert.ok(error instanceof AggregateError, `expected an AggregateError, got ${String(error)}`);
  return new Set(error.errors.map((e: unknown) => (e as object).constructor));
}

const rejection = (promise: PromiseLike<unknown>): Promise<unknown> =>
  Promise.resolve(promise).then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );

describe("TaskGroup: failures", () => {
  itFromEveryState("test_taskgroup_04: the first failure cancels the rest", async () => {
    let NUM = 0;
    let t2Cancel = false;
    let t2: Task<void> | undefined;
    const foo2 = async (signal: AbortSignal) => {
      try {
        await sleep(1000, undefined, { signal });
      } catch (error) {
        t2Cancel = true;
        throw error;
      }
      NUM += 1;
    };
    const error = await rejection(
      taskGroup((g) => {
        g.createTask(() => sleep(10).then(divideByZero));
        t2 = g.createTask(foo2);
      }).then(() => (NUM += 10)),
    );
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal(NUM, 0);
    assert.equal(t2Cancel, true);
    assert.equal(t2?.cancelled, true);
  });

  it("test_cancel_children_on_child_error: failures only, not the cancellations they caused", async () => {
    let t2Cancel = false;
    let runnerCancel = false;
    const foo1 = () => sleep(10).then(divideByZero);
    const error = await rejection(
      taskGroup(async (g) => {
        g.createTask(foo1);
        g.createTask(foo1);
        g.createTask(foo1);
        g.createTask(async (signal) => {
          await sleep(5000, undefined, { signal }).catch((e: unknown) => {
            t2Cancel = true;
            throw e;
          });
        });
        try {
          await sleep(10_000, undefined, { signal: g.signal });
        } catch (e) {
          runnerCancel = true;
          throw e;
        }
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal(t2Cancel, true);
    assert.equal(runnerCancel, true);
  });

  it("the body rethrowing tg.signal.reason (throwIfAborted) is not a failure", async () => {
    const error = await rejection(
      taskGroup(async (g) => {
        g.createTask(() => sleep(1).then(divideByZero));
        await new Promise((resolve) => g.signal.addEventListener("abort", resolve));
        g.signal.throwIfAborted();
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
  });

  itFromEveryState(
    "the body is not cancelled by a failure: it runs on to its end, its sets landing in its Context (asyncio cancels it at its next await)",
    async () => {
      const v = new ContextVar("v", { default: "before" });
      const error = await rejection(
        taskGroup(async (g) => {
          g.createTask(() => sleep(1).then(divideByZero));
          await new Promise((resolve) => g.signal.addEventListener("abort", resolve));
          await sleep(1);
          v.set("ran on");
        }),
      );
      assert.deepEqual(errorTypes(error), new Set([RangeError]));
      assert.equal(v.get(), "ran on");
    },
  );

  it("after a failure, only the group's own abort is a cancellation: another AbortError, or an error caused by the reason but not an AbortError, is a failure", async () => {
    for (const make of [
      () => new DOMException("not the group's", "AbortError"),
      (g: TaskGroup) => new Error("wrapped", { cause: g.signal.reason }),
    ]) {
      let thrown: unknown;
      const error = await rejection(
        taskGroup(async (g) => {
          g.createTask(() => sleep(1).then(divideByZero));
          await new Promise((resolve) => g.signal.addEventListener("abort", resolve));
          thrown = make(g);
          throw thrown;
        }),
      );
      assert.ok(error instanceof AggregateError);
      assert.equal(error.errors.length, 2);
      assert.ok(error.errors.includes(thrown), String(thrown));
    }
  });

  it("a cancelled child's AbortError caused by the reason, made in another realm: no failure", async () => {
    // Under jest's vm contexts, Node's own timers/promises and events.once
    // throw AbortErrors of the outer realm's Error, not of the one this package
    // was loaded in.
    const foreignAbortError = runInNewContext(
      `(cause) => Object.assign(new Error("The operation was aborted", { cause }), { name: "AbortError" })`,
    ) as (cause: unknown) => Error;
    const error = await rejection(
      taskGroup(async (g) => {
        g.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          throw foreignAbortError(signal.reason);
        });
        g.createTask(() => sleep(1).then(divideByZero));
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
  });

  it("the body calling createTask after a failure: the group's refusal ends it as asyncio's cancellation at its next await would, and is no failure", async () => {
    let refusal: unknown;
    const error = await rejection(
      taskGroup(async (g) => {
        g.createTask(() => sleep(1).then(divideByZero));
        await new Promise((resolve) => g.signal.addEventListener("abort", resolve));
        try {
          g.createTask(() => 1);
        } catch (e) {
          refusal = e;
          throw e;
        }
      }),
    );
    assert.ok(refusal instanceof TaskGroupClosedError);
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal((error as AggregateError).errors.length, 1);
  });

  it("another group's refusal thrown from the body is a failure", async () => {
    const finished = new TaskGroup({ name: "finished" });
    await finished.wait();
    const error = await rejection(
      taskGroup(() => {
        finished.createTask(() => 1);
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([TaskGroupClosedError]));
  });

  it("a body that throws undefined before anything failed: a failure like any other", async () => {
    const error = await rejection(
      taskGroup(() => {
        throw undefined;
      }),
    );
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(error.errors, [undefined]);
  });

  it("the body throwing an exotic error after a failure (a Proxy whose getPrototypeOf trap throws): a failure, and the children are still waited for", async () => {
    const exotic = new Proxy(new Error("exotic"), {
      getPrototypeOf() {
        throw new Error("trap");
      },
    });
    let slowFinished = false;
    const error = await rejection(
      taskGroup(async (g) => {
        g.createTask(divideByZero);
        g.createTask(async () => {
          await sleep(20); // heeds no signal
          slowFinished = true;
        });
        await new Promise((resolve) => g.signal.addEventListener("abort", resolve));
        throw exotic;
      }),
    );
    assert.equal(slowFinished, true, "taskGroup settled only once every child had");
    assert.ok(error instanceof AggregateError);
    assert.equal(error.errors.length, 2);
    assert.ok(error.errors[0] instanceof RangeError);
    assert.equal(error.errors[1], exotic);
  });

  itFromEveryState(
    "the body awaiting a child the group cancelled: not a failure (asyncio drops that CancelledError)",
    async () => {
      let slow: Task<string> | undefined;
      const error = await rejection(
        taskGroup(async (g) => {
          slow = g.createTask((signal) => sleep(1000, "slow", { signal }));
          const failing = g.createTask(() => sleep(5).then(divideByZero));
          return [await slow, await failing];
        }),
      );
      assert.deepEqual(errorTypes(error), new Set([RangeError]));
      assert.equal((error as AggregateError).errors.length, 1);
      assert.equal(slow?.cancelled, true);
    },
  );

  it("the group's signal and every child it cancels share one reason, an AbortError", async () => {
    let group: TaskGroup | undefined;
    const reasons: unknown[] = [];
    await rejection(
      taskGroup((g) => {
        group = g;
        for (let i = 0; i < 2; i++) {
          const child = g.createTask((signal) => sleep(1000, undefined, { signal }));
          child.catch((e: unknown) => reasons.push(e));
        }
        g.createTask(() => sleep(5).then(divideByZero));
      }),
    );
    const reason = group?.signal.reason;
    assert.ok(reason instanceof Error && reason.name === "AbortError");
    assert.equal(reasons.length, 2);
    for (const r of reasons) assert.equal(r, reason, "the very same reason, not an equal one");
  });

  it("a throw from taskGroup's body cancels the children with an AbortError, not with what it threw", async () => {
    let group: TaskGroup | undefined;
    const reasons: unknown[] = [];
    const bodyError = new Error("body failed");
    const error = await rejection(
      taskGroup((g) => {
        group = g;
        const child = g.createTask((signal) => sleep(1000, undefined, { signal }));
        child.catch((e: unknown) => reasons.push(e));
        throw bodyError;
      }),
    );
    assert.deepEqual((error as AggregateError).errors, [bodyError]);
    const reason = group?.signal.reason;
    assert.ok(reason instanceof Error && reason.name === "AbortError");
    assert.deepEqual(reasons, [reason]);
  });

  itFromEveryState(
    "a cancelled child that then fails with its own error: a failure, as asyncio reports what a cancelled child raises",
    async () => {
      let child: Task<never> | undefined;
      const error = await rejection(
        taskGroup((g) => {
          g.createTask(() => sleep(5).then(divideByZero));
          child = g.createTask(async (signal) => {
            await new Promise((resolve) => signal.addEventListener("abort", resolve));
            throw new MyExc("after being cancelled");
          });
        }),
      );
      assert.deepEqual(errorTypes(error), new Set([RangeError, MyExc]));
      assert.match(
        (error as Error).message,
        /TaskGroup\("TaskGroup-\d+"\) failed: 2 unhandled errors/,
      );
      assert.equal(child?.cancelled, true, "the task itself still settled as cancelled");
    },
  );

  itFromEveryState(
    "test_taskgroup_08: children cancelled by the outer signal that fail in their cleanup: the group rejects with those failures",
    async () => {
      const outer = new AbortController();
      const foo = async (signal: AbortSignal) => {
        try {
          await sleep(10_000, undefined, { signal });
        } finally {
          divideByZero();
        }
      };
      const runner = (async () => {
        await using g = new TaskGroup({ signal: outer.signal });
        for (let i = 0; i < 5; i++) g.createTask(foo);
        await sleep(10_000, undefined, { signal: g.signal }).catch(() => {});
      })();
      await sleep(10);
      outer.abort();
      const error = await rejection(runner);
      assert.deepEqual(errorTypes(error), new Set([RangeError]));
      assert.equal((error as AggregateError).errors.length, 5);
    },
  );

  it("a child cancelled by the user that then fails: a failure, which cancels the other children", async () => {
    let other: Task<void> | undefined;
    const error = await rejection(
      taskGroup(async (g) => {
        const child = g.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          throw new MyExc("cleanup failed");
        });
        other = g.createTask((signal) => sleep(10_000, undefined, { signal }));
        await sleep(1);
        child.cancel();
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([MyExc]));
    assert.equal(other?.cancelled, true);
  });

  it("a cancelled child that fails with its cancellation (the reason, or an AbortError caused by it) or returns: no failure", async () => {
    const reasons: unknown[] = [];
    await taskGroup(async (g) => {
      const children = [
        g.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          signal.throwIfAborted();
        }),
        g.createTask((signal) => sleep(10_000, undefined, { signal })),
        g.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          return "swallowed the cancel";
        }),
      ];
      await sleep(1);
      for (const child of children) {
        child.cancel(new Error("stop"));
        child.catch((e: unknown) => reasons.push(e));
      }
    });
    assert.equal(reasons.length, 3);
  });

  // A group whose child, once the group cancels it for a sibling's failure,
  // asks `groupOf(outer, signal)` (called before the child waits) for a task
  // and rethrows the refusal: what the group rejects with, and the refusal.
  async function childRefusedAfterCancel(
    groupOf: (outer: TaskGroup, signal: AbortSignal) => TaskGroup,
  ): Promise<{ error: unknown; refusal: unknown }> {
    let refusal: unknown;
    const error = await rejection(
      taskGroup((outer) => {
        outer.createTask(async (signal) => {
          const group = groupOf(outer, signal);
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          try {
            group.createTask(() => 1);
          } catch (e) {
            refusal = e;
            throw e;
          }
        });
        outer.createTask(() => sleep(1).then(divideByZero));
      }),
    );
    return { error, refusal };
  }

  it("a cancelled child calling createTask after the group shut down: the refusal is its cancellation, no failure", async () => {
    const { error, refusal } = await childRefusedAfterCancel((outer) => outer);
    assert.ok(refusal instanceof TaskGroupClosedError);
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal((error as AggregateError).errors.length, 1);
  });

  it("a cancelled child whose own group, given the child's signal, refuses it a task: that refusal is its cancellation too, no failure", async () => {
    // The inner group shut down because the outer one cancelled the child
    // (new TaskGroup({ signal }), as docs/semantics.md says to pass a signal down).
    const { error, refusal } = await childRefusedAfterCancel(
      (_outer, signal) => new TaskGroup({ name: "pages", signal }),
    );
    assert.ok(refusal instanceof TaskGroupClosedError);
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal((error as AggregateError).errors.length, 1);
  });

  it("the body running into the refusal of a group given its group's signal: no failure", async () => {
    let refusal: unknown;
    const error = await rejection(
      taskGroup(async (outer) => {
        const inner = new TaskGroup({ name: "pages", signal: outer.signal });
        outer.createTask(() => sleep(1).then(divideByZero));
        await new Promise((resolve) => outer.signal.addEventListener("abort", resolve));
        try {
          inner.createTask(() => 1);
        } catch (e) {
          refusal = e;
          throw e;
        }
      }),
    );
    assert.ok(refusal instanceof TaskGroupClosedError);
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.equal((error as AggregateError).errors.length, 1);
  });

  it("a cancelled child running into the refusal of a group that shut down for a failure of its own: a failure", async () => {
    const other = new TaskGroup({ name: "other" });
    await other.createTask(() => Promise.reject(new MyExc("other's"))).then(undefined, () => {});
    const otherFailed = rejection(other.wait());
    const { error } = await childRefusedAfterCancel(() => other);
    assert.deepEqual(errorTypes(error), new Set([RangeError, TaskGroupClosedError]));
    assert.deepEqual(errorTypes(await otherFailed), new Set([MyExc]));
  });

  it("a cancelled child failing with an exotic error (a Proxy whose getPrototypeOf trap throws): a failure, and the group still settles", async () => {
    const exotic = new Proxy(new Error("exotic"), {
      getPrototypeOf() {
        throw new Error("trap");
      },
    });
    const error = await rejection(
      taskGroup(async (g) => {
        const child = g.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          throw exotic;
        });
        await sleep(1);
        child.cancel();
      }),
    );
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(error.errors, [exotic]);
  });

  for (const [title, delay] of [
    ["test_taskgroup_09", 10],
    ["test_taskgroup_10", 0],
  ] as const) {
    itFromEveryState(
      `${title}: a throw in the body cancels the children and joins the AggregateError`,
      async () => {
        const tasks: Task<number>[] = [];
        const error = await rejection(
          taskGroup(async (g) => {
            tasks.push(g.createTask((signal) => sleep(1000, 42, { signal })));
            tasks.push(g.createTask((signal) => sleep(2000, 11, { signal })));
            if (delay > 0) await sleep(delay);
            divideByZero();
          }),
        );
        assert.deepEqual(errorTypes(error), new Set([RangeError]));
        assert.ok(tasks.every((t) => t.cancelled));
      },
    );
  }

  it("test_taskgroup_14: an inner group's AggregateError nests in the outer one", async () => {
    const crashAfter = async (t: number, signal: AbortSignal) => {
      await sleep(t, undefined, { signal });
      throw new MyExc(String(t));
    };
    const error = await rejection(
      taskGroup(async (g1) => {
        g1.createTask((signal) => crashAfter(10_000, signal));
        await taskGroup((g2) => {
          g2.createTask((signal) => crashAfter(5, signal));
        });
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([AggregateError]));
    assert.deepEqual(errorTypes((error as AggregateError).errors[0]), new Set([MyExc]));
  });

  itFromEveryState(
    "test_taskgroup_19: an error the body raises after the cancel is kept",
    async () => {
      const error = await rejection(
        taskGroup(async (g) => {
          g.createTask(() => sleep(5).then(divideByZero));
          try {
            await sleep(10_000, undefined, { signal: g.signal });
          } finally {
            // biome-ignore lint/correctness/noUnsafeFinally: the port raises in finally on purpose
            throw new MyExc();
          }
        }),
      );
      assert.deepEqual(errorTypes(error), new Set([MyExc, RangeError]));
    },
  );

  it("test_taskgroup_25: hydra, hercules", async () => {
    let nhydras = 0;
    const hydra = async (g: TaskGroup, signal: AbortSignal) => {
      nhydras += 1;
      await sleep(1, undefined, { signal });
      g.createTask((s) => hydra(g, s));
      g.createTask((s) => hydra(g, s));
    };
    const error = await rejection(
      taskGroup((g) => {
        g.createTask((s) => hydra(g, s));
        g.createTask(async () => {
          while (nhydras < 10) await sleep(2);
          divideByZero();
        });
      }),
    );
    assert.deepEqual(errorTypes(error), new Set([RangeError]));
    assert.ok(nhydras >= 10);
  });

  itFromEveryState("test_cancels_task_if_created_during_creation (gh-128550)", async () => {
    let ran = false;
    let secondSignal: AbortSignal | undefined;
    const error = await rejection(
      taskGroup((tg) => {
        tg.createTask(async (signal) => {
          secondSignal = signal;
          tg.createTask(() => {
            throw new MyExc("third task failed");
          });
          await sleep(0);
          ran = true;
        });
      }),
    );
    assert.equal(ran, true);
    assert.equal(secondSignal?.aborted, true);
    assert.deepEqual(errorTypes(error), new Set([MyExc]));
  });

  itFromEveryState("test_cancellation_does_not_leak_out_of_tg", async () => {
    const before = currentTask();
    await rejection(taskGroup((tg) => void tg.createTask(() => Promise.reject(new MyExc()))));
    assert.equal(currentTask(), before);
    assert.equal(before?.signal.aborted ?? false, false);
  });
});
