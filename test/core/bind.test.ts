/**
 * bind(fn, context?): a function that runs fn in a fresh copy of a Context
 * on every call. Python has no bind; these tests hold it to the rules
 * ContextTest sets for `ctx.run` (test_context_run_2/3/5) and `copy()`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, Context, ContextVar, copyContext, isolated } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { tracedFunction } from "../helpers/traced-function.ts";

describe("bind", () => {
  itFromEveryState("the snapshot is taken at bind time, not at call time", () => {
    const c = new ContextVar<string>("c");
    c.set("at bind");
    const read = bind(() => c.get());
    c.set("at call");
    assert.equal(read(), "at bind");
    assert.equal(new Context().run(read), "at bind");
    assert.equal(c.get(), "at call");
  });

  itFromEveryState(
    "each call runs in a fresh copy: sets reach neither caller nor next call",
    () => {
      const c = new ContextVar<number>("c", { default: 0 });
      c.set(1);
      const bump = bind(() => {
        const seen = c.get();
        c.set(seen + 10);
        return [seen, c.get()];
      });
      assert.deepEqual(bump(), [1, 11]);
      assert.deepEqual(bump(), [1, 11]);
      assert.equal(c.get(), 1);
    },
  );

  itFromEveryState("with a context: calls see its values and never change it", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const ctx = new Context();
    ctx.run(() => c.set("in ctx"));
    const read = bind(() => {
      const seen = c.get();
      c.set("changed");
      return seen;
    }, ctx);
    assert.equal(read(), "in ctx");
    assert.equal(ctx.get(c), "in ctx");
    ctx.run(() => c.set("later"));
    assert.equal(read(), "later");
    assert.equal(c.get(), "default");
  });

  itFromEveryState("a bound function can be called while its context is being run", () => {
    const c = new ContextVar<string>("c");
    const ctx = new Context();
    const read = bind(() => c.get("unset"), ctx);
    ctx.run(() => {
      c.set("inside");
      assert.equal(read(), "inside");
    });
  });

  itFromEveryState("test_context_run_2: `this`, arguments and the result pass through", () => {
    const self = { base: 10 };
    const add = bind(function (this: { base: number }, a: number, b: number) {
      return this.base + a + b;
    });
    assert.equal(add.call(self, 1, 2), 13);
    const obj = { base: 100, add };
    assert.equal(obj.add(1, 2), 103);
    assert.equal(add.name, "bound ");
    function named() {}
    assert.equal(bind(named).name, "bound named");
  });

  itFromEveryState("test_context_run_5: a throw propagates; caller and context unchanged", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const ctx = new Context();
    const boom = new Error("boom");
    const fail = bind(() => {
      c.set("leaked?");
      throw boom;
    }, ctx);
    assert.throws(fail, (err) => err === boom);
    assert.equal(c.get(), "default");
    assert.equal(ctx.has(c), false);
  });

  itFromEveryState("async: the copy lasts across the call's awaits", async () => {
    const c = new ContextVar<string>("c");
    c.set("at bind");
    const later = bind(async () => {
      await sleep(1);
      const seen = c.get();
      c.set("inside");
      await sleep(1);
      return [seen, c.get()];
    });
    c.set("at call");
    assert.deepEqual(await later(), ["at bind", "inside"]);
    assert.equal(c.get(), "at call");
  });

  itFromEveryState("concurrent calls on equal timers never see each other", async () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const worker = bind(async (name: string) => {
      c.set(name);
      await sleep(2);
      return c.get();
    });
    assert.deepEqual(await Promise.all([worker("a"), worker("b"), worker("c")]), ["a", "b", "c"]);
    assert.equal(c.get(), "default");
  });

  itFromEveryState("a callback bound now runs later with the values of now", async () => {
    const c = new ContextVar<string>("c");
    c.set("scheduled");
    const seen = new Promise<string>((resolve) => {
      const callback = bind(() => resolve(c.get()));
      copyContext().run(() => {
        c.set("elsewhere");
        setTimeout(callback, 1);
      });
    });
    assert.equal(await seen, "scheduled");
  });

  it("keeps fn's length and names the result `bound <name>`, as Function#bind does", () => {
    function handler(_err: unknown, _req: unknown, _res: unknown, _next: unknown) {}
    const bound = bind(handler);
    assert.equal(bound.length, 4);
    assert.equal(bound.name, "bound handler");
    for (const fn of [() => 0, (_a: 1) => 1, (_a: 1, _b: 2, _c: 3, _d: 4, _e: 5) => 5]) {
      assert.equal(bind(fn).length, fn.length);
      assert.equal(bind(fn).length, fn.bind(null).length);
    }
    const count = bind(function (this: unknown, _a: unknown) {
      // biome-ignore lint/complexity/noArguments: the count is what is under test
      return arguments.length;
    });
    const loose = count as unknown as (...args: unknown[]) => number;
    assert.deepEqual([loose(), loose(1, 2)], [0, 2]);
  });

  it("a length that is not a positive number counts as 0, and a long one stays configurable, as Function#bind has it", () => {
    const withLength = (length: unknown): (() => number) => {
      const fn = () => 1;
      Object.defineProperty(fn, "length", { value: length });
      return fn;
    };
    for (const length of ["2", -1, Number.NaN, null]) {
      const fn = withLength(length);
      assert.equal(bind(fn).length, 0, String(length));
      assert.equal(bind(fn).length, fn.bind(null).length, String(length));
    }
    assert.equal(bind(withLength(2.5)).length, 2);
    const long = bind((_a: 1, _b: 2, _c: 3, _d: 4, _e: 5, _f: 6) => 6);
    assert.deepEqual(
      Object.getOwnPropertyDescriptor(long, "length"),
      Object.getOwnPropertyDescriptor(long.bind(null), "length"),
    );
  });

  it("an async function stays one, for the libraries that tell by its tag (async.js calls any other with a callback and waits on it)", async () => {
    const AsyncFunction = (async () => {}).constructor;
    const worker = async (name: string) => {
      await sleep(1);
      return name;
    };
    // As Function#bind's result is: its prototype is the target's.
    const nativeBound = worker.bind(null);
    assert.equal(Object.prototype.toString.call(nativeBound), "[object AsyncFunction]");
    const wrappers = [
      bind(worker),
      bind(worker, new Context()),
      isolated(worker),
      bind(nativeBound),
    ];
    for (const wrapped of wrappers) {
      assert.equal(Object.prototype.toString.call(wrapped), "[object AsyncFunction]");
      assert.ok(wrapped instanceof AsyncFunction);
      assert.equal(wrapped.constructor, AsyncFunction);
      assert.deepEqual(await Promise.all([wrapped("a"), wrapped("b")]), ["a", "b"]);
    }
    // Nothing else changes shape: a plain function, a generator, an async generator.
    const others = [() => 1, function* steps() {}, async function* pages() {}];
    for (const fn of others) {
      for (const wrapped of [bind(fn), isolated(fn)]) {
        assert.equal(Object.getPrototypeOf(wrapped), Function.prototype);
        assert.equal(Object.prototype.toString.call(wrapped), "[object Function]");
      }
    }
  });

  it("reads fn's own length, then its name, as Function#bind does", () => {
    const traced = (seen: string[]) =>
      tracedFunction(seen, function handler(_a: unknown, _b: unknown) {});
    const native: string[] = [];
    const ours: string[] = [];
    const nativeBound = Function.prototype.bind.call(traced(native), null);
    const bound = bind(traced(ours));
    assert.deepEqual(native, ["has own length", "get length", "get name"]);
    assert.deepEqual(ours, native);
    assert.deepEqual([bound.name, bound.length], [nativeBound.name, nativeBound.length]);
    // No own length: 0, whatever the prototype chain says.
    const inherited = () => 1;
    Reflect.deleteProperty(inherited, "length");
    Object.setPrototypeOf(inherited, Object.create(Function.prototype, { length: { value: 3 } }));
    assert.equal(Function.prototype.bind.call(inherited, null).length, 0);
    assert.equal(bind(inherited).length, 0);
  });

  it('a name that is not a string counts as "", as Function#bind has it', () => {
    const named = (name: unknown): (() => number) => {
      const fn = () => 1;
      Object.defineProperty(fn, "name", { value: name });
      return fn;
    };
    // A class with a static name() method has a function for a name.
    for (const fn of [named(Symbol("s")), named(() => "not a string"), named(undefined)]) {
      const native = Function.prototype.bind.call(fn, null).name;
      assert.equal(native, "bound ");
      assert.equal(bind(fn).name, native);
    }
  });

  it("TypeError for a non-function fn or a non-Context context", () => {
    const anyBind = bind as unknown as (fn: unknown, context?: unknown) => unknown;
    for (const fn of [undefined, null, 42, "fn", {}]) {
      assert.throws(() => anyBind(fn), TypeError);
    }
    for (const context of [null, 42, {}, copyContext]) {
      assert.throws(() => anyBind(() => 1, context), TypeError);
    }
    assert.throws(() => anyBind(42), /Expected `fn` to be a function, got `42` \(number\)/);
    assert.throws(() => anyBind(() => 1, {}), /Expected `context` to be a Context/);
  });

  it("a Context look-alike that passes instanceof (Object.create, a Proxy) is refused at bind time", () => {
    for (const fake of [Object.create(Context.prototype), new Proxy(new Context(), {})]) {
      assert.throws(() => bind(() => 1, fake), /Expected `context` to be a Context/);
    }
  });
});

// Up to four parameters the wrapper is written out for each count, past four
// it is built another way: each count is a separate path to call fn by.
describe("bind and isolated, whatever fn's length: this and every argument pass through, in a copy of the right Context", () => {
  type Self = { n: number };
  const c = new ContextVar<string>("c", { default: "default" });
  /** What the call was given and read, after which it sets c. */
  function seen(self: Self, args: IArguments): [number, unknown[], string] {
    const read = c.get();
    c.set("set in the call");
    return [self.n, [...args], read];
  }
  const fns = [
    function (this: Self) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
    function (this: Self, _a: unknown) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
    function (this: Self, _a: unknown, _b: unknown) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
    function (this: Self, _a: unknown, _b: unknown, _c: unknown) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
    function (this: Self, _a: unknown, _b: unknown, _c: unknown, _d: unknown) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
    function (this: Self, _a: unknown, _b: unknown, _c: unknown, _d: unknown, _e: unknown) {
      // biome-ignore lint/complexity/noArguments: what the call passed
      return seen(this, arguments);
    },
  ];
  for (const fn of fns) {
    itFromEveryState(`length ${fn.length}`, () => {
      const ctx = new Context();
      ctx.run(() => c.set("in ctx"));
      c.set("caller");
      // Called with more arguments than any fn declares.
      type Loose = (this: Self, ...args: unknown[]) => unknown;
      const self = {
        n: 7,
        isolated: isolated(fn) as Loose,
        bound: bind(fn) as Loose,
        boundTo: bind(fn, ctx) as Loose,
      };
      const args = [1, 2, 3, 4, 5, 6];
      assert.deepEqual(self.isolated(1, 2, 3, 4, 5, 6), [7, args, "caller"]);
      assert.deepEqual(self.bound(1, 2, 3, 4, 5, 6), [7, args, "caller"]);
      assert.deepEqual(self.boundTo(1, 2, 3, 4, 5, 6), [7, args, "in ctx"]);
      assert.equal(c.get(), "caller");
      assert.equal(ctx.get(c), "in ctx");
      // No path makes a constructor: AsyncContext.Snapshot.wrap's result, made
      // by the same wrapper, must not be one (test262 not-a-constructor.js).
      for (const wrapper of [self.isolated, self.bound, self.boundTo]) {
        assert.throws(() => new (wrapper as unknown as new () => object)(), TypeError);
        assert.equal(Object.hasOwn(wrapper, "prototype"), false);
      }
    });
  }
});
