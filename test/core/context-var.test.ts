/**
 * ContextVar: construction, get/set and the `get(fallback)` rule, `var.run`,
 * and how a var reads. Ported from CPython's Lib/test/test_context.py
 * (ContextTest); each ported test keeps its original name.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";
import { ContextVar, copyContext, gather, LookupError, MISSING } from "contextvars";
import { isLocalOnly } from "../../src/core/inherit.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

describe("ContextVar", () => {
  it("options.transfer is read once: the value checked is the value used", () => {
    let reads = 0;
    const options = {
      get transfer() {
        return reads++ === 0 ? undefined : false;
      },
    };
    const v = new ContextVar<string>("read-once", options as { transfer?: boolean });
    assert.equal(reads, 1);
    assert.equal(isLocalOnly(v as ContextVar<unknown>), false);
  });

  it("options.transfer: false makes a local-only var; true, undefined or no options do not", () => {
    assert.equal(
      isLocalOnly(new ContextVar<number>("a", { transfer: false }) as ContextVar<unknown>),
      true,
    );
    for (const v of [
      new ContextVar<number>("b", { transfer: true }),
      new ContextVar<number>("c", { transfer: undefined }),
      new ContextVar<number>("d", {}),
      new ContextVar<number>("e"),
    ]) {
      assert.equal(isLocalOnly(v as ContextVar<unknown>), false, v.name);
    }
  });

  it("test_context_var_new_1: the name is kept and cannot be reassigned", () => {
    const c = new ContextVar<number>("aaa");
    assert.equal(c.name, "aaa");
    assert.throws(() => {
      (c as { name: string }).name = "bbb";
    }, TypeError);
    assert.equal(c.name, "aaa");
  });

  itFromEveryState("test_context_var_new_1: two vars with one name are two keys", () => {
    // Python checks hash(c) != hash(name): a var is its own key, not its name.
    const a = new ContextVar<number>("same");
    const b = new ContextVar<number>("same");
    a.set(1);
    assert.equal(b.get("none"), "none");
    assert.equal(copyContext().has(a), true);
    assert.equal(copyContext().has(b), false);
  });

  itFromEveryState("test_context_getset_1: get() of an unset var throws LookupError", () => {
    const c = new ContextVar<number>("c");
    assert.throws(() => c.get(), LookupError);
    assert.equal(c.get(undefined), undefined);
    c.set(42);
    assert.equal(c.get(), 42);
    assert.equal(c.get(undefined), 42);
    c.set(43);
    assert.equal(c.get(), 43);
  });

  itFromEveryState("get(fallback): value, then fallback, then default, then LookupError", () => {
    const withDefault = new ContextVar<string>("withDefault", { default: "default" });
    const bare = new ContextVar<string>("bare");
    assert.equal(withDefault.get(), "default");
    assert.equal(withDefault.get("fallback"), "fallback");
    assert.throws(() => bare.get(), LookupError);
    assert.equal(bare.get("fallback"), "fallback");
    withDefault.set("value");
    bare.set("value");
    assert.equal(withDefault.get("fallback"), "value");
    assert.equal(bare.get("fallback"), "value");
  });

  itFromEveryState("get(undefined) returns undefined, as Python's get(None)", () => {
    const c = new ContextVar<number>("c", { default: 42 });
    assert.equal(c.get(undefined), undefined);
    assert.equal(c.get(), 42);
  });

  itFromEveryState("{ default: undefined } counts as a default", () => {
    const c = new ContextVar<number | undefined>("c", { default: undefined });
    assert.equal(c.get(), undefined);
    const none = new ContextVar<number>("none", {});
    assert.throws(() => none.get(), LookupError);
  });

  itFromEveryState("set(undefined) is a value: it hides the fallback and the default", () => {
    const c = new ContextVar<number | undefined>("c", { default: 1 });
    c.set(undefined);
    assert.equal(c.get(), undefined);
    assert.equal(c.get(2), undefined);
    assert.equal(copyContext().has(c), true);
  });

  itFromEveryState("test_context_getset_5: a set in a copy leaves the caller's value", () => {
    const c = new ContextVar<number[]>("c", { default: [42] });
    const outer: number[] = [];
    c.set(outer);
    copyContext().run(() => {
      c.set([]);
      c.get().push(42);
      assert.deepEqual(c.get(), [42]);
    });
    assert.equal(c.get(), outer);
    assert.deepEqual(outer, []);
  });
});

describe("ContextVar.defaultValue", () => {
  it("is the default given, undefined for { default: undefined }, MISSING without one", () => {
    assert.equal(new ContextVar<number>("a", { default: 5 }).defaultValue, 5);
    assert.equal(new ContextVar<undefined>("b", { default: undefined }).defaultValue, undefined);
    assert.equal(new ContextVar<number>("c").defaultValue, MISSING);
    assert.equal(new ContextVar<number>("d", {}).defaultValue, MISSING);
  });

  itFromEveryState(
    "MISSING given as the default is a default, as Token.MISSING is in CPython",
    () => {
      // ContextVar('x', default=Token.MISSING).get() returns Token.MISSING.
      const v = new ContextVar<symbol>("x", { default: MISSING });
      assert.equal(v.defaultValue, MISSING);
      assert.equal(v.get(), MISSING);
      assert.equal(v.get("fallback"), "fallback");
      assert.match(inspect(v), /default=/);
    },
  );
});

describe("ContextVar.run", () => {
  itFromEveryState("passes the arguments and returns fn's result", () => {
    const c = new ContextVar<string>("c");
    const result = c.run("inner", (a: number, b: string) => [c.get(), a, b], 1, "two");
    assert.deepEqual(result, ["inner", 1, "two"]);
  });

  itFromEveryState("fn sees the caller's other vars; the caller sees none of fn's sets", () => {
    const c = new ContextVar<string>("c");
    const other = new ContextVar<string>("other");
    const added = new ContextVar<string>("added");
    c.set("outer");
    other.set("kept");
    c.run("inner", () => {
      assert.equal(c.get(), "inner");
      assert.equal(other.get(), "kept");
      other.set("changed");
      added.set("new");
    });
    assert.equal(c.get(), "outer");
    assert.equal(other.get(), "kept");
    assert.equal(added.get("unset"), "unset");
  });

  itFromEveryState("a throw propagates and leaves the caller's Context unchanged", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const other = new ContextVar<string>("other");
    const boom = new Error("boom");
    assert.throws(
      () =>
        c.run("inner", () => {
          other.set("leaked?");
          throw boom;
        }),
      (err) => err === boom,
    );
    assert.equal(c.get(), "default");
    assert.equal(other.get("unset"), "unset");
  });

  itFromEveryState(
    "async: fn keeps its value across awaits; the caller keeps its own",
    async () => {
      const c = new ContextVar<string>("c");
      c.set("outer");
      const pending = c.run("inner", async () => {
        await sleep(1);
        const seen = c.get();
        c.set("inner, later");
        await sleep(1);
        return [seen, c.get()];
      });
      assert.equal(c.get(), "outer");
      assert.deepEqual(await pending, ["inner", "inner, later"]);
      assert.equal(c.get(), "outer");
    },
  );
});

describe("ContextVar, concurrently", () => {
  itFromEveryState("test_context_threads_1: ten workers interleave sets and reads", async () => {
    // Python runs ten threads; here ten tasks interleave at every await.
    const cvar = new ContextVar<number>("cvar");
    let seed = 7;
    const delay = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % 4;
    };
    const sub = (num: number) => async () => {
      for (let i = 0; i < 10; i++) {
        cvar.set(num + i);
        await sleep(delay());
        assert.equal(cvar.get(), num + i);
      }
      return num;
    };
    const results = await gather(...Array.from({ length: 10 }, (_, num) => sub(num)));
    assert.deepEqual(results, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(cvar.get("unset"), "unset");
  });

  itFromEveryState("siblings on equal timers never see each other's runs", async () => {
    const c = new ContextVar<string>("c");
    const seen = await Promise.all(
      ["a", "b", "c"].map((name) =>
        c.run(name, async () => {
          await sleep(2);
          return c.get();
        }),
      ),
    );
    assert.deepEqual(seen, ["a", "b", "c"]);
    assert.equal(c.get("unset"), "unset");
  });
});

describe("ContextVar reads well", () => {
  it("test_context_var_repr_1: toString, toStringTag and inspect name the var", () => {
    const c = new ContextVar<number>("a");
    assert.equal(String(c), 'ContextVar("a")');
    assert.equal(Object.prototype.toString.call(c), "[object ContextVar]");
    assert.equal(inspect(c), '<ContextVar name="a">');
    const d = new ContextVar<number>("a", { default: 123 });
    assert.equal(inspect(d), '<ContextVar name="a" default=123>');
    assert.match(inspect({ d }), /<ContextVar name="a" default=123>/);
  });

  it("inspect shows a var nested beyond the depth short, and one at the depth in full", () => {
    const c = new ContextVar<number>("a", { default: 1 });
    assert.equal(inspect({ x: { y: { z: c } } }), '{ x: { y: { z: [ContextVar("a")] } } }');
    assert.equal(inspect({ x: { y: c } }), '{ x: { y: <ContextVar name="a" default=1> } }');
  });

  it("test_context_var_repr_1: a default that holds the var inspects without recursing", () => {
    const lst: unknown[] = [];
    const c = new ContextVar<unknown[]>("a", { default: lst });
    lst.push(c);
    const shown = inspect(c);
    assert.match(shown, /^<ContextVar name="a" default=/);
    assert.match(shown, /Circular|\.\.\./);
    assert.ok(shown.length < 300, `inspect(c) is ${shown.length} characters long`);
    const list = inspect(lst);
    assert.match(list, /Circular|\.\.\.|\[ContextVar\("a"\)\]/);
    assert.ok(list.length < 300, `inspect(lst) is ${list.length} characters long`);
    // With no depth limit, the cycle itself is caught.
    assert.match(inspect(lst, { depth: Number.POSITIVE_INFINITY }), /Circular/);
  });
});

describe("get's cache never answers for another mapping", () => {
  itFromEveryState("after reset, a copy taken before it still reads its own value", () => {
    copyContext().run(() => {
      const v = new ContextVar<number>("v");
      v.set(1);
      const t = v.set(2);
      const snapshot = copyContext();
      v.reset(t);
      // Read in the copy first: the current Context's read would refill the cache.
      assert.equal(
        snapshot.run(() => v.get()),
        2,
      );
      assert.equal(v.get(), 1);
    });
  });

  itFromEveryState(
    "a set in one of two copies, then a read in the other: the first reads its own value",
    () => {
      const v = new ContextVar<string>("v");
      const [a, b] = v.run("old", () => [copyContext(), copyContext()]);
      a.run(() => v.set("new"));
      // b still holds the mapping a held before its set: its read fills the cache for that mapping.
      assert.equal(
        b.run(() => v.get()),
        "old",
      );
      assert.equal(
        a.run(() => v.get()),
        "new",
      );
    },
  );

  itFromEveryState("a var removed by reset (another set in between) is missing again", () => {
    copyContext().run(() => {
      // Another var, so that removing v leaves a map that is not empty.
      new ContextVar<number>("other").set(0);
      const v = new ContextVar<number>("v");
      const t1 = v.set(1);
      v.set(2);
      v.reset(t1);
      assert.equal(v.set(3).oldValue, MISSING);
    });
  });
});
