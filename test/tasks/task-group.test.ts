// TaskGroup: waiting, contexts, names and closing; ports of CPython's
// Lib/test/test_asyncio/test_taskgroups.py (delays shortened; ZeroDivisionError
// is a RangeError here, ExceptionGroup an AggregateError). Failures and what
// they cancel: task-group-failures.test.ts.

import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";
import {
  ContextVar,
  copyContext,
  currentTask,
  type Task,
  TaskGroup,
  TaskGroupClosedError,
  taskGroup,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

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

describe("TaskGroup: waiting", () => {
  itFromEveryState("test_taskgroup_01: wait() settles once every child has", async () => {
    const tg = new TaskGroup();
    const t1 = tg.createTask(() => sleep(10, 42));
    const t2 = tg.createTask(() => sleep(20, 11));
    await tg.wait();
    assert.ok(t1.done && t2.done);
    assert.deepEqual([await t1, await t2], [42, 11]);
  });

  it("test_taskgroup_02: a child added later is waited for too", async () => {
    let t2: Task<number> | undefined;
    const t1 = await taskGroup(async (g) => {
      const t1 = g.createTask(() => sleep(10, 42));
      await sleep(15);
      t2 = g.createTask(() => sleep(20, 11));
      return t1;
    });
    assert.equal(t2?.done, true);
    assert.deepEqual([await t1, await t2], [42, 11]);
  });

  it("test_taskgroup_03: a child cancelled explicitly is not a failure", async () => {
    const g = new TaskGroup();
    const t1 = g.createTask((signal) => sleep(1000, 42, { signal }));
    await sleep(5);
    t1.cancel();
    const t2 = g.createTask(() => sleep(5, 11));
    await g.wait();
    assert.equal(t1.cancelled, true);
    assert.equal(await t2, 11);
  });

  it("test_taskgroup_24: children created by a child are waited for", async () => {
    const finished: number[] = [];
    const coro1 = async (delay: number) => {
      await sleep(delay);
      finished.push(delay);
    };
    await taskGroup((g) => {
      g.createTask(async () => {
        await sleep(5);
        g.createTask(() => coro1(5));
        g.createTask(() => coro1(10));
      });
    });
    assert.deepEqual(finished, [5, 10]);
  });

  it("wait() returns the same promise; `await using` waits at scope exit", async () => {
    let done = false;
    {
      await using tg = new TaskGroup();
      tg.createTask(async () => {
        await sleep(5);
        done = true;
      });
      assert.equal(tg.wait(), tg.wait());
    }
    assert.equal(done, true);
  });

  it("`await using` does not see a throw from its block: the children are not cancelled, and the throw comes once they finish (taskGroup cancels them)", async () => {
    const body = new Error("body");
    const outcomes: string[] = [];
    const child = async (signal: AbortSignal) => {
      try {
        await sleep(30, undefined, { signal });
        outcomes.push("finished");
      } catch (error) {
        outcomes.push("cancelled");
        throw error;
      }
    };
    const started = performance.now();
    const usingError = await rejection(
      (async () => {
        await using tg = new TaskGroup();
        tg.createTask(child);
        await sleep(1);
        throw body;
      })(),
    );
    assert.equal(usingError, body);
    assert.deepEqual(outcomes, ["finished"]);
    assert.ok(performance.now() - started >= 25, "the throw waited for the child");

    // The block's throw and a child's failure: a SuppressedError holds both.
    const failed = new RangeError("child failed");
    const both = await rejection(
      (async () => {
        await using tg = new TaskGroup();
        tg.createTask(async () => {
          await sleep(5);
          throw failed;
        });
        throw body;
      })(),
    );
    assert.equal((both as Error).name, "SuppressedError");
    assert.equal((both as { suppressed: unknown }).suppressed, body);
    assert.deepEqual(((both as { error: unknown }).error as AggregateError).errors, [failed]);

    // async with asyncio.TaskGroup() cancels the children at the throw, as taskGroup does.
    outcomes.length = 0;
    const grouped = await rejection(
      taskGroup(async (tg) => {
        tg.createTask(child);
        await sleep(1);
        throw body;
      }),
    );
    assert.deepEqual((grouped as AggregateError).errors, [body]);
    assert.deepEqual(outcomes, ["cancelled"]);
  });

  it("`await using` with an explicit wait() as well: the scope's exit rejects with wait()'s reason again, also after the block caught it (the contract's asyncDispose = wait(); pinned)", async () => {
    const failed = new RangeError("child failed");
    const failing = async () => {
      await sleep(2);
      throw failed;
    };
    // Caught inside the block, the failure still ends the scope.
    const caught = await rejection(
      (async () => {
        await using tg = new TaskGroup();
        tg.createTask(failing);
        try {
          await tg.wait();
        } catch {
          return "fallback";
        }
        return "finished";
      })(),
    );
    assert.deepEqual((caught as AggregateError).errors, [failed]);
    // Not caught: a SuppressedError holding the one AggregateError twice.
    const twice = await rejection(
      (async () => {
        await using tg = new TaskGroup();
        tg.createTask(failing);
        await tg.wait();
      })(),
    );
    assert.equal((twice as Error).name, "SuppressedError");
    const { error, suppressed } = twice as { error: unknown; suppressed: unknown };
    assert.equal(error, suppressed);
    assert.deepEqual((error as AggregateError).errors, [failed]);
    // taskGroup(body) reports it once.
    const once = await rejection(taskGroup(async (tg) => tg.createTask(failing)));
    assert.deepEqual((once as AggregateError).errors, [failed]);
  });
});

describe("TaskGroup: contexts and names", () => {
  itFromEveryState(
    "children run in their own copies; the body and siblings see none of their sets",
    async () => {
      const v = new ContextVar<string>("v");
      v.set("body");
      const results = await taskGroup(async (tg) => {
        const children = ["a", "b", "c"].map((name) =>
          tg.createTask(async () => {
            assert.equal(v.get(), "body");
            v.set(name);
            await sleep(5);
            return v.get();
          }),
        );
        v.set("body later");
        return Promise.all(children);
      });
      assert.deepEqual(results, ["a", "b", "c"]);
      assert.equal(v.get(), "body later");
    },
  );

  itFromEveryState("test_taskgroup_task_context", async () => {
    const cvar = new ContextVar<number>("cvar");
    const coro = async (val: number) => {
      await sleep(0);
      cvar.set(val);
    };
    await taskGroup(async (g) => {
      const ctx = copyContext();
      assert.equal(ctx.get(cvar), undefined);
      await g.createTask(() => coro(1), { context: ctx });
      assert.equal(ctx.get(cvar), 1);
      await g.createTask(() => coro(2), { context: ctx });
      assert.equal(ctx.get(cvar), 2);
    });
  });

  it("test_taskgroup_task_name and test_name", async () => {
    let name: string | undefined;
    await taskGroup((g) => {
      const t = g.createTask(
        () => {
          name = currentTask()?.name;
        },
        { name: "yolo" },
      );
      assert.equal(t.name, "yolo");
    });
    assert.equal(name, "yolo");
  });
});

describe("TaskGroup: finished as soon as wait() finds no child left", () => {
  itFromEveryState("wait() with no child: createTask right after it throws, closed", async () => {
    const group = new TaskGroup();
    const waiting = group.wait();
    assert.throws(
      () => group.createTask(async () => sleep(1)),
      (e) => e instanceof TaskGroupClosedError && /finished/.test(e.message),
    );
    await waiting;
  });

  itFromEveryState(
    "a child created after the last one settled, before wait() resumes: refused, not lost",
    async () => {
      const group = new TaskGroup();
      let refused: unknown;
      const last = group.createTask(() => sleep(1));
      const waiting = group.wait();
      // Runs after the last child settled and before wait()'s continuation.
      last.then(async () => {
        await null;
        try {
          group.createTask(async () => {
            await sleep(5);
            throw new Error("would be lost");
          });
        } catch (error) {
          refused = error;
        }
      });
      await waiting;
      assert.ok(refused instanceof TaskGroupClosedError);
    },
  );

  itFromEveryState("children created while wait() waits on others are waited for", async () => {
    const group = new TaskGroup();
    const order: string[] = [];
    group.createTask(async () => {
      await sleep(1);
      group.createTask(async () => {
        await sleep(5);
        order.push("late child");
      });
      order.push("first child");
    });
    await group.wait();
    order.push("wait");
    assert.deepEqual(order, ["first child", "late child", "wait"]);
  });

  itFromEveryState(
    "a child that calls wait() in its synchronous start is waited for, and its failure reported",
    async () => {
      const group = new TaskGroup();
      const failure = new Error("child failed");
      let finished = false;
      group.createTask(async () => {
        void group.wait().catch(() => {});
        await sleep(5);
        finished = true;
        throw failure;
      });
      await assert.rejects(
        group.wait(),
        (e) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === failure,
      );
      assert.equal(finished, true);
    },
  );
});

describe("TaskGroup: how it shows", () => {
  it("toString, toStringTag, and inspect with the state and pending children", async () => {
    const group = new TaskGroup({ name: "fetches" });
    assert.equal(String(group), 'TaskGroup("fetches")');
    assert.equal(Object.prototype.toString.call(group), "[object TaskGroup]");
    assert.equal(inspect(group), '<TaskGroup name="fetches" open tasks=0>');
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    group.createTask(() => gate);
    group.createTask(() => gate);
    assert.equal(inspect(group), '<TaskGroup name="fetches" open tasks=2>');
    open();
    await group.wait();
    assert.equal(inspect(group), '<TaskGroup name="fetches" closed tasks=0>');
  });

  it("an empty name is kept", () => {
    const group = new TaskGroup({ name: "" });
    assert.equal(group.name, "");
    assert.equal(String(group), 'TaskGroup("")');
  });
});

describe("TaskGroup: closed", () => {
  itFromEveryState(
    "test_taskgroup_no_create_task_after_failure: ERR_TASK_GROUP_CLOSED while shutting down",
    async () => {
      let closedError: unknown;
      let thirdRan = false;
      const error = await rejection(
        taskGroup((g) => {
          g.createTask(() => sleep(1).then(divideByZero));
          g.createTask(async (signal) => {
            await new Promise((resolve) => signal.addEventListener("abort", resolve));
            try {
              g.createTask(() => (thirdRan = true));
            } catch (e) {
              closedError = e;
            }
          });
        }),
      );
      assert.deepEqual(errorTypes(error), new Set([RangeError]));
      assert.ok(closedError instanceof TaskGroupClosedError);
      assert.equal(closedError.code, "ERR_TASK_GROUP_CLOSED");
      assert.match(
        closedError.message,
        /TaskGroup\("TaskGroup-\d+"\) is shutting down after a failure or cancel; /,
      );
      // Not the finished group's advice: wait() has not settled, and could not help.
      assert.doesNotMatch(closedError.message, /before wait\(\) settles/);
      assert.match(closedError.message, /group\.signal/);
      assert.equal(thirdRan, false);
    },
  );

  itFromEveryState(
    "test_taskgroup_finished: ERR_TASK_GROUP_CLOSED once wait() settled; fn never runs",
    async () => {
      const tg = new TaskGroup({ name: "fetches" });
      await tg.wait();
      let ran = false;
      assert.throws(
        () => tg.createTask(() => (ran = true)),
        (e: unknown) =>
          e instanceof TaskGroupClosedError &&
          e.code === "ERR_TASK_GROUP_CLOSED" &&
          e.message.includes('TaskGroup("fetches") is finished') &&
          e.message.includes("create tasks before wait() settles"),
      );
      assert.equal(ran, false);
    },
  );
});

describe("TaskGroup: bad input", () => {
  const cases: [string, () => unknown, RegExp][] = [
    ["options not an object", () => new TaskGroup(5 as never), /`options`/],
    ["options null", () => new TaskGroup(null as never), /`options`/],
    ["options.name not a string", () => new TaskGroup({ name: 5 as never }), /`options\.name`/],
    [
      "options.signal not an AbortSignal",
      () => new TaskGroup({ signal: {} as never }),
      /`options\.signal`/,
    ],
    ["createTask(fn) not a function", () => new TaskGroup().createTask(1 as never), /`fn`/],
    [
      "createTask options.context not a Context",
      () => new TaskGroup().createTask(() => {}, { context: {} as never }),
      /`options\.context`/,
    ],
    ["taskGroup(body) not a function", () => taskGroup(null as never), /`body`/],
    [
      "taskGroup(body, { signal }) not an AbortSignal",
      () => taskGroup(() => {}, { signal: {} as never }),
      /`options\.signal`/,
    ],
  ];
  for (const [title, call, message] of cases) {
    it(`${title}: TypeError naming the argument`, async () => {
      // taskGroup is async, so its TypeError arrives as a rejection.
      await assert.rejects(
        async () => call(),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
    });
  }

  it("a createTask that throws on its options leaves the group open: later children run, and wait() settles", async () => {
    const group = new TaskGroup();
    assert.throws(() => group.createTask(() => {}, { name: 5 as never }), TypeError);
    const child = group.createTask(async () => "ran");
    await group.wait();
    assert.equal(await child, "ran");
  });

  it("options.signal is read once: the signal checked is the signal listened to", async () => {
    let reads = 0;
    const outer = new AbortController();
    const group = new TaskGroup({
      get signal() {
        return reads++ === 0 ? outer.signal : ({} as never);
      },
    });
    assert.equal(reads, 1);
    const child = group.createTask((signal) => sleep(60_000, undefined, { signal }));
    const reason = new Error("outer");
    outer.abort(reason);
    await assert.rejects(group.wait(), (e) => e === reason);
    assert.equal(child.cancelled, true);
    assert.equal(reads, 1);
  });

  it("options.name is read once: the name checked is the name kept", async () => {
    let reads = 0;
    const unprintable = {
      toJSON() {
        throw new Error("toJSON");
      },
    };
    const group = new TaskGroup({
      get name() {
        return reads++ === 0 ? "checked" : (unprintable as never);
      },
    });
    assert.equal(reads, 1);
    assert.equal(group.name, "checked");
    const failure = new Error("child failed");
    group.createTask(async () => {
      throw failure;
    });
    await assert.rejects(
      group.wait(),
      (e) => e instanceof AggregateError && /^TaskGroup\("checked"\) failed/.test(e.message),
    );
  });
});

describe("TaskGroup: an outer signal", () => {
  it("aborting it cancels every child with its reason; the group shuts down, and wait() rejects with that reason once they settle", async () => {
    const outer = new AbortController();
    const tg = new TaskGroup({ name: "outer", signal: outer.signal });
    const early = tg.signal;
    const child = tg.createTask(
      (signal) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    );
    const reason = new Error("shutdown");
    outer.abort(reason);
    assert.equal(child.cancelled, true);
    assert.equal(inspect(tg), '<TaskGroup name="outer" aborting tasks=1>');
    assert.equal(await rejection(child), reason, "the outer signal's reason, not an AbortError");
    assert.equal(early.reason, reason);
    assert.equal(tg.signal, early, "one signal, however often it is read");
    assert.throws(
      () => tg.createTask(() => 1),
      (e: unknown) => e instanceof TaskGroupClosedError && /is shutting down/.test(e.message),
    );
    await assert.rejects(tg.wait(), (e) => e === reason);
    assert.equal(inspect(tg), '<TaskGroup name="outer" closed tasks=0>');
  });

  it("taskGroup(body) whose body and children go on creating tasks after it aborted: wait() rejects with its reason, the refusals are no failures", async () => {
    const outer = new AbortController();
    const reason = new Error("crawl stopped");
    const refusals: unknown[] = [];
    const spawn = (tg: TaskGroup) => {
      try {
        tg.createTask((signal) => sleep(10_000, undefined, { signal }));
      } catch (e) {
        refusals.push(e);
        throw e;
      }
    };
    await assert.rejects(
      taskGroup(
        async (tg) => {
          spawn(tg);
          // A child that goes on to its next page without looking at its signal.
          tg.createTask(async (signal) => {
            await new Promise((resolve) => signal.addEventListener("abort", resolve));
            spawn(tg);
          });
          outer.abort(reason);
          // The body's own loop, one step later.
          await Promise.resolve();
          spawn(tg);
        },
        { signal: outer.signal },
      ),
      (e) => e === reason,
    );
    assert.equal(refusals.length, 2);
    assert.ok(refusals.every((e) => e instanceof TaskGroupClosedError));
  });

  itFromEveryState(
    "under await using, aborted while its children run: the scope ends with the reason, what follows the block never runs, and the caller's values are as they were",
    async () => {
      const user = new ContextVar<string>("user");
      const outer = new AbortController();
      const reason = new Error("client went away");
      const seen: string[] = [];
      let after = false;
      const handler = user.run("alice", async () => {
        await using tg = new TaskGroup({ signal: outer.signal });
        for (const name of ["p", "q"]) {
          tg.createTask(async (signal) => {
            user.set(name);
            await sleep(10_000, undefined, { signal }).catch(() => {});
            seen.push(`${name} cancelled in ${user.get()}`);
          });
        }
        setTimeout(() => outer.abort(reason), 2);
        await sleep(1);
        after = user.get() === "alice";
      });
      await assert.rejects(handler, (e) => e === reason);
      assert.equal(after, true, "the block itself ran to its end");
      assert.deepEqual(seen.sort(), ["p cancelled in p", "q cancelled in q"]);
      assert.equal(user.get("<unset>"), "<unset>");
      // A handler that goes on after the block only when the group finished its work.
      let wrote = false;
      const aborted = new AbortController();
      aborted.abort(reason);
      await assert.rejects(
        (async () => {
          {
            await using tg = new TaskGroup({ signal: aborted.signal });
            void tg;
          }
          wrote = true;
        })(),
        (e) => e === reason,
      );
      assert.equal(wrote, false);
    },
  );

  itFromEveryState(
    "taskGroup(body, { signal, name }): aborting it cancels the children in their own Contexts; the body's await of a cancelled child is no failure; taskGroup rejects with the reason, the body's sets stay in the caller's Context",
    async () => {
      const v = new ContextVar<string>("v");
      const outer = new AbortController();
      const reason = new Error("client went away");
      const seen: string[] = [];
      let groupName = "";
      let after = false;
      const outcome = v.run("caller", () =>
        taskGroup(
          async (tg) => {
            groupName = String(tg);
            v.set("body");
            const children = ["p", "q"].map((name) =>
              tg.createTask(async (signal) => {
                v.set(name);
                await new Promise((resolve) => signal.addEventListener("abort", resolve));
                seen.push(`${name} cancelled in ${v.get()}`);
                throw signal.reason;
              }),
            );
            setTimeout(() => outer.abort(reason), 2);
            await children[0];
            after = true;
          },
          { signal: outer.signal, name: "fan-out" },
        ),
      );
      await assert.rejects(outcome, (e) => e === reason);
      assert.equal(groupName, 'TaskGroup("fan-out")');
      assert.equal(after, false, "the body's await of a cancelled child rethrew the reason");
      assert.deepEqual(seen.sort(), ["p cancelled in p", "q cancelled in q"]);
      assert.equal(v.get("<unset>"), "<unset>");
      // A child that fails as the signal aborts wins: the AggregateError holds it alone.
      const failure = new Error("broke while cancelled");
      const both = new AbortController();
      await assert.rejects(
        taskGroup(
          (tg) => {
            tg.createTask(async (signal) => {
              await new Promise((resolve) => signal.addEventListener("abort", resolve));
              throw failure;
            });
            both.abort(reason);
          },
          { signal: both.signal },
        ),
        (e) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === failure,
      );
      // An already-aborted signal: the body runs, any child it makes is refused, and the reason is the outcome.
      let ran = false;
      await assert.rejects(
        taskGroup(
          (tg) => {
            ran = true;
            assert.throws(() => tg.createTask(() => 1), TaskGroupClosedError);
          },
          { signal: AbortSignal.abort(reason) },
        ),
        (e) => e === reason,
      );
      assert.equal(ran, true);
    },
  );

  it("one aborted already: the group starts shutting down, its signal aborted with that reason", async () => {
    const reason = new Error("too late");
    const tg = new TaskGroup({ name: "late", signal: AbortSignal.abort(reason) });
    assert.equal(inspect(tg), '<TaskGroup name="late" aborting tasks=0>');
    assert.equal(tg.signal.aborted, true);
    assert.equal(tg.signal.reason, reason);
    let ran = false;
    assert.throws(
      () => tg.createTask(() => (ran = true)),
      (e: unknown) => e instanceof TaskGroupClosedError && /is shutting down/.test(e.message),
    );
    assert.equal(ran, false);
    // As fetch given an aborted signal: wait() rejects with its reason, with no child to wait for.
    await assert.rejects(tg.wait(), (e) => e === reason);
  });

  it("aborted by a child's synchronous start: that child is cancelled too, with its reason", async () => {
    const outer = new AbortController();
    const tg = new TaskGroup({ signal: outer.signal });
    const reason = new Error("stop");
    let slept: Promise<unknown> | undefined;
    const child = tg.createTask((signal) => {
      outer.abort(reason);
      slept = sleep(1_000, "not cancelled", { signal });
      return slept;
    });
    assert.equal(child.cancelled, true);
    assert.equal(child.signal.reason, reason);
    assert.equal(await rejection(child), reason);
    await assert.rejects(tg.wait(), (e) => e === reason);
    // wait() settled because the child heeded its signal, not because the sleep ran out.
    assert.equal(((await rejection(slept as Promise<unknown>)) as Error).name, "AbortError");
  });
});

describe("TaskGroup: a child whose function returns an exotic object", () => {
  const late = new Error("late");

  itFromEveryState(
    "a promise whose then getter throws: the child rejects as an async function's promise would; createTask does not throw",
    async () => {
      const group = new TaskGroup();
      let child: Task<unknown> | undefined;
      assert.doesNotThrow(() => {
        child = group.createTask(() => {
          const p = Promise.resolve("never seen");
          // biome-ignore lint/suspicious/noThenProperty: a malformed promise on purpose
          Object.defineProperty(p, "then", {
            get() {
              throw late;
            },
          });
          return p;
        });
      });
      await assert.rejects(child as Task<unknown>, (e) => e === late);
      await assert.rejects(
        group.wait(),
        (e) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === late,
      );
    },
  );

  itFromEveryState(
    "a Proxy whose getPrototypeOf trap throws: the child fulfils with it, as Promise.resolve does",
    async () => {
      const proxy = new Proxy(
        {},
        {
          getPrototypeOf() {
            throw late;
          },
        },
      );
      const group = new TaskGroup();
      let child: Task<unknown> | undefined;
      assert.doesNotThrow(() => {
        child = group.createTask(() => proxy);
      });
      await group.wait();
      assert.equal(await child, proxy);
    },
  );
});

describe("TaskGroup: what it reports, and what it leaves", () => {
  it("a body that awaits a failed child and rethrows reports the failure once", async () => {
    const boom = new Error("boom");
    await assert.rejects(
      taskGroup(async (tg) => {
        await tg.createTask(async () => {
          throw boom;
        });
      }),
      (e: unknown) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === boom,
    );
  });

  it("a cancelled child whose cleanup rethrows the body's failure reports it once", async () => {
    const boom = new Error("boom");
    await assert.rejects(
      taskGroup(async (tg) => {
        tg.createTask(async (signal) => {
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          throw boom;
        });
        await sleep(1);
        throw boom;
      }),
      (e: unknown) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === boom,
    );
  });

  it("later failures keep the first cancel reason: a cancelled child awaited by the body is not a failure", async () => {
    const e1 = new Error("e1");
    const e2 = new Error("e2");
    await assert.rejects(
      taskGroup(async (tg) => {
        const slow = tg.createTask((signal) => sleep(1000, undefined, { signal }));
        tg.createTask(async () => {
          throw e1;
        });
        tg.createTask(async () => {
          throw e2;
        });
        await slow;
      }),
      (e: unknown) => e instanceof AggregateError && e.errors.length === 2 && e.errors.includes(e1),
    );
  });

  it("the AggregateError's message counts the failures: 1 unhandled error, 2 unhandled errors", async () => {
    const one = new TaskGroup({ name: "one" });
    one.createTask(divideByZero);
    const e1 = await rejection(one.wait());
    assert.equal((e1 as Error).message, 'TaskGroup("one") failed: 1 unhandled error');
    const two = new TaskGroup({ name: "two" });
    two.createTask(divideByZero);
    two.createTask(divideByZero);
    const e2 = await rejection(two.wait());
    assert.equal((e2 as Error).message, 'TaskGroup("two") failed: 2 unhandled errors');
  });

  it("a failure aborts group.signal with an AbortError as AbortController.abort() makes it, read before or after", async () => {
    const tg = new TaskGroup();
    const early = tg.signal;
    tg.createTask(divideByZero);
    await rejection(tg.wait());
    assert.equal(tg.signal, early, "one signal, however often it is read");
    const reason = early.reason as DOMException;
    assert.ok(reason instanceof DOMException);
    assert.equal(reason.name, "AbortError");
    assert.equal(reason.message, "This operation was aborted");
  });

  it("a finished group leaves no listener on its outer signal", async () => {
    const outer = new AbortController();
    const tg = new TaskGroup({ signal: outer.signal });
    tg.createTask(() => 1);
    assert.equal(getEventListeners(outer.signal, "abort").length, 1);
    await tg.wait();
    assert.equal(getEventListeners(outer.signal, "abort").length, 0);
  });
});
