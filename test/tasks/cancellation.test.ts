// Cancellation: Task.cancel, the `signal` option, and TaskGroup children.
// Ports test_cancellation, test_taskgroup_07, _13 and _18 of CPython's
// Lib/test/test_asyncio/test_taskgroups.py, with the cancelled "parent task"
// played by an AbortSignal handed to the group.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  ContextVar,
  createTask,
  gather,
  type Task,
  TaskGroup,
  TaskGroupClosedError,
  taskGroup,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Runs an ESM script in a child process; resolves with the messages of its unhandled rejections. */
async function unhandledRejectionsOf(script: string): Promise<string[]> {
  const prelude = `const seen = []; process.on("unhandledRejection", (r) => seen.push(String(r?.message ?? r)));
process.on("exit", () => console.log(JSON.stringify(seen)));\n`;
  const args = ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module"];
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [...args, "-e", prelude + script],
    {
      cwd: root,
    },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "[]") as string[];
}

const untilAborted = (signal: AbortSignal) =>
  new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));

/** A live AbortSignal whose own removeEventListener throws. */
function signalWhoseRemoveThrows(): AbortSignal {
  const signal = new AbortController().signal;
  Object.defineProperty(signal, "removeEventListener", {
    value() {
      throw new Error("removeEventListener threw");
    },
  });
  return signal;
}

describe("Task.cancel", () => {
  itFromEveryState(
    "aborts the signal; the task rejects with the signal's AbortError by default",
    async () => {
      const task = createTask(untilAborted);
      assert.equal(task.cancel(), true);
      assert.equal(task.signal.aborted, true);
      assert.ok(task.signal.reason instanceof DOMException);
      assert.equal(task.signal.reason.name, "AbortError");
      await assert.rejects(task, (e) => e === task.signal.reason);
      assert.equal(task.done, true);
      assert.equal(task.cancelled, true);
      assert.equal(task.cancel(), false);
    },
  );

  itFromEveryState(
    "cancel(reason) rejects with that reason; a done task cannot be cancelled",
    async () => {
      const reason = new Error("not needed");
      const task = createTask(untilAborted);
      task.cancel(reason);
      await assert.rejects(task, (e) => e === reason);
      assert.equal(task.signal.reason, reason);
      const finished = createTask(async () => "value");
      assert.equal(await finished, "value");
      assert.equal(finished.cancel(), false);
      assert.equal(finished.cancelled, false);
      assert.equal(await finished, "value");
    },
  );

  itFromEveryState(
    "abort listeners run in the task's Context; fn goes on until it heeds",
    async () => {
      const v = new ContextVar<string>("v");
      v.set("creator");
      const log: string[] = [];
      // fn waits on a gate, not a timer, so a slow machine cannot let it finish before the cancel.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const task = createTask(async (signal) => {
        v.set("task");
        signal.addEventListener("abort", () => log.push(`listener sees ${v.get()}`));
        await gate;
        log.push("fn went on");
      });
      await sleep(1);
      task.cancel();
      await assert.rejects(task);
      assert.deepEqual(log, ["listener sees task"]);
      release();
      await sleep(1);
      assert.deepEqual(log, ["listener sees task", "fn went on"]);
      assert.equal(v.get(), "creator");
    },
  );

  itFromEveryState(
    "cancelling one of two siblings with equal delays leaves the other",
    async () => {
      const v = new ContextVar<string>("v");
      const worker = (name: string) => async (signal: AbortSignal) => {
        v.set(name);
        await sleep(5, undefined, { signal });
        return v.get();
      };
      const a = createTask(worker("a"));
      const b = createTask(worker("b"));
      a.cancel();
      assert.equal(await b, "b");
      assert.equal(a.cancelled, true);
      assert.equal(b.cancelled, false);
    },
  );
});

describe("the signal option", () => {
  itFromEveryState(
    "an outer signal cancels the task with its reason; its listener goes",
    async () => {
      const outer = new AbortController();
      const task = createTask(untilAborted, { signal: outer.signal });
      assert.equal(getEventListeners(outer.signal, "abort").length, 1);
      const reason = new Error("shutdown");
      outer.abort(reason);
      await assert.rejects(task, (e) => e === reason);
      assert.equal(task.signal.reason, reason);
      assert.equal(task.cancelled, true);
      assert.equal(getEventListeners(outer.signal, "abort").length, 0);
    },
  );

  it("the outer signal's listener goes when the task finishes first", async () => {
    const outer = new AbortController();
    await createTask(async () => sleep(1), { signal: outer.signal });
    assert.equal(getEventListeners(outer.signal, "abort").length, 0);
  });

  itFromEveryState(
    "one signal shared by many tasks and groups: one listener, no MaxListenersExceededWarning, each cancelled in order",
    async () => {
      const warnings: string[] = [];
      const onWarning = (warning: Error) => warnings.push(warning.name);
      process.on("warning", onWarning);
      try {
        const outer = new AbortController();
        const order: string[] = [];
        const tasks = Array.from({ length: 15 }, (_, i) =>
          createTask(
            async (signal) => {
              signal.addEventListener("abort", () => order.push(`task ${i}`));
              await untilAborted(signal);
            },
            { signal: outer.signal },
          ),
        );
        const groups = Array.from({ length: 12 }, (_, i) => {
          const group = new TaskGroup({ signal: outer.signal });
          group.signal.addEventListener("abort", () => order.push(`group ${i}`));
          group.createTask(untilAborted);
          return group;
        });
        // The finished ones take their callbacks off; the listener stays for the rest.
        await createTask(async () => sleep(1), { signal: outer.signal });
        const spare = new TaskGroup({ signal: outer.signal });
        await spare.wait();
        assert.equal(getEventListeners(outer.signal, "abort").length, 1);
        const reason = new Error("request closed");
        outer.abort(reason);
        assert.deepEqual(order, [
          ...tasks.map((_, i) => `task ${i}`),
          ...groups.map((_, i) => `group ${i}`),
        ]);
        for (const task of tasks) await assert.rejects(task, (e) => e === reason);
        for (const group of groups) await assert.rejects(group.wait(), (e) => e === reason);
        assert.equal(getEventListeners(outer.signal, "abort").length, 0);
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(warnings, []);
      } finally {
        process.off("warning", onWarning);
      }
    },
  );

  it("a shared signal's listener goes when the last task or group using it settles first", async () => {
    const outer = new AbortController();
    const gates: (() => void)[] = [];
    const tasks = Array.from({ length: 12 }, () =>
      createTask(() => new Promise<void>((resolve) => gates.push(resolve)), {
        signal: outer.signal,
      }),
    );
    const group = new TaskGroup({ signal: outer.signal });
    group.createTask(() => sleep(1));
    assert.equal(getEventListeners(outer.signal, "abort").length, 1);
    for (const open of gates) open();
    await Promise.all(tasks);
    assert.equal(getEventListeners(outer.signal, "abort").length, 1, "the group still listens");
    await group.wait();
    assert.equal(getEventListeners(outer.signal, "abort").length, 0);
    // A signal left with no listener gets a new one for the next task.
    const late = createTask(untilAborted, { signal: outer.signal });
    assert.equal(getEventListeners(outer.signal, "abort").length, 1);
    outer.abort("late");
    await assert.rejects(late, (e) => e === "late");
  });

  itFromEveryState(
    "an already-aborted outer signal: fn never runs, the task is cancelled",
    async () => {
      let ran = false;
      const reason = new Error("too late");
      const task = createTask(() => (ran = true), { signal: AbortSignal.abort(reason) });
      assert.equal(task.done, true);
      assert.equal(task.cancelled, true);
      await assert.rejects(task, (e) => e === reason);
      assert.equal(ran, false);
    },
  );

  it("an already-aborted outer signal on a group's child: the group does not wait for the function that never ran", async () => {
    const tg = new TaskGroup();
    let ran = false;
    const child = tg.createTask(() => (ran = true), { signal: AbortSignal.abort() });
    assert.equal(child.cancelled, true);
    await tg.wait();
    assert.equal(ran, false);
  });

  it("an outer signal whose own removeEventListener throws: the task still settles, and its group hears of it", async () => {
    const task = createTask(async () => "done", { signal: signalWhoseRemoveThrows() });
    assert.equal(await task, "done");
    const failure = new Error("child failed");
    const group = new TaskGroup();
    group.createTask(
      async () => {
        throw failure;
      },
      { signal: signalWhoseRemoveThrows() },
    );
    await assert.rejects(
      group.wait(),
      (e) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === failure,
    );
  });

  it("a group's own outer signal whose removeEventListener throws: the group's outcome stands", async () => {
    const group = new TaskGroup({ signal: signalWhoseRemoveThrows() });
    const child = group.createTask(async () => "done");
    await group.wait();
    assert.equal(await child, "done");
    assert.equal(
      await taskGroup(async () => "body's", { signal: signalWhoseRemoveThrows() }),
      "body's",
    );
    const failure = new Error("child failed");
    await assert.rejects(
      taskGroup(
        async (g) => {
          g.createTask(async () => {
            throw failure;
          });
        },
        { signal: signalWhoseRemoveThrows() },
      ),
      (e) => e instanceof AggregateError && e.errors.length === 1 && e.errors[0] === failure,
    );
  });
});

describe("a task's children", () => {
  itFromEveryState(
    "cancelling a task does not cancel the tasks it started (asyncio's gather would); the same with its signal handed down does",
    async () => {
      let free: Task<string> | undefined;
      let tied: Task<unknown> | undefined;
      let group: TaskGroup | undefined;
      const parent = createTask(async (signal) => {
        free = createTask(async () => {
          await sleep(5);
          return "ran on";
        });
        tied = createTask(untilAborted, { signal });
        group = new TaskGroup({ signal });
        group.createTask(untilAborted);
        return gather(
          () => free as Task<string>,
          () => tied as Task<unknown>,
        );
      });
      const reason = new Error("parent cancelled");
      parent.cancel(reason);
      await assert.rejects(parent, (e) => e === reason);
      assert.equal(await free, "ran on");
      assert.equal(free?.cancelled, false);
      await assert.rejects(tied as Task<unknown>, (e) => e === reason);
      assert.equal(tied?.cancelled, true);
      assert.equal(group?.signal.reason, reason);
      await assert.rejects((group as TaskGroup).wait(), (e) => e === reason);
    },
  );
});

describe("cancellation and unhandled rejections", () => {
  it("a task cancelled in any way, that nobody awaits, is never reported", async () => {
    const seen = await unhandledRejectionsOf(`import { createTask, taskGroup } from "contextvars";
const forever = (signal) => new Promise((resolve) => signal.addEventListener("abort", resolve));
createTask(forever).cancel();
createTask(forever).cancel(new Error("explicit reason"));
const outer = new AbortController();
createTask(forever, { signal: outer.signal });
outer.abort(new Error("outer reason"));
createTask(forever, { signal: AbortSignal.abort(new Error("pre-aborted")) });
await taskGroup((tg) => { tg.createTask(forever); tg.createTask(async () => { throw new Error("x"); }); }).catch(() => {});
await new Promise((resolve) => setTimeout(resolve, 10));`);
    assert.deepEqual(seen, []);
  });

  it("a group cancelled by its outer signal: wait() rejects with its reason, which is handled when awaited; a failing child of a group nobody waits on is not reported", async () => {
    const seen = await unhandledRejectionsOf(`import { TaskGroup } from "contextvars";
const forever = (signal) => new Promise((resolve) => signal.addEventListener("abort", resolve));
const outer = new AbortController();
const cancelled = new TaskGroup({ signal: outer.signal });
const child = cancelled.createTask(forever);
const reason = new Error("client went away");
outer.abort(reason);
if ((await cancelled.wait().catch((e) => e)) !== reason) throw new Error("expected wait() to reject with the reason");
if (!child.cancelled || !cancelled.signal.aborted) throw new Error("expected the child cancelled");
const forgotten = new TaskGroup();
forgotten.createTask(async () => { throw new Error("the group's failure"); });
await new Promise((resolve) => setTimeout(resolve, 10));`);
    assert.deepEqual(seen, []);
  });
});

describe("TaskGroup: children cancelled", () => {
  it("test_cancellation: cancelling the parent through the group's signal cancels every child", async () => {
    let NUM = 0;
    const foo = async (signal: AbortSignal) => {
      await sleep(1000, undefined, { signal }).catch((e: unknown) => {
        NUM += 1;
        throw e;
      });
    };
    const r = createTask(async (signal) => {
      const g = new TaskGroup({ signal });
      for (let i = 0; i < 5; i++) g.createTask(foo);
      await g.wait();
    });
    await sleep(10);
    assert.equal(r.done, false);
    r.cancel("test");
    await assert.rejects(r, (e) => e === "test");
    await sleep(5);
    assert.equal(NUM, 5);
  });

  it("test_taskgroup_07: the body and the children see the cancel", async () => {
    let NUM = 0;
    const r = createTask(async (signal) => {
      const g = new TaskGroup({ signal });
      for (let i = 0; i < 5; i++) {
        g.createTask((s) => sleep(1000, undefined, { signal: s }).catch(() => (NUM += 1)));
      }
      await sleep(1000, undefined, { signal: g.signal }).catch(() => (NUM += 10));
      await g.wait();
    });
    await sleep(10);
    r.cancel();
    await assert.rejects(r);
    await sleep(5);
    assert.equal(NUM, 15);
  });

  it("test_taskgroup_13: an outer failure cancels an inner group tied to the outer's signal", async () => {
    const crashAfter = async (t: number, signal: AbortSignal) => {
      await sleep(t, undefined, { signal });
      throw new RangeError(String(t));
    };
    const error = await taskGroup(async (g1) => {
      g1.createTask((s) => crashAfter(5, s));
      const g2 = new TaskGroup({ signal: g1.signal });
      g2.createTask((s) => crashAfter(300, s));
      await g2.wait();
    }).then(
      () => assert.fail("expected a rejection"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(
      error.errors.map((e: Error) => e.message),
      ["5"],
    );
  });

  it("test_taskgroup_18: a body that turns the cancel into its own error fails the group", async () => {
    class MyExc extends Error {}
    const outer = new AbortController();
    const pending = taskGroup(async () => {
      await sleep(10_000, undefined, { signal: outer.signal }).catch(() => {
        throw new MyExc();
      });
    });
    outer.abort();
    await assert.rejects(
      pending,
      (e) => e instanceof AggregateError && e.errors[0] instanceof MyExc,
    );
  });

  it("no child outlives the group: wait() settles only when a cancelled child's fn has", async () => {
    const log: string[] = [];
    const error = await taskGroup((g) => {
      g.createTask(async () => {
        await sleep(1);
        throw new RangeError("fail");
      });
      g.createTask(async (signal) => {
        await untilAborted(signal);
        await sleep(20); // cleanup that ignores the signal
        log.push("slow child finished");
      });
    }).catch((e: unknown) => e);
    log.push("group settled");
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(log, ["slow child finished", "group settled"]);
  });

  // A batch tool adds its "stopping" log line to group.signal in the body;
  // Ctrl-C aborts the outer signal from a process listener, in whatever
  // Context Node runs it (the root's, usually). The line must carry the
  // batch's values, as a child's signal listener carries its task's.
  itFromEveryState(
    "group.signal's listeners run in the Context where the group was made, whoever shuts it down",
    async () => {
      const v = new ContextVar<string>("v");
      const seen: string[] = [];
      const listen = (group: TaskGroup, how: string) =>
        group.signal.addEventListener("abort", () => seen.push(`${how}: ${v.get("-")}`));

      const outer = new AbortController();
      const byOuter = v.run("batch", () =>
        taskGroup(
          async (group) => {
            listen(group, "outer signal");
            group.createTask(untilAborted);
          },
          { signal: outer.signal },
        ),
      );
      await sleep(1);
      v.run("the SIGINT listener", () => outer.abort(new Error("interrupted")));
      await assert.rejects(byOuter, { message: "interrupted" });

      // A child that a child added fails: the failure is seen where the
      // group's createTask was called, inside the first child.
      const byChild = v.run("batch", () =>
        taskGroup(async (group) => {
          listen(group, "a grandchild's failure");
          group.createTask(async () => {
            v.set("item");
            group.createTask(async () => {
              await sleep(1);
              throw new Error("item failed");
            });
            await untilAborted(group.signal);
          });
        }),
      );
      await assert.rejects(byChild, AggregateError);

      assert.deepEqual(seen, ["outer signal: batch", "a grandchild's failure: batch"]);
    },
  );

  it("a group whose outer signal is already aborted accepts no task", () => {
    const g = new TaskGroup({ signal: AbortSignal.abort() });
    let ran = false;
    assert.throws(() => g.createTask(() => (ran = true)), TaskGroupClosedError);
    assert.equal(ran, false);
  });
});
