// Ports of the context tests of CPython's Lib/test/test_asyncio/test_tasks.py
// (test_context_1…6, test_get_context, test_current_task*), plus what a Task
// is in JavaScript: an eager, awaitable PromiseLike.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { inspect, promisify } from "node:util";
import {
  bind,
  Context,
  ContextVar,
  callLater,
  copyContext,
  createTask,
  currentTask,
  gather,
  isolated,
  Task,
  TaskGroup,
  timeout,
} from "contextvars";
import { finishedOf } from "../../src/tasks/task.ts";
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

describe("Task: context copied at creation", () => {
  itFromEveryState(
    "test_context_1: a subtask misses its creator's later set, and the creator its set",
    async () => {
      const cvar = new ContextVar<string>("cvar", { default: "nope" });
      const sub = async () => {
        await sleep(10);
        assert.equal(cvar.get(), "nope");
        cvar.set("something else");
      };
      await createTask(async () => {
        assert.equal(cvar.get(), "nope");
        const subtask = createTask(sub);
        cvar.set("yes");
        assert.equal(cvar.get(), "yes");
        await subtask;
        assert.equal(cvar.get(), "yes");
      });
      assert.equal(cvar.get(), "nope");
    },
  );

  itFromEveryState("a task sees the creator's values as they were at creation", async () => {
    const v = new ContextVar<string>("v");
    v.set("before");
    const task = createTask(async () => {
      await sleep(1);
      return v.get();
    });
    v.set("after");
    assert.equal(await task, "before");
    assert.equal(v.get(), "after");
  });

  itFromEveryState("test_context_3: 100 tasks in parallel, each modifying cvar", async () => {
    const cvar = new ContextVar<number>("cvar", { default: -1 });
    const sub = async (num: number) => {
      for (let i = 0; i < 10; i++) {
        cvar.set(num + i);
        await sleep(1 + ((num * 7 + i * 3) % 4));
        assert.equal(cvar.get(), num + i);
      }
    };
    const tasks = Array.from({ length: 100 }, (_, i) => createTask(() => sub(i % 11)));
    await Promise.all(tasks);
    assert.equal(cvar.get(), -1);
  });
});

describe("Task: the context option", () => {
  for (const title of ["test_context_4", "test_context_5", "test_context_6"]) {
    itFromEveryState(`${title}: tasks run in the given Context, shared, not copied`, async () => {
      const cvar = new ContextVar<number>("cvar");
      const coro = async (val: number) => {
        await sleep(0);
        cvar.set(val);
      };
      const ret: (number | undefined)[] = [];
      const ctx = copyContext();
      ret.push(ctx.get(cvar));
      await createTask(() => coro(1), { context: ctx });
      ret.push(ctx.get(cvar));
      await createTask(() => coro(2), { context: ctx });
      ret.push(ctx.get(cvar));
      assert.deepEqual(ret, [undefined, 1, 2]);
      assert.equal(cvar.get("unset"), "unset");
    });
  }

  itFromEveryState(
    "the Context current at creation, given as context: the task runs in it, not a copy, and its sets land there",
    async () => {
      const v = new ContextVar<string>("v");
      const ctx = new Context();
      const seen = await ctx.run(async () => {
        v.set("before");
        const task = createTask(
          async () => {
            const before = v.get();
            await sleep(0);
            v.set("set by the task");
            return before;
          },
          { context: ctx },
        );
        assert.equal(task.context, ctx);
        const before = await task;
        return [before, v.get()];
      });
      assert.deepEqual(seen, ["before", "set by the task"]);
      assert.equal(ctx.get(v), "set by the task");
      assert.equal(v.get("unset"), "unset");
    },
  );

  it("test_get_context: task.context is the Context given", async () => {
    const context = copyContext();
    const task = createTask(async () => {}, { context });
    await task;
    assert.equal(task.context, context);
  });

  it("without the option, task.context is a fresh copy holding the task's sets", async () => {
    const v = new ContextVar<string>("v");
    const task = createTask(() => v.set("inside"));
    await task;
    assert.equal(task.context.get(v), "inside");
    assert.equal(v.get("outside"), "outside");
  });
});

describe("Task: currentTask()", () => {
  it("is undefined outside any task", () => {
    assert.equal(currentTask(), undefined);
    assert.equal(new Context().run(currentTask), undefined);
  });

  itFromEveryState("test_current_task: through awaits, nested calls and timers", async () => {
    const outer = currentTask();
    const nested = () => currentTask();
    let atStart: Task<unknown> | undefined;
    const task: Task<void> = createTask(async () => {
      atStart = currentTask();
      await sleep(1);
      assert.equal(currentTask(), task);
      assert.equal(nested(), task);
      // Boxed: a Task is a thenable, and resolving a promise with it would adopt it.
      const [fromTimer] = await new Promise<unknown[]>((resolve) =>
        setTimeout(() => resolve([currentTask()]), 1),
      );
      assert.equal(fromTimer, task);
    });
    await task;
    assert.equal(atStart, task);
    assert.equal(currentTask(), outer);
  });

  it("a timer set in a child that fires after the child settled still sees the child, not the parent", async () => {
    const parent = createTask(async () => {
      let fromTimer: unknown;
      const fired = new Promise<void>((resolve) => {
        const child = createTask(() => {
          setTimeout(() => {
            fromTimer = currentTask();
            resolve();
          }, 1);
          return "child done";
        });
        assert.equal(child.done, true);
      });
      await fired;
      return [fromTimer, currentTask()];
    });
    const [fromTimer, self] = await parent;
    assert.equal(self, parent);
    assert.ok(fromTimer instanceof Task);
    assert.notEqual(fromTimer, parent);
    assert.equal((fromTimer as Task<unknown>).done, true);
  });

  itFromEveryState("test_current_task_with_interleaving_tasks", async () => {
    const seen: [string, Task<unknown> | undefined][] = [];
    let set1 = () => {};
    let set2 = () => {};
    const fut1 = new Promise<void>((resolve) => (set1 = resolve));
    const fut2 = new Promise<void>((resolve) => (set2 = resolve));
    const task1 = createTask(async () => {
      seen.push(["1a", currentTask()]);
      await fut1;
      seen.push(["1b", currentTask()]);
      set2();
    });
    const task2 = createTask(async () => {
      seen.push(["2a", currentTask()]);
      set1();
      await fut2;
      seen.push(["2b", currentTask()]);
    });
    await Promise.all([task1, task2]);
    assert.deepEqual(seen, [
      ["1a", task1],
      ["2a", task2],
      ["1b", task1],
      ["2b", task2],
    ]);
  });

  // Python's test_current_task_with_interleaving_tasks has each task see
  // itself: asyncio tracks the running task in the loop. Here the task lives
  // in its Context, so tasks sharing one Context share the slot (pinned, and
  // documented in docs/semantics.md); the slot is handed back when they end.
  it("tasks sharing one Context: the one started last is current; the slot is handed back", async () => {
    const ctx = new Context();
    let open = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const body = async () => {
      await gate;
      return [currentTask()];
    };
    const t1 = createTask(body, { context: ctx });
    const t2 = createTask(body, { context: ctx });
    open();
    assert.equal((await t1)[0], t2);
    assert.equal((await t2)[0], t2);
    assert.equal(ctx.run(currentTask), undefined);
  });

  itFromEveryState(
    "three tasks sharing one Context: the slot goes to the last one started that still runs",
    async () => {
      const ctx = new Context();
      const gates = new Map<string, () => void>();
      const seen: string[] = [];
      const names = new Map<unknown, string>();
      const body = (name: string) => async () => {
        await new Promise<void>((resolve) => gates.set(name, resolve));
        seen.push(`${name} ends; slot: ${names.get(ctx.run(currentTask)) ?? "none"}`);
      };
      const a = createTask(body("a"), { context: ctx });
      const b = createTask(body("b"), { context: ctx });
      const c = createTask(body("c"), { context: ctx });
      for (const [task, name] of [
        [a, "a"],
        [b, "b"],
        [c, "c"],
      ] as const)
        names.set(task, name);
      const slot = () => names.get(ctx.run(currentTask)) ?? "none";
      assert.equal(slot(), "c");
      gates.get("b")?.();
      await b;
      assert.equal(slot(), "c", "b was not in the slot: nothing changes");
      gates.get("c")?.();
      await c;
      assert.equal(slot(), "a", "b has ended: back to a, not to none");
      gates.get("a")?.();
      await a;
      assert.equal(slot(), "none");
      assert.deepEqual(seen, ["b ends; slot: c", "c ends; slot: c", "a ends; slot: a"]);
    },
  );

  it("a task sharing its parent's Context hands the slot back to the parent", async () => {
    const parent = createTask(async () => {
      const own = currentTask();
      // Wrapped in an array: a task returned from an async function is adopted, and would wait for itself.
      const child = createTask(async () => [currentTask()], { context: own?.context });
      const [seenByChild] = await child;
      return [own, seenByChild, currentTask()];
    });
    const [own, seenByChild, after] = await parent;
    assert.equal(own, parent);
    assert.notEqual(seenByChild, parent);
    assert.equal(after, parent);
  });

  it("the slot goes to none, not back to the parent, once the parent's function has settled", async () => {
    let open!: () => void;
    let child: Task<unknown> | undefined;
    const parent = createTask(() => {
      child = createTask(() => new Promise<void>((resolve) => (open = resolve)), {
        context: currentTask()?.context,
      });
      return "parent done";
    });
    assert.equal(await parent, "parent done");
    assert.equal(parent.context.run(currentTask), child);
    open();
    await child;
    assert.equal(parent.context.run(currentTask), undefined);
  });
});

describe("Task: a PromiseLike", () => {
  it("starts eagerly, before createTask returns", () => {
    let ran = false;
    const task = createTask(() => {
      ran = true;
    });
    assert.equal(ran, true);
    assert.equal(task.done, true);
  });

  it("then/catch/finally, await and Promise.resolve adoption", async () => {
    const ok = createTask(async () => 42);
    assert.equal(ok.done, false);
    assert.ok(ok.then(() => 0) instanceof Promise);
    assert.equal(await ok, 42);
    assert.equal(ok.done, true);
    assert.equal(await Promise.resolve(ok), 42);
    let finished = false;
    assert.equal(await ok.finally(() => (finished = true)), 42);
    assert.equal(finished, true);
    const boom = new Error("boom");
    const bad = createTask(async () => {
      throw boom;
    });
    assert.equal(await bad.catch((e: unknown) => e), boom);
    await assert.rejects(Promise.resolve(bad), (e) => e === boom);
    assert.equal(bad.cancelled, false);
    assert.ok(!((ok as unknown) instanceof Promise));
  });

  it("test_bare_create_named_task: name, default name, toString", async () => {
    const named = createTask(() => {}, { name: "No-op" });
    assert.equal(named.name, "No-op");
    assert.equal(String(named), 'Task("No-op")');
    assert.equal(Object.prototype.toString.call(named), "[object Task]");
    assert.match(createTask(() => {}).name, /^Task-\d+$/);
  });

  it("default names count from Task-1, as asyncio's do, in a process of their own", async () => {
    const script = `import { createTask } from "contextvars";
console.log(JSON.stringify([createTask(() => {}).name, createTask(() => {}).name]));`;
    const args = ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module"];
    const { stdout } = await promisify(execFile)(process.execPath, [...args, "-e", script], {
      cwd: root,
    });
    assert.deepEqual(JSON.parse(stdout), ["Task-1", "Task-2"]);
  });

  it("inspect shows the name, the state and the task's Context", async () => {
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const pending = createTask(() => gate, { name: "fetch" });
    assert.match(inspect(pending), /^<Task name="fetch" pending context=<Context #\d+ size=\d+>>$/);
    open();
    await pending;
    assert.match(inspect(pending), /^<Task name="fetch" done /);
    const cancelled = createTask(() => new Promise<never>(() => {}), { name: "slow" });
    cancelled.cancel();
    await cancelled.catch(() => {});
    assert.match(inspect(cancelled), /^<Task name="slow" cancelled /);
  });

  it("fn receives the task's signal when it declares a parameter", async () => {
    const task = createTask((signal: AbortSignal) => signal);
    assert.equal(await task, task.signal);
    assert.equal(task.signal.aborted, false);
  });

  it("fn that declares no parameter is called with no argument", async () => {
    const task = createTask(function () {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return arguments.length;
    });
    assert.equal(await task, 0);
    assert.equal(
      await createTask((..._rest: unknown[]) => _rest.length),
      0,
      "a rest parameter declares none",
    );
  });

  it("a failed task nobody awaits is reported as an unhandled rejection", async () => {
    const seen = await unhandledRejectionsOf(`import { createTask } from "contextvars";
createTask(async () => { throw new Error("nobody awaits me"); });
const handled = createTask(async () => { throw new Error("awaited"); });
await handled.catch(() => {});`);
    assert.deepEqual(seen, ["nobody awaits me"]);
  });

  it("unhandled: a synchronous failure is; gather's later failures, cancels and late catches are not", async () => {
    const seen = await unhandledRejectionsOf(`import { createTask, gather } from "contextvars";
createTask(() => { throw new Error("sync, nobody awaits"); });
await gather(
  async () => { throw new Error("first"); },
  async () => { await new Promise((r) => setTimeout(r, 5)); throw new Error("after gather failed"); },
).catch(() => {});
const cancelled = createTask(async () => { await new Promise((r) => setTimeout(r, 5)); });
cancelled.cancel();
const late = createTask(async () => { throw new Error("caught late"); });
await null;
late.catch(() => {});
await new Promise((r) => setTimeout(r, 20));`);
    assert.deepEqual(seen, ["sync, nobody awaits"]);
  });

  it("unhandled: none from tasks handed to Promise.allSettled, sync throws included", async () => {
    const seen = await unhandledRejectionsOf(`import { createTask } from "contextvars";
const outcomes = await Promise.allSettled([
  createTask(() => { throw new Error("sync"); }),
  createTask(async () => { throw new Error("async"); }),
  createTask(async () => { await new Promise((r) => setTimeout(r, 5)); throw new Error("later"); }),
]);
if (outcomes.some((o) => o.status !== "rejected")) throw new Error("expected three rejections");
await new Promise((r) => setTimeout(r, 20));`);
    assert.deepEqual(seen, []);
  });

  it("then after the task settled: the value, or the failure, as it settled", async () => {
    const ok = createTask(() => "sync value");
    assert.equal(ok.done, true);
    assert.equal(await ok.then((v) => `${v}!`), "sync value!");
    const boom = new Error("boom");
    const bad = createTask(async () => {
      throw boom;
    });
    await bad.catch(() => {});
    await assert.rejects(
      bad.then(() => "never"),
      (e) => e === boom,
    );
    const cancelled = createTask(() => new Promise<never>(() => {}));
    cancelled.cancel(boom);
    await assert.rejects(
      cancelled.then(() => "never"),
      (e) => e === boom,
    );
  });

  it("Task cannot be constructed directly", () => {
    const Ctor = Task as unknown as new (...args: unknown[]) => unknown;
    assert.throws(() => new Ctor(Symbol("x"), () => {}, undefined), TypeError);
  });
});

describe("bad input: the message says what was expected", () => {
  it("createTask, new Task, TaskGroup, gather, callLater and timeout", () => {
    const AnyTask = Task as unknown as new () => unknown;
    const cases: [() => unknown, string][] = [
      [() => new AnyTask(), "Tasks can only be created by createTask(fn)"],
      [
        () => createTask(() => 1, 5 as never),
        "Expected `options` to be an object, got `5` (number)",
      ],
      [
        () => createTask(() => 1, { name: 5 as never }),
        "Expected `options.name` to be a string, got `5` (number)",
      ],
      [
        () => createTask(() => 1, { signal: 5 as never }),
        "Expected `options.signal` to be an AbortSignal, got `5` (number)",
      ],
      [() => new TaskGroup(5 as never), "Expected `options` to be an object, got `5` (number)"],
      [
        () => new TaskGroup({ name: 5 as never }),
        "Expected `options.name` to be a string, got `5` (number)",
      ],
      [
        () => new TaskGroup({ signal: 5 as never }),
        "Expected `options.signal` to be an AbortSignal, got `5` (number)",
      ],
      [
        () => gather(() => 1, 5 as never),
        "Expected `items[1]` to be a function or a PromiseLike, got `5` (number)",
      ],
      [
        () => callLater(-1, () => {}),
        "Expected `delayMs` to be a number from 0 to 2147483647, got `-1` (number)",
      ],
      [
        () => timeout(-1, () => {}),
        "Expected `ms` to be a number from 0 to 2147483647, got `-1` (number)",
      ],
    ];
    for (const [call, message] of cases) assert.throws(call, new TypeError(message));
  });
});

describe("Task: bad input", () => {
  type Fn = () => void;
  const cases: [string, (fn: Fn) => unknown, RegExp][] = [
    ["fn not a function", () => createTask(42 as never), /`fn`.*`42` \(number\)/],
    ["options not an object", (fn) => createTask(fn, "x" as never), /`options`/],
    ["options null", (fn) => createTask(fn, null as never), /`options`/],
    ["options.name not a string", (fn) => createTask(fn, { name: 1 as never }), /`options\.name`/],
    [
      "options.context a Map",
      (fn) => createTask(fn, { context: new Map() as never }),
      /`options\.context`.*a Context/,
    ],
    [
      "options.context a plain object",
      (fn) => createTask(fn, { context: {} as never }),
      /`options\.context`/,
    ],
    [
      "options.signal not an AbortSignal",
      (fn) => createTask(fn, { signal: {} as never }),
      /`options\.signal`/,
    ],
  ];
  it("each option is read once, and the value checked is the value used", async () => {
    const reads = { name: 0, context: 0, signal: 0 };
    const outer = new AbortController();
    const context = copyContext();
    const checked = <T>(key: keyof typeof reads, value: T, later: unknown) => ({
      get() {
        return reads[key]++ === 0 ? value : later;
      },
      enumerable: true,
    });
    const options = Object.defineProperties({} as Record<string, unknown>, {
      name: checked("name", "checked", 42),
      context: checked("context", context, {}),
      signal: checked("signal", outer.signal, {}),
    });
    const task = createTask(async () => {}, options);
    assert.deepEqual(reads, { name: 1, context: 1, signal: 1 });
    assert.equal(task.name, "checked");
    assert.equal(task.context, context);
    await task;
    // A getter that throws on a later read can no longer leave the outer signal a listener.
    let readsOfContext = 0;
    const throwsLater = {
      signal: outer.signal,
      get context() {
        if (readsOfContext++ > 1) throw new Error("read a third time");
        return undefined;
      },
    };
    await createTask(async () => {}, throwsLater);
    assert.equal(getEventListeners(outer.signal, "abort").length, 0);
  });

  it("options.context that only looks like a Context (instanceof passes): TypeError before anything starts", () => {
    for (const fake of [Object.create(Context.prototype), new Proxy(new Context(), {})]) {
      const outer = new AbortController();
      let ran = false;
      assert.throws(
        () =>
          createTask(
            () => {
              ran = true;
            },
            { context: fake, signal: outer.signal },
          ),
        (e: unknown) => e instanceof TypeError && /`options\.context`.*a Context/.test(e.message),
      );
      assert.equal(ran, false);
      assert.equal(getEventListeners(outer.signal, "abort").length, 0, "no listener left behind");
    }
  });

  for (const [title, call, message] of cases) {
    it(`${title}: TypeError naming the argument, fn never runs`, () => {
      let ran = false;
      assert.throws(
        () =>
          call(() => {
            ran = true;
          }),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
      assert.equal(ran, false);
    });
  }
});

/** p-lazy's shape: a Promise subclass that starts its executor only when then is called. */
class Lazy<T> extends Promise<T> {
  readonly #executor: (resolve: (value: T) => void, reject: (reason: unknown) => void) => void;
  #started: Promise<T> | undefined;
  constructor(executor: (resolve: (value: T) => void, reject: (reason: unknown) => void) => void) {
    super((resolve) => resolve(undefined as T));
    this.#executor = executor;
  }
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }
  // biome-ignore lint/suspicious/noThenProperty: overriding then is what is under test
  override then<R1 = T, R2 = never>(
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    this.#started ??= new Promise<T>(this.#executor);
    return this.#started.then(onFulfilled, onRejected);
  }
}

class ThrowingThen extends Promise<never> {
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }
  // biome-ignore lint/suspicious/noThenProperty: overriding then is what is under test
  override then(): Promise<never> {
    throw new Error("then threw");
  }
}

describe("Task: a function that returns a thenable", () => {
  type Callbacks = [resolve: (value: unknown) => void, reject: (reason: unknown) => void];
  const late = new Error("late");
  const inner = (value: unknown): PromiseLike<unknown> => ({
    // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
    then: (resolve?: ((v: unknown) => unknown) | null) => {
      setTimeout(() => resolve?.(value), 1);
      return undefined as unknown as PromiseLike<never>;
    },
  });
  /** Each builds a fresh thenable whose `then` does one odd thing a query builder might. */
  const behaviours: Record<string, () => unknown> = {
    "resolves at once": () => thenable((resolve) => resolve("now")),
    "resolves on a timer": () => thenable((resolve) => setTimeout(() => resolve("later"), 1)),
    rejects: () => thenable((_, reject) => reject(late)),
    "then throws": () =>
      thenable(() => {
        throw late;
      }),
    "a then getter that throws": () => ({
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      get then() {
        throw late;
      },
    }),
    // biome-ignore lint/suspicious/noThenProperty: not a thenable, on purpose
    "then is not a function": () => ({ then: 42 }),
    "resolves with a thenable": () => thenable((resolve) => resolve(inner("inner"))),
    "resolves with a rejected promise": () => thenable((resolve) => resolve(Promise.reject(late))),
    "resolves with a thenable, then rejects": () =>
      thenable((resolve, reject) => {
        resolve(inner("adopted"));
        reject(late);
      }),
    "resolves with a thenable, then throws": () =>
      thenable((resolve) => {
        resolve(inner("adopted"));
        throw late;
      }),
    "rejects, then resolves": () =>
      thenable((resolve, reject) => {
        reject(late);
        resolve("ignored");
      }),
    "resolves twice": () =>
      thenable((resolve) => {
        resolve("first");
        resolve("second");
      }),
    "a Promise subclass whose then starts the work (p-lazy)": () =>
      new Lazy((resolve) => resolve("lazy")),
    "a Promise subclass whose then throws": () => new ThrowingThen(() => {}),
    "resolves, then throws": () =>
      thenable((resolve) => {
        resolve("kept");
        throw late;
      }),
  };
  function thenable(body: (...callbacks: Callbacks) => void): PromiseLike<unknown> {
    return {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      then: (resolve, reject) => body(resolve as Callbacks[0], reject as Callbacks[1]),
    } as PromiseLike<unknown>;
  }
  const outcome = (p: PromiseLike<unknown>): Promise<unknown> =>
    Promise.resolve(p).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );

  itFromEveryState("then is called before createTask returns, in the task's Context", async () => {
    const v = new ContextVar<string>("v", { default: "unset" });
    v.set("creator");
    const calls: string[] = [];
    const task = createTask(() => {
      v.set("task");
      return thenable((resolve) => {
        calls.push(v.get());
        resolve("done");
      });
    });
    assert.deepEqual(calls, ["task"]);
    assert.equal(v.get(), "creator");
    assert.equal(await task, "done");
  });

  it("a function with a then method is a thenable too: its then is called before createTask returns", async () => {
    const calls: string[] = [];
    const callable = Object.assign(() => "called", {
      // biome-ignore lint/suspicious/noThenProperty: a callable thenable on purpose
      then(resolve: (v: unknown) => void) {
        calls.push("then");
        resolve("adopted");
      },
    });
    const task = createTask(() => callable);
    calls.push("returned");
    assert.deepEqual(calls, ["then", "returned"]);
    assert.equal(await task, "adopted");
    assert.equal(await Promise.resolve(callable), "adopted", "as Promise.resolve adopts it");
  });

  itFromEveryState("a Promise subclass's then runs in the task's Context", async () => {
    const v = new ContextVar<string>("v", { default: "unset" });
    v.set("creator");
    const task = createTask(() => {
      v.set("task");
      return new Lazy<string>((resolve) => resolve(v.get()));
    });
    assert.equal(await task, "task");
    assert.equal(v.get(), "creator");
  });

  itFromEveryState(
    "a function that returns its own task: a TypeError, as for a promise resolved with itself",
    async () => {
      const own = createTask(() => currentTask());
      await assert.rejects(
        own,
        (e) =>
          e instanceof TypeError &&
          /^Chaining cycle detected for Task\("Task-\d+"\)$/.test(e.message),
      );
      // The promise it mirrors (V8 says "Chaining cycle detected for promise",
      // JavaScriptCore "Cannot resolve a promise with itself").
      const self: Promise<unknown> = new Promise((resolve) => queueMicrotask(() => resolve(self)));
      await assert.rejects(self, TypeError);
    },
  );

  // Exotic objects on which the check for a native promise itself throws.
  itFromEveryState(
    "a promise whose own then getter throws: the task rejects, as an async function's promise does",
    async () => {
      const withThrowingThen = (): Promise<string> => {
        const p = Promise.resolve("never seen");
        // biome-ignore lint/suspicious/noThenProperty: a malformed promise on purpose
        Object.defineProperty(p, "then", {
          get() {
            throw late;
          },
        });
        return p;
      };
      const expected = await outcome((async () => withThrowingThen())());
      assert.deepEqual(expected, { error: late });
      let task: PromiseLike<unknown> | undefined;
      assert.doesNotThrow(() => {
        task = createTask(withThrowingThen);
      });
      assert.deepEqual(await outcome(task as PromiseLike<unknown>), expected);
    },
  );

  itFromEveryState(
    "a Proxy whose getPrototypeOf trap throws: the task fulfils with it, as Promise.resolve does",
    async () => {
      const proxy = new Proxy(
        {},
        {
          getPrototypeOf() {
            throw late;
          },
        },
      );
      assert.equal(await Promise.resolve(proxy), proxy);
      let task: PromiseLike<unknown> | undefined;
      assert.doesNotThrow(() => {
        task = createTask(() => proxy);
      });
      assert.equal(await task, proxy);
    },
  );

  for (const [name, make] of Object.entries(behaviours)) {
    itFromEveryState(`${name}: the task settles as Promise.resolve(thenable) does`, async () => {
      const expected = await outcome(Promise.resolve(make()));
      assert.deepEqual(await outcome(createTask(make)), expected);
      assert.deepEqual(
        await outcome(
          createTask(async () => {
            await null;
            return make();
          }),
        ),
        expected,
      );
    });
  }
});

describe("finishedOf (internal: what TaskGroup and timeout wait on)", () => {
  it("every waiter wakes once the function settles, not when the task is cancelled", async () => {
    let finish = () => {};
    const task = createTask(
      () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
    );
    const woken: string[] = [];
    const first = finishedOf(task).then(() => woken.push("first"));
    const second = finishedOf(task).then(() => woken.push("second"));
    task.cancel();
    await task.catch(() => {});
    await sleep(1);
    assert.deepEqual(woken, [], "cancel() settles the task, not its function");
    finish();
    await Promise.all([first, second]);
    assert.deepEqual(woken, ["first", "second"]);
    await finishedOf(task); // after the fact: at once
  });
});

describe("currentTask() and the Context slot, further", () => {
  it("var.run inside a task keeps currentTask()", async () => {
    const v = new ContextVar<number>("v");
    const task = createTask(() => [v.run(1, currentTask)]);
    assert.equal((await task)[0], task);
  });

  it("copies of a task's Context (copyContext, bind, isolated) keep the task", async () => {
    const task = createTask(() => [
      copyContext().run(currentTask),
      bind(currentTask)(),
      isolated(currentTask)(),
    ]);
    const [viaCopy, viaBind, viaIsolated] = await task;
    assert.equal(viaCopy, task);
    assert.equal(viaBind, task);
    assert.equal(viaIsolated, task);
  });

  it("four sharers: the slot goes to the last one started that still runs", async () => {
    const ctx = new Context();
    const gates: (() => void)[] = [];
    const start = () =>
      createTask(() => new Promise<void>((resolve) => gates.push(resolve)), { context: ctx });
    const [a, b, c, d] = [start(), start(), start(), start()];
    gates[3]?.();
    await d;
    assert.equal(ctx.run(currentTask), c);
    for (const open of gates) open();
    await Promise.all([a, b, c]);
  });

  it("a cancelled sharer whose function still runs keeps the slot when another ends", async () => {
    const ctx = new Context();
    let openA!: () => void;
    let openB!: () => void;
    let seen: unknown = "unset";
    const a = createTask(() => new Promise<void>((resolve) => (openA = resolve)), { context: ctx });
    const b = createTask(
      async () => {
        await new Promise<void>((resolve) => (openB = resolve));
        seen = currentTask();
      },
      { context: ctx },
    );
    b.cancel();
    await b.catch(() => {});
    openA();
    await a;
    openB();
    await sleep(1);
    assert.equal(seen, b);
  });

  it("a cancelled sharer whose function still runs gets the slot back when a later one ends", async () => {
    const ctx = new Context();
    let openA!: () => void;
    let openB!: () => void;
    let seen: unknown = "unset";
    const a = createTask(
      async () => {
        await new Promise<void>((resolve) => (openA = resolve));
        seen = currentTask();
      },
      { context: ctx },
    );
    const b = createTask(() => new Promise<void>((resolve) => (openB = resolve)), {
      context: ctx,
    });
    a.cancel();
    await a.catch(() => {});
    openB();
    await b;
    assert.equal(ctx.run(currentTask), a, "a's function still runs");
    openA();
    await sleep(1);
    assert.equal(seen, a);
    assert.equal(ctx.run(currentTask), undefined, "none once every function has settled");
  });

  it("an empty name is kept", () => {
    assert.equal(createTask(() => 0, { name: "" }).name, "");
  });

  it("cancelling the task behind run()'s promise is not reported as unhandled", async () => {
    const seen = await unhandledRejectionsOf(`import { currentTask, run } from "contextvars";
let main;
run(async () => {
  main = currentTask();
  await new Promise((resolve) => setTimeout(resolve, 50));
});
main.cancel();
await new Promise((resolve) => setTimeout(resolve, 20));`);
    assert.deepEqual(seen, []);
  });

  it("a main that cancels its own task before returning is not reported as unhandled", async () => {
    const seen = await unhandledRejectionsOf(`import { currentTask, run } from "contextvars";
run(() => {
  currentTask().cancel();
});
await new Promise((resolve) => setTimeout(resolve, 20));`);
    assert.deepEqual(seen, []);
  });
});
