/**
 * Promises that are not the engine's own: bluebird 3.7, the userland
 * promises of es6-promise, then/promise, q and when, core-js's, and
 * zone.js's ZoneAwarePromise, which replaces `globalThis.Promise` (Angular
 * SSR loads it in Node). The Context follows the engine's promises; a
 * userland promise runs its callbacks from its own queue, so:
 *
 * - an `await` of any of them resumes in the awaiting Context (the engine
 *   calls `then` with resolve functions of its own);
 * - a `.then` callback runs in the Context of the code that _resolved_ the
 *   promise (its queue is flushed there): another request's values, and a
 *   set in the callback lands in that request. bluebird, which flushes its
 *   queue once per turn, runs every callback queued in one turn in the
 *   Context of the first; `Promise.config({ asyncHooks: true })` makes
 *   each run where it was attached;
 * - createTask, gather and TaskGroup take them as they take any thenable;
 * - with the global replaced (child processes: fixtures/global-promise.ts),
 *   the library's own promises stay the engine's, so under a bluebird global
 *   or a forced core-js a `.then` on a task, on gather or on timeout runs
 *   where it was attached; zone.js replaces the engine's `then` too, so
 *   there only awaits are pinned;
 * - compiled below ES2017, where an async function's result is the global's
 *   Promise, what the package takes for the engine's is the global of load
 *   time.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import Bluebird from "bluebird";
import { bind, Context, ContextVar, createTask, gather, TaskGroup } from "contextvars";
import { transformSync } from "esbuild";
import { fixtureResult } from "../helpers/fixture-process.ts";

const require = createRequire(import.meta.url);
const fixture = fileURLToPath(new URL("fixtures/global-promise.ts", import.meta.url));

const v = new ContextVar<string>("v", { default: "none" });
const REQUESTS = 8;

/** Runs `body(id)` in REQUESTS fresh Contexts at once, each with `v` set to its id. */
function requests<T>(body: (id: string, i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(
    Array.from({ length: REQUESTS }, (_, i) =>
      new Context().run(() => {
        const id = `request ${i}`;
        v.set(id);
        return body(id, i);
      }),
    ),
  );
}

/** What a userland promise library gives: a constructor with `then` on its instances. */
type PromiseLibrary = new <T>(
  executor: (resolve: (value: T) => void, reject: (error: unknown) => void) => void,
) => PromiseLike<T>;

/**
 * A promise of `P` resolved from a timer started in a Context of its own,
 * whose `v` is "resolver", once every request has called `arrive()` (each
 * calls it just before it attaches a callback or awaits, so that none finds
 * the promise already resolved, however slow the machine); with that
 * Context, to read afterwards.
 */
function resolvedElsewhere(P: PromiseLibrary) {
  let release!: () => void;
  const promise = new P<void>((resolve) => {
    release = () => resolve();
  });
  const resolver = new Context();
  resolver.run(() => v.set("resolver"));
  let arrived = 0;
  const arrive = () => {
    if (++arrived === REQUESTS) resolver.run(() => setTimeout(() => release(), 1));
  };
  return { promise, resolver, arrive };
}

describe("bluebird 3.7", () => {
  // Two copies of the library, each with its own configuration and queue.
  const Plain = Bluebird.getNewLibraryCopy();
  const Hooked = Bluebird.getNewLibraryCopy();
  Hooked.config({ asyncHooks: true });

  it("without asyncHooks, .then callbacks run in the Context that resolved the promise, and their sets land there", async () => {
    const { promise, resolver, arrive } = resolvedElsewhere(Plain as unknown as PromiseLibrary);
    const saw = await requests(async (id) => {
      arrive();
      const inCallback = await promise.then(() => {
        const seen = v.get();
        v.set(`${id} was here`);
        return seen;
      });
      assert.equal(v.get(), id, "the awaiting request is unchanged");
      return inCallback;
    });
    // All run one after another in the resolver's Context: the first sees its
    // value, each later one the set of the callback before it.
    assert.equal(saw.filter((seen) => seen === "resolver").length, 1);
    assert.equal(saw.filter((seen) => / was here$/.test(seen)).length, REQUESTS - 1);
    assert.match(resolver.get(v) ?? "", /^request \d was here$/);
  });

  it("without asyncHooks, callbacks queued in one turn run in the first one's Context: Promise.map mappers see other requests", async (t) => {
    const saw = await requests(async (id) => {
      const mapped = await Plain.map([3, 1, 2], (ms) => Plain.delay(ms).then(() => v.get() === id));
      return mapped.filter((own) => !own).length;
    });
    const others = saw.reduce((a, b) => a + b, 0);
    // How many depends on which timers fire together: the count goes in the report.
    t.diagnostic(`of ${3 * REQUESTS} mappers, ${others} saw another request`);
    assert.ok(others > 0, `of ${3 * REQUESTS} mappers, ${others} saw another request`);
  });

  it("with asyncHooks: true, .then, Promise.map, Promise.delay and promisifyAll callbacks run where they were attached", async () => {
    const { promise, resolver, arrive } = resolvedElsewhere(Hooked as unknown as PromiseLibrary);
    const api = Hooked.promisifyAll({
      read(ms: number, callback: (error: unknown, result?: number) => void) {
        setTimeout(() => callback(null, ms), ms);
      },
    });
    const own = await requests(async (id, i) => {
      const checks: boolean[] = [];
      await Hooked.delay(1 + (i % 3)).then(() => checks.push(v.get() === id));
      await Hooked.map([3, 1, 2], (ms) => Hooked.delay(ms).then(() => checks.push(v.get() === id)));
      await api.readAsync(1 + (i % 2)).then(() => checks.push(v.get() === id));
      arrive();
      await promise.then(() => {
        checks.push(v.get() === id);
        v.set(`${id}: set in a callback`);
      });
      checks.push(v.get() === `${id}: set in a callback`);
      return checks;
    });
    assert.deepEqual(own.flat(), Array(7 * REQUESTS).fill(true));
    assert.equal(resolver.get(v), "resolver");
  });

  for (const [name, P] of [
    ["without asyncHooks", Plain],
    ["with asyncHooks", Hooked],
  ] as const) {
    it(`${name}, an await of a bluebird promise resumes in the awaiting Context`, async () => {
      const { promise, arrive } = resolvedElsewhere(P as unknown as PromiseLibrary);
      const own = await requests(async (id, i) => {
        await P.delay(1 + (i % 3));
        const first = v.get() === id;
        await P.map([2, 1], (ms) => P.delay(ms));
        const second = v.get() === id;
        arrive();
        await promise;
        return first && second && v.get() === id;
      });
      assert.deepEqual(own, Array(REQUESTS).fill(true));
    });
  }

  it("without asyncHooks, bind(callback) runs each callback in a copy of the Context it was bound in", async () => {
    const { promise, arrive } = resolvedElsewhere(Plain as unknown as PromiseLibrary);
    const own = await requests(async (id) => {
      const mapped = await Plain.map(
        [3, 1, 2],
        bind((ms: number) => Plain.delay(ms).then(bind(() => v.get() === id))),
      );
      arrive();
      const gated = await promise.then(bind(() => v.get() === id));
      return [...mapped, gated].every(Boolean);
    });
    assert.deepEqual(own, Array(REQUESTS).fill(true));
  });

  it("createTask, gather and TaskGroup take bluebird promises, returned or given, and keep each task's sets in it", async () => {
    const results = await requests(async (id) => {
      const fromTask = await createTask(() =>
        Plain.delay(2).then(() => {
          v.set(`${id}: task`);
          return "done";
        }),
      );
      const gathered = await gather(
        () => Plain.delay(1).then(() => "from a function"),
        Plain.delay(1).then(() => "given"),
        async () => {
          v.set("child");
          await Plain.delay(1);
          return v.get();
        },
      );
      const group = new TaskGroup();
      const child = group.createTask(() => Plain.delay(1).then(() => 7));
      await group.wait();
      const adopted = await Plain.resolve(createTask(async () => v.get()));
      return { fromTask, gathered, child: await child, adopted, after: v.get() === id };
    });
    for (const [i, result] of results.entries()) {
      assert.deepEqual(result, {
        fromTask: "done",
        gathered: ["from a function", "given", "child"],
        child: 7,
        adopted: `request ${i}`,
        after: true,
      });
    }
  });

  it("a rejected bluebird promise rejects the task and gather with its reason", async () => {
    const failure = new Error("from bluebird");
    await assert.rejects(
      createTask(() => Plain.delay(1).then(() => Plain.reject(failure))),
      failure,
    );
    await assert.rejects(
      gather(() => Plain.reject(failure), Plain.delay(5)),
      failure,
    );
  });
});

describe("userland promise libraries (the global left alone)", () => {
  // core-js-pure, where the runtime's Promise passes its checks, makes the engine's
  // promises (P.resolve(1) is an instance of Promise, with its then).
  const libraries: ReadonlyArray<readonly [string, PromiseLibrary, "resolver" | "attacher"]> = [
    ["es6-promise 4", require("es6-promise").Promise, "resolver"],
    ["promise 8 (then/promise)", require("promise"), "resolver"],
    ["q 1.5", require("q").Promise, "resolver"],
    ["when 3.7", require("when").Promise, "resolver"],
    ["core-js-pure 3", require("core-js-pure/actual/promise"), "attacher"],
  ];

  for (const [name, P, runsIn] of libraries) {
    it(`${name}: a .then callback on a promise resolved in another Context runs in ${runsIn === "resolver" ? "the resolver's" : "the attaching one"}; awaits resume in their own`, async () => {
      const { promise, arrive } = resolvedElsewhere(P);
      const saw = await requests(async (id) => {
        arrive();
        const gated = await promise.then(() => v.get());
        return { gated, after: v.get() === id };
      });
      for (const [i, seen] of saw.entries()) {
        assert.deepEqual(seen, {
          gated: runsIn === "resolver" ? "resolver" : `request ${i}`,
          after: true,
        });
      }
    });
  }
});

describe("a replaced globalThis.Promise (child processes)", () => {
  const all = REQUESTS;

  // zone.js patches the engine's own Promise.prototype.then too: a callback
  // attached to any promise goes through its queue, and those queued in one
  // turn run in the first one's Context (wrapFetch's refusal: 1 of 8). So
  // under zone.js only awaits are pinned; `.then` on the package's promises
  // runs where it was attached under the other two.
  const thenChecks = [
    "createTask(fn).then(callback)",
    "gather(...).then(callback)",
    "TaskGroup wait().then(callback)",
    "timeout(ms, fn).then(callback)",
    "withContext(handler)(request).then(callback)",
    "wrapFetch(fetch)(bad headers).catch(callback)",
  ];
  for (const mode of ["zone.js before", "zone.js after", "bluebird as global", "core-js forced"]) {
    it(`${mode}: awaits, tasks, gather and TaskGroup keep each Context${mode.startsWith("zone.js") ? "" : "; .then on the package's promises runs where attached"}`, async () => {
      const own = await fixtureResult<Record<string, number>>(fixture, { args: [mode] });
      // bluebird runs all that one turn resolved in the first one's Context:
      // how many that is depends on which timers fire together.
      const attaching = own["then, resolved in the attaching Context"] ?? 0;
      const zone = mode.startsWith("zone.js");
      const refusedOwn = own["wrapFetch(fetch)(bad headers).catch(callback)"] ?? 0;
      assert.deepEqual(own, {
        replaced: 1,
        await: all,
        "then, resolved in the attaching Context": mode === "bluebird as global" ? attaching : all,
        // Userland callbacks run where the promise was resolved: none sees its own.
        "then, resolved in another Context": 0,
        "await after that": all,
        "a task's sets stay in it": all,
        "gather isolates": all,
        "TaskGroup isolates": all,
        ...Object.fromEntries(thenChecks.map((check) => [check, zone ? own[check] : all])),
      });
      if (zone) assert.ok(refusedOwn < all, `${refusedOwn} of ${all}`);
    });
  }
});

describe("the package compiled below ES2017 (async functions made of generators)", () => {
  const source = readFileSync(new URL("../../src/core/native-promise.ts", import.meta.url), "utf8");
  /** native-promise.ts compiled by esbuild for `target`, run with `Promise` standing for the global. */
  const loadedUnder = (target: string, global: PromiseConstructor): unknown => {
    const { code } = transformSync(source, { loader: "ts", target, format: "cjs" });
    const module = { exports: {} as { NativePromise?: unknown } };
    new Function("module", "exports", "Promise", code)(module, module.exports, global);
    return module.exports.NativePromise;
  };
  const engine = (async () => {})().constructor;
  const bluebird = Bluebird as unknown as PromiseConstructor;

  it("for ES2017 the engine's Promise is found under a bluebird global; for ES2016 it is the global of load time", () => {
    assert.equal(loadedUnder("es2017", bluebird), engine);
    assert.equal(loadedUnder("es2016", bluebird), bluebird);
  });
});
