/**
 * Context: run, copy, copyContext and the Map-like surface. Ported from
 * CPython's Lib/test/test_context.py (ContextTest); Python's `with ctx:`
 * tests are ported onto `ctx.run`, the one way to enter a Context here.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";
import { Context, ContextVar, copyContext } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

type Entry = [ContextVar<unknown>, unknown];

describe("Context", () => {
  it("test_context_new_1: new Context() is empty, and takes no arguments", () => {
    const ctx = new Context();
    assert.equal(ctx.size, 0);
    assert.deepEqual([...ctx], []);
    // CPython: "Context() does not accept any arguments". A mapping given as
    // to new Map() was dropped without a word, leaving an empty Context.
    const AnyContext = Context as unknown as new (...args: unknown[]) => Context;
    const v = new ContextVar<number>("v");
    for (const args of [[new Map([[v, 1]])], [[[v, 1]]], [{}]]) {
      assert.throws(() => new AnyContext(...args), {
        name: "TypeError",
        message:
          /^new Context\(\) takes no arguments, got .*; a Context starts empty: set values inside its run, ctx\.run\(\(\) => v\.set\(value\)\)$/,
      });
    }
  });

  itFromEveryState("test_context_get_context_1: copyContext() is a Context", () => {
    assert.ok(copyContext() instanceof Context);
    assert.notEqual(copyContext(), copyContext());
  });

  itFromEveryState("test_context_run_2: run passes the arguments and returns the result", () => {
    const ctx = new Context();
    const fn = (...args: unknown[]) => [...args, "bar"];
    assert.deepEqual(ctx.run(fn), ["bar"]);
    assert.deepEqual(ctx.run(fn, 1), [1, "bar"]);
    assert.deepEqual(ctx.run(fn, 11, 22), [11, 22, "bar"]);
    // functools.partial in Python: a bound function with preset arguments.
    const partial = fn.bind(null, "preset");
    assert.deepEqual(ctx.run(partial, 1), ["preset", 1, "bar"]);
  });

  itFromEveryState("test_context_run_3: a throw from fn propagates", () => {
    const ctx = new Context();
    const fn = (..._args: unknown[]): never => assert.fail(new RangeError("division by zero"));
    assert.throws(() => ctx.run(fn), RangeError);
    assert.throws(() => ctx.run(fn, 1, 2), RangeError);
  });

  itFromEveryState("test_context_run_4: nested runs see only their own Context", () => {
    const ctx1 = new Context();
    const ctx2 = new Context();
    const v = new ContextVar<string>("var");
    const func2 = () => assert.equal(v.get(undefined), undefined);
    const func1 = () => {
      assert.equal(v.get(undefined), undefined);
      v.set("spam");
      ctx2.run(func2);
      assert.equal(v.get(undefined), "spam");
      const cur = copyContext();
      assert.equal(cur.size, 1);
      assert.equal(cur.get(v), "spam");
      return cur;
    };
    const returned = ctx1.run(func1);
    assert.deepEqual([...returned], [...ctx1]);
    assert.equal(returned.get(v), "spam");
    assert.equal(returned.has(v), true);
    assert.equal(v.get(undefined), undefined);
  });

  itFromEveryState("test_context_run_5: a throw spares the caller; ctx keeps its sets", () => {
    const ctx = new Context();
    const v = new ContextVar<string>("var");
    assert.throws(() =>
      ctx.run(() => {
        v.set("spam");
        throw new RangeError("division by zero");
      }),
    );
    assert.equal(v.get(undefined), undefined);
    assert.equal(ctx.get(v), "spam");
  });

  itFromEveryState("test_context_run_6: ctx.get ignores the var's default", () => {
    const ctx = new Context();
    const c = new ContextVar<number>("a", { default: 0 });
    ctx.run(() => {
      assert.equal(c.get(), 0);
      assert.equal(ctx.get(c), undefined);
      c.set(42);
      assert.equal(c.get(), 42);
      assert.equal(ctx.get(c), 42);
    });
  });

  itFromEveryState("test_context_getset_1: copyContext() keeps the values at copy time", () => {
    const c = new ContextVar<string>("c");
    const t0 = c.set("spam2");
    const ctx1 = copyContext();
    c.reset(t0);
    ctx1.run(() => c.set("in copy"));
    assert.equal(c.get(undefined), undefined);
    assert.equal(ctx1.get(c), "in copy");
    ctx1.run(() => c.set("spam2"));
    assert.equal(ctx1.has(c), true);
    assert.equal(ctx1.get(c), "spam2");
    assert.equal(ctx1.get(c, "aa"), "spam2");
    const ours = (ctx: Context) => [...ctx.keys()].filter((k) => k === c);
    assert.deepEqual(ours(ctx1), [c]);
    assert.ok([...ctx1.entries()].some(([k, v]) => k === c && v === "spam2"));
    const ctx2 = copyContext();
    assert.equal(ctx2.has(c), false);
    assert.equal(ctx2.get(c), undefined);
    assert.equal(ctx2.get(c, "aa"), "aa");
    assert.deepEqual(ours(ctx2), []);
    assert.equal(ctx2.size, ctx1.size - 1);
  });

  itFromEveryState("test_context_getset_3: ctx reads follow the sets made in its run", () => {
    const c = new ContextVar<number>("c", { default: 42 });
    const ctx = new Context();
    ctx.run(() => {
      assert.equal(c.get(), 42);
      assert.equal(ctx.get(c), undefined);
      assert.equal(ctx.get(c, "spam"), "spam");
      assert.equal(ctx.has(c), false);
      assert.deepEqual([...ctx.keys()], []);
      const t = c.set(1);
      assert.deepEqual([...ctx.keys()], [c]);
      assert.equal(ctx.get(c), 1);
      c.reset(t);
      assert.deepEqual([...ctx.keys()], []);
      assert.equal(ctx.get(c), undefined);
    });
  });

  itFromEveryState("test_context_copy_1: copy and original never see each other's sets", () => {
    const ctx1 = new Context();
    const c = new ContextVar<number>("c", { default: 42 });
    ctx1.run(() => {
      c.set(10);
      const ctx2 = ctx1.copy();
      assert.equal(ctx2.get(c), 10);
      c.set(20);
      assert.equal(ctx1.get(c), 20);
      assert.equal(ctx2.get(c), 10);
      ctx2.run(() => {
        assert.equal(c.get(), 10);
        c.set(30);
        assert.equal(c.get(), 30);
      });
      assert.equal(ctx1.get(c), 20);
      assert.equal(ctx2.get(c), 30);
    });
  });

  itFromEveryState("test_context_manager: a run of a copy leaves the caller's value", () => {
    const cvar = new ContextVar<string>("cvar", { default: "initial" });
    copyContext().run(() => {
      assert.equal(cvar.get(), "initial");
      cvar.set("updated");
      assert.equal(cvar.get(), "updated");
    });
    assert.equal(cvar.get(), "initial");
  });

  itFromEveryState("test_context_manager_nested: nested copies each keep their own", () => {
    const cvar = new ContextVar<string>("cvar", { default: "default" });
    const outer = copyContext();
    outer.run(() => {
      cvar.set("outer");
      const inner = copyContext();
      assert.notEqual(inner, outer);
      inner.run(() => {
        assert.equal(cvar.get(), "outer");
        cvar.set("inner");
        assert.equal(outer.get(cvar), "outer");
        assert.equal(cvar.get(), "inner");
      });
      assert.equal(cvar.get(), "outer");
    });
    assert.equal(cvar.get(), "default");
  });

  itFromEveryState("test_context_manager_enter_again_after_exit: a run's sets persist", () => {
    const cvar = new ContextVar<string>("cvar", { default: "initial" });
    const ctx = copyContext();
    ctx.run(() => cvar.set("updated"));
    assert.equal(cvar.get(), "initial");
    ctx.run(() => assert.equal(cvar.get(), "updated"));
    assert.equal(cvar.get(), "initial");
  });

  itFromEveryState("async: a run's continuations share its one Context", async () => {
    const c = new ContextVar<string>("c");
    const ctx = new Context();
    const callee = async () => {
      await sleep(1);
      c.set("set by callee");
    };
    const seen = await ctx.run(async () => {
      await callee();
      return c.get();
    });
    assert.equal(seen, "set by callee");
    assert.equal(ctx.get(c), "set by callee");
    assert.equal(c.get(undefined), undefined);
  });

  itFromEveryState("concurrent runs of sibling copies do not see each other", async () => {
    const c = new ContextVar<string>("c");
    c.set("outer");
    const run = (name: string) =>
      copyContext().run(async () => {
        c.set(name);
        await sleep(2);
        return c.get();
      });
    assert.deepEqual(await Promise.all([run("a"), run("b"), run("c")]), ["a", "b", "c"]);
    assert.equal(c.get(), "outer");
  });
});

describe("Context is Map-like", () => {
  const a = new ContextVar<number>("a");
  const b = new ContextVar<string>("b");
  const filled = () => {
    const ctx = new Context();
    ctx.run(() => [a.set(1), b.set("two")]);
    return ctx;
  };

  it("size, has, get with fallback", () => {
    const ctx = filled();
    assert.equal(ctx.size, 2);
    assert.equal(ctx.has(a), true);
    assert.equal(ctx.has(new ContextVar("a")), false);
    assert.equal(ctx.get(a), 1);
    assert.equal(ctx.get(new ContextVar<number>("x"), "fallback"), "fallback");
  });

  it("keys, values, entries, iteration and forEach agree, in one order", () => {
    const ctx = filled();
    const entries: Entry[] = [...ctx.entries()];
    assert.equal(entries.length, 2);
    const keys = entries.map(([k]) => k);
    assert.deepEqual(new Set(keys), new Set([a, b]));
    assert.deepEqual([...ctx.keys()], keys);
    const values = entries.map(([, v]) => v);
    assert.deepEqual([...ctx.values()], values);
    assert.deepEqual([...ctx], entries);
    const seen: Entry[] = [];
    const self = {};
    ctx.forEach(function (this: unknown, value, key, map) {
      assert.equal(this, self);
      assert.equal(map, ctx);
      seen.push([key, value]);
    }, self);
    assert.deepEqual(seen, entries);
  });

  it("forEach calls fn as Map#forEach does, not through a call property fn may have replaced", () => {
    const ctx = filled();
    const calls = (target: { forEach(fn: (value: unknown) => void): void }): unknown[] => {
      const seen: unknown[] = [];
      const fn = (value: unknown) => seen.push(value);
      Object.defineProperty(fn, "call", { value: () => seen.push("own call") });
      target.forEach(fn);
      const proxied = new Proxy((value: unknown) => seen.push(["proxy", value]), {
        get() {
          throw new Error("get trap");
        },
      });
      target.forEach(proxied);
      return seen;
    };
    const asMap = calls(new Map(ctx));
    assert.deepEqual(calls(ctx), asMap);
    const values = [...ctx.values()];
    assert.deepEqual(asMap, [...values, ...values.map((value) => ["proxy", value])]);
  });

  it("satisfies ReadonlyMap: new Map(ctx) holds the same entries", () => {
    const map: ReadonlyMap<ContextVar<unknown>, unknown> = filled();
    const copy = new Map(map);
    assert.deepEqual([copy.size, copy.get(a), copy.get(b)], [2, 1, "two"]);
  });

  it("equal contents iterate in the same order, whatever order the sets came in", () => {
    const vars = Array.from({ length: 40 }, (_, i) => new ContextVar<number>(`v${i}`));
    const forwards = new Context();
    const backwards = new Context();
    forwards.run(() => {
      for (const [i, v] of vars.entries()) v.set(i);
    });
    backwards.run(() => {
      for (const [i, v] of [...vars.entries()].reverse()) v.set(i);
    });
    assert.deepEqual([...forwards.keys()], [...backwards.keys()]);
    assert.deepEqual([...forwards], [...backwards]);
  });
});

describe("Context reads well", () => {
  it("test_context_var_repr_1: toString, toStringTag and inspect", () => {
    const ctx = new Context();
    const user = new ContextVar<string>("user");
    assert.match(String(ctx), /^<Context #\d+ size=0>$/);
    assert.equal(Object.prototype.toString.call(ctx), "[object Context]");
    assert.match(inspect(ctx), /^Context #\d+ \{\}$/);
    ctx.run(() => user.set("alice"));
    assert.match(String(ctx), /^<Context #\d+ size=1>$/);
    assert.match(inspect(ctx), /^Context #\d+ \{ user: 'alice' \}$/);
    assert.notEqual(String(ctx), String(new Context()));
  });

  it("test_context_var_repr_1: a Context that holds itself inspects without recursing", () => {
    const ctx = new Context();
    const self = new ContextVar<unknown>("self");
    ctx.run(() => self.set(ctx));
    const shown = inspect(ctx); // threw RangeError (stack overflow) before the fix
    assert.match(shown, /^Context #\d+ \{ self: \[Circular\] \}$/);
  });

  it("a Context holding a function that leads back to it shows the function as [Circular] inside", () => {
    const ctx = new Context();
    const fn = Object.assign(function handler() {}, { ctx });
    const v = new ContextVar<unknown>("v");
    ctx.run(() => v.set(fn));
    const shown = inspect(ctx, { depth: 10 });
    assert.match(
      shown,
      /^Context #(\d+) \{ v: \[Function: handler\] \{ ctx: Context #\1 \{ v: \[Circular\] \} \} \}$/,
    );
  });

  it("inspect stops at the depth a Map stops at, and shows a nested Context short beyond it", () => {
    const deep = { l1: { l2: { l3: { l4: 1 } } } };
    const v = new ContextVar<unknown>("v");
    const ctx = new Context();
    ctx.run(() => v.set(deep));
    const map = new Map([["v", deep]]);
    const body = (shown: string) => shown.slice(shown.indexOf("{"));
    for (const depth of [0, 1, 2]) {
      assert.equal(
        body(inspect(ctx, { depth })),
        body(inspect(map, { depth })).replace("'v' => ", "v: "),
        `depth ${depth}`,
      );
    }
    assert.match(
      inspect({ a: { b: { c: ctx } } }),
      /^\{ a: \{ b: \{ c: \[Context #\d+\] \} \} \}$/,
    );
  });

  it("inspect separates the vars with a comma", () => {
    const a = new ContextVar<number>("a");
    const b = new ContextVar<number>("b");
    const ctx = new Context();
    ctx.run(() => {
      a.set(1);
      b.set(2);
    });
    assert.match(inspect(ctx), /^Context #\d+ \{ (a: 1, b: 2|b: 2, a: 1) \}$/);
  });

  it("a Context inspected once is not taken for a cycle when shown again inside another", () => {
    const inner = new Context();
    const outer = new Context();
    const v = new ContextVar<unknown>("v");
    inner.run(() => v.set(1));
    outer.run(() => v.set(inner));
    assert.match(inspect(inner), /^Context #\d+ \{ v: 1 \}$/);
    assert.match(inspect(outer), /^Context #\d+ \{ v: Context #\d+ \{ v: 1 \} \}$/);
  });

  it("called without Node's inspect function, the inspector quotes names and strings as JSON and shows other values with String()", () => {
    const name = new ContextVar<string>("user-name");
    const count = new ContextVar<bigint>("count");
    const ctx = new Context();
    ctx.run(() => {
      name.set('al"ice');
      count.set(10n);
    });
    const custom = (ctx as unknown as Record<symbol, (depth: number, options: object) => string>)[
      Symbol.for("nodejs.util.inspect.custom")
    ];
    const shown = custom?.call(ctx, 2, {});
    assert.match(String(shown), /^Context #\d+ \{ .* \}$/);
    assert.ok(shown?.includes('"user-name": "al\\"ice"'), shown);
    assert.ok(shown?.includes("count: 10"), shown);
  });

  it("inspect with depth: null shows the values to any depth, as for a Map", () => {
    const deep = { l1: { l2: { l3: { l4: 1 } } } };
    const v = new ContextVar<unknown>("v");
    const ctx = new Context();
    ctx.run(() => v.set(deep));
    const shown = inspect(ctx, { depth: null });
    assert.ok(shown.includes("l4: 1"), shown);
  });

  it("a Context reached again through one of its values, then held directly by a later var: both are cycles", () => {
    const ctx = new Context();
    const first = new ContextVar<unknown>("first");
    const second = new ContextVar<unknown>("second");
    ctx.run(() => {
      first.set(0);
      second.set(0);
    });
    // Whichever var the map lists first holds an object that leads back to
    // ctx; the other holds ctx itself.
    const [earlier, later] = [...ctx.keys()] as ContextVar<unknown>[];
    ctx.run(() => {
      earlier?.set({ back: ctx });
      later?.set(ctx);
    });
    const shown = inspect(ctx, { depth: 10 });
    assert.match(
      shown,
      new RegExp(
        `^Context #(\\d+) \\{ ${earlier?.name}: \\{ back: Context #\\1 \\{ ${earlier?.name}: \\[Circular\\], ${later?.name}: \\[Circular\\] \\} \\}, ${later?.name}: \\[Circular\\] \\}$`,
      ),
    );
  });

  it("inspect quotes a var name that is not an identifier", () => {
    const odd = new ContextVar<number>('we"ird\n}, x');
    const plain = new ContextVar<number>("plain_1");
    const empty = new ContextVar<number>("");
    const ctx = new Context();
    ctx.run(() => {
      odd.set(1);
      plain.set(2);
      empty.set(3);
    });
    const shown = inspect(ctx);
    assert.ok(shown.includes(`${inspect('we"ird\n}, x')}: 1`), shown);
    assert.ok(shown.includes("plain_1: 2"), shown);
    assert.ok(shown.includes("'': 3"), shown);
    assert.ok(!shown.includes("\n"), "one line");
  });
});
