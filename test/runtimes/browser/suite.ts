/**
 * What the browser build does, checked in headless Chromium by
 * scripts/runtimes/browser-test.ts, which bundles this file with the
 * `browser` condition (so `#carrier` is the synchronous carrier and nothing
 * reaches `node:async_hooks` or `node:worker_threads`) and reads
 * `window.__results`.
 *
 * The honest part is pinned as much as the working part: without
 * `AsyncContext` in the engine, a Context is current for the synchronous
 * extent of a run only. After an `await`, code runs in the root Context;
 * `bind`, `Snapshot.wrap`, `callSoon`/`callLater` and `copyContext().run`
 * carry a Context across such a hop by hand.
 */
import {
  bind,
  Context,
  ContextVar,
  callLater,
  callSoon,
  copyContext,
  createTask,
  currentTask,
  gather,
  isolated,
  LookupError,
  TokenMismatchError,
} from "contextvars";
import { AsyncContext } from "contextvars/async-context";

interface Outcome {
  name: string;
  ok: boolean;
  error?: string;
}

const cases: [string, () => unknown][] = [];
const test = (name: string, fn: () => unknown) => cases.push([name, fn]);

function equal(actual: unknown, expected: unknown, what = "value"): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

function throws(fn: () => unknown, type: Function): void {
  try {
    fn();
  } catch (error) {
    if (error instanceof type) return;
    throw new Error(`expected a ${type.name}, got ${String(error)}`);
  }
  throw new Error(`expected a ${type.name}, nothing was thrown`);
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

test("no Node globals are needed: the page has no process, Buffer or setImmediate", () => {
  const g = globalThis as Record<string, unknown>;
  equal(
    [typeof g.process, typeof g.Buffer, typeof g.setImmediate],
    ["undefined", "undefined", "undefined"],
  );
});

test("get, set, reset and defaults work as in Python", () => {
  const v = new ContextVar<string>("v", { default: "d" });
  const bare = new ContextVar<string>("bare");
  const ctx = new Context();
  ctx.run(() => {
    const token = v.set("x");
    equal(v.get(), "x");
    v.reset(token);
    equal(v.get(), "d");
    throws(() => bare.get(), LookupError);
    equal(bare.get("fallback"), "fallback");
  });
});

test("a token made in another Context is refused", () => {
  const v = new ContextVar<string>("v");
  const token = new Context().run(() => v.set("x"));
  throws(() => new Context().run(() => v.reset(token)), TokenMismatchError);
});

test("Context.run and var.run propagate synchronously, nested, and restore", () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const seen: string[] = [];
  v.run("outer", () => {
    seen.push(v.get());
    const inner = (): void => {
      seen.push(v.get());
    };
    v.run("inner", inner);
    seen.push(v.get());
  });
  seen.push(v.get());
  equal(seen, ["outer", "inner", "outer", "root"]);
});

test("copies are O(1) snapshots: later sets are not seen", () => {
  const v = new ContextVar<number>("v", { default: 0 });
  const ctx = new Context();
  const copy = ctx.run(() => {
    v.set(1);
    const c = copyContext();
    v.set(2);
    return c;
  });
  equal([ctx.get(v), copy.get(v)], [2, 1]);
});

test("pinned: after an await inside a run, code runs in the root Context", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const seen = await v.run("inside", async () => {
    const before = v.get();
    await tick();
    return [before, v.get()];
  });
  equal(seen, ["inside", "root"]);
});

test("bind carries the Context across a timer and a promise callback", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const seen = await v.run("bound", () => {
    const read = bind(() => v.get());
    return Promise.all([
      new Promise<string>((resolve) => setTimeout(() => resolve(read()), 1)),
      Promise.resolve().then(read),
    ]);
  });
  equal(seen, ["bound", "bound"]);
});

test("bind around each continuation keeps an async flow in its Context", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const flow = v.run("request", () => {
    const step = bind((n: number) => `${n}:${v.get()}`);
    return tick()
      .then(() => step(1))
      .then(async (first) => {
        await tick();
        return [first, step(2)];
      });
  });
  equal(await flow, ["1:request", "2:request"]);
});

test("createTask: the task's synchronous start runs in its own copy; its sets stay inside", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const ctx = new Context();
  const seen = await ctx.run(() => {
    v.set("parent");
    const task = createTask(
      () => {
        const start = [v.get(), currentTask()?.name];
        v.set("child");
        return start;
      },
      { name: "t" },
    );
    return Promise.all([task, v.get()]);
  });
  equal(seen, [["parent", "t"], "parent"]);
  equal(ctx.get(v), "parent");
});

test("pinned: after an await a task body is no longer in its Context", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const seen = await v.run("parent", () =>
    createTask(async () => {
      await tick();
      return [v.get(), currentTask()?.name ?? "no task"];
    }),
  );
  equal(seen, ["root", "no task"]);
});

test("gather runs each function in its own copy, synchronously started", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const results = await v.run("caller", () =>
    gather(
      () => {
        v.set("a");
        return v.get();
      },
      () => v.get(),
    ),
  );
  equal(results, ["a", "caller"]);
});

test("isolated calls cannot see each other's sets", () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const work = isolated((name: string) => {
    const before = v.get();
    v.set(name);
    return `${before}->${v.get()}`;
  });
  equal([work("a"), work("b"), v.get()], ["root->a", "root->b", "root"]);
});

test("callSoon and callLater run in a copy of the Context current when scheduled", async () => {
  const v = new ContextVar<string>("v", { default: "root" });
  const seen = await v.run("scheduled", () =>
    Promise.all([
      new Promise<string>((resolve) => callSoon(() => resolve(v.get()))),
      new Promise<string>((resolve) => callLater(2, () => resolve(v.get()))),
    ]),
  );
  equal(seen, ["scheduled", "scheduled"]);
});

test("contextvars/async-context: Variable.run, and Snapshot.wrap across a timer", async () => {
  const traceId = new AsyncContext.Variable<string>({ name: "traceId", defaultValue: "none" });
  equal(
    traceId.run("t-1", () => traceId.get()),
    "t-1",
  );
  const later = await traceId.run("t-2", () => {
    const wrapped = AsyncContext.Snapshot.wrap(() => traceId.get());
    return new Promise<string | undefined>((resolve) => setTimeout(() => resolve(wrapped()), 1));
  });
  equal([later, traceId.get()], ["t-2", "none"]);
});

async function main(): Promise<void> {
  const results: Outcome[] = [];
  for (const [name, fn] of cases) {
    try {
      await fn();
      results.push({ name, ok: true });
    } catch (error) {
      results.push({
        name,
        ok: false,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
  const page = globalThis as { __results?: Outcome[]; __done?: boolean };
  page.__results = results;
  page.__done = true;
}

void main();
