/**
 * The Contexts of finished tasks, callbacks and runs become garbage: nothing
 * in the library (task bookkeeping, signals, timers, group sets) keeps a
 * finished piece of work's Context, or the values set in it, alive.
 *
 * Each case runs in its own function, so the test itself holds no reference
 * once it returns. A value is tracked as well as the Context where the
 * Context object is reachable (`task.context`, `currentTask().context`);
 * `forgetReadCache()` moves the vars' one-entry read cache off the tracked
 * values first, so these tests see the Contexts alone (the cache has its own
 * test: var-cache.test.ts).
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  bind,
  bindEmitter,
  type CallHandle,
  Context,
  ContextVar,
  callLater,
  callSoon,
  createTask,
  currentTask,
  gather,
  isolated,
  run,
  TaskGroup,
  taskGroup,
  timeout,
} from "contextvars";
import { Watch } from "../helpers/gc.ts";

const session = new ContextVar<object>("session");

function forgetReadCache(): void {
  session.get(undefined);
}

/** Sets `session` to a tracked object and tracks the current task's Context, if any. */
function enter(watch: Watch, label: string): void {
  session.set(watch.track({ label }, `${label}: value`));
  const task = currentTask();
  if (task !== undefined) watch.track(task.context, `${label}: context`);
}

async function expectAllCollected(watch: Watch, cases: () => Promise<void>): Promise<void> {
  await cases();
  forgetReadCache();
  assert.deepEqual(await watch.survivors(), []);
}

describe("finished tasks leave nothing alive", () => {
  it("createTask: fulfilled, rejected, cancelled (also while its function still runs)", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      await createTask(async () => {
        enter(watch, "fulfilled");
        await sleep(1);
      });
      await createTask(async () => {
        enter(watch, "rejected");
        await sleep(1);
        throw new Error("failed");
      }).catch(() => {});
      const ignoring = createTask(async () => {
        enter(watch, "cancelled");
        await sleep(5); // ignores its signal: runs on after cancel
      });
      ignoring.cancel();
      await ignoring.catch(() => {});
      await sleep(10);
    });
  });

  it("gather, run, isolated", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      await gather(
        async () => enter(watch, "gather a"),
        async () => {
          await sleep(1);
          enter(watch, "gather b");
        },
      );
      await run(async () => enter(watch, "run"));
      const handle = isolated(async (label: string) => {
        await sleep(1);
        enter(watch, label);
      });
      await Promise.all([handle("isolated 1"), handle("isolated 2")]);
    });
  });

  it("a TaskGroup after a failure: the failed child, the cancelled ones and the group", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      const group = watch.track(new TaskGroup(), "group");
      group.createTask(async () => {
        enter(watch, "failing child");
        await sleep(1);
        throw new Error("child failed");
      });
      for (const n of [1, 2, 3]) {
        group.createTask(async (signal) => {
          enter(watch, `cancelled child ${n}`);
          await sleep(1_000, undefined, { signal });
        });
      }
      await assert.rejects(group.wait(), AggregateError);
      await assert.rejects(
        taskGroup(async (tg) => {
          tg.createTask(async () => enter(watch, "taskGroup child"));
          await sleep(1);
          throw new Error("body failed");
        }),
        AggregateError,
      );
    });
  });

  it("a long-lived TaskGroup keeps none of its finished children while it stays open", async () => {
    const watch = new Watch();
    const group = new TaskGroup();
    await expectAllCollected(watch, async () => {
      await watch.track(
        group.createTask(async () => {
          enter(watch, "finished child");
          await sleep(1);
        }),
        "finished child: task",
      );
      await sleep(1);
    });
    await group.wait();
  });

  it("the functions tasks ran, and what they close over, go with the tasks", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      // A request-like object only a task's function closes over: once the task is
      // done, nothing in the library (an arity cache, a last-function slot) may keep it.
      const request = watch.track({ url: "/a" }, "closed over by the last task");
      const last = watch.track(async () => request.url, "the last task's function");
      await createTask(last);
      const withSignal = watch.track(
        async (signal: AbortSignal) => signal.aborted,
        "with a signal",
      );
      await gather(withSignal, last);
    });
  });

  it("createTask with options.context: the Context given goes once the caller drops it", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      const given = watch.track(new Context(), "the Context given");
      await createTask(
        async () => {
          enter(watch, "in the Context given");
          await sleep(1);
        },
        { context: given },
      );
    });
  });

  it("a Context given to many tasks, and kept, keeps none that are done, while one started later still runs", async () => {
    const watch = new Watch();
    const shared = new Context();
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let last: PromiseLike<void> | undefined;
    await expectAllCollected(watch, async () => {
      for (const n of [1, 2, 3]) {
        await watch.track(
          createTask(() => sleep(1), { context: shared }),
          `task ${n}`,
        );
      }
      const earlier = watch.track(
        createTask(() => sleep(1), { context: shared }),
        "done while a later one runs",
      );
      last = createTask(() => gate, { context: shared });
      await earlier;
    });
    open();
    await last;
  });

  it("a task whose function never settles, and its outer signal, go once nothing refers to them", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      const outer = watch.track(new AbortController(), "the outer controller");
      watch.track(outer.signal, "the outer signal");
      watch.track(
        createTask(
          () => {
            enter(watch, "never settles");
            return new Promise(() => {});
          },
          { signal: outer.signal },
        ),
        "the task",
      );
    });
  });

  it("timeout(): a task that finishes early does not wait for its timer to be collectable", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      await timeout(60_000, async () => enter(watch, "timeout, early"));
      await timeout(1, async (signal) => {
        enter(watch, "timeout, expired");
        await sleep(1_000, undefined, { signal });
      }).catch(() => {});
    });
  });
});

describe("callbacks and runs leave nothing alive", () => {
  it("callSoon and callLater, run or cancelled", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      await new Promise<void>((resolve) => callSoon(() => resolve(enter(watch, "callSoon"))));
      await new Promise<void>((resolve) => callLater(1, () => resolve(enter(watch, "callLater"))));
      new Context().run(() => {
        session.set(watch.track({}, "callLater, cancelled: value at scheduling"));
        callLater(60_000, () => {}).cancel();
      });
      new Context().run(() => {
        session.set(watch.track({}, "callSoon, cancelled: value at scheduling"));
        callSoon(() => {}).cancel();
      });
    });
  });

  it("callSoon and callLater, run or cancelled, with their handles kept", async () => {
    const watch = new Watch();
    const handles: CallHandle[] = []; // kept to the end, as code that may cancel later keeps them
    await expectAllCollected(watch, async () => {
      await new Promise<void>((resolve) =>
        handles.push(callSoon(() => resolve(enter(watch, "callSoon, handle kept")))),
      );
      await new Promise<void>((resolve) =>
        handles.push(callLater(1, () => resolve(enter(watch, "callLater, handle kept")))),
      );
      for (const [kind, schedule] of [
        ["callSoon", () => callSoon(() => {})],
        ["callLater", () => callLater(60_000, () => {})],
      ] as const) {
        new Context().run(() => {
          session.set(watch.track({}, `${kind}, cancelled, handle kept: value at scheduling`));
          const handle = schedule();
          handle.cancel();
          handles.push(handle);
        });
      }
    });
    assert.deepEqual(
      handles.map((handle) => handle.cancelled),
      [false, false, true, true],
    );
  });

  it("a handle kept after its callback ran or was cancelled keeps neither the callback nor what it closed over", async () => {
    const watch = new Watch();
    const handles: CallHandle[] = [];
    await expectAllCollected(watch, async () => {
      const captured = (label: string) => {
        const held = watch.track({}, `${label}: closed over`);
        return watch.track(() => held, `${label}: callback`);
      };
      await new Promise<void>((resolve) => {
        handles.push(callSoon(captured("callSoon, run")));
        callSoon(resolve);
      });
      await new Promise<void>((resolve) => {
        handles.push(callLater(1, captured("callLater, run")));
        callLater(5, resolve);
      });
      for (const [kind, schedule] of [
        ["callSoon", (fn: () => unknown) => callSoon(fn)],
        ["callLater", (fn: () => unknown) => callLater(60_000, fn)],
      ] as const) {
        const handle = schedule(captured(`${kind}, cancelled`));
        handle.cancel();
        handles.push(handle);
      }
    });
    // The names stay for toString.
    assert.deepEqual(handles.map(String), [
      "<callSoon anonymous>",
      "<callLater anonymous>",
      "<callSoon anonymous cancelled>",
      "<callLater anonymous cancelled>",
    ]);
  });

  it("ctx.run with timers started and cleared; var.run", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      await watch.track(new Context(), "ctx").run(async () => {
        session.set(watch.track({}, "ctx: value"));
        clearTimeout(setTimeout(() => {}, 60_000));
        clearInterval(setInterval(() => {}, 60_000));
        await sleep(1);
      });
      await session.run(watch.track({}, "var.run: value"), () => sleep(1));
    });
  });

  it("bind: the snapshot goes with the bound function; each call's copy goes at once", async () => {
    const watch = new Watch();
    let bound: (() => void) | undefined;
    new Context().run(() => {
      session.set(watch.track({}, "snapshot value"));
      bound = bind(() => enter(watch, `call ${watch.size}`));
    });
    for (let i = 0; i < 3; i++) bound?.();
    forgetReadCache();
    assert.deepEqual(
      await watch.survivors(10),
      ["snapshot value"],
      "the bound fn holds its snapshot",
    );
    bound = undefined;
    assert.deepEqual(await watch.survivors(), []);
  });

  it("bindEmitter: a bound emitter, its listeners and their Context go together", async () => {
    const watch = new Watch();
    await expectAllCollected(watch, async () => {
      new Context().run(() => {
        session.set(watch.track({}, "emitter's Context value"));
        const emitter = watch.track(bindEmitter(new EventEmitter()), "emitter");
        emitter.on("ping", () => enter(watch, "listener call"));
        emitter.emit("ping");
      });
    });
  });
});
