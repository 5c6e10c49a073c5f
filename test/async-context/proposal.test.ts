/**
 * The TC39 proposal's behaviour for Variable and Snapshot, one suite run over
 * `contextvars/async-context` and over the test double of the proposal
 * (test/helpers/async-context-double.ts): code written for the proposal must
 * see the same thing from both. Cases follow the proposal's README and its
 * test262 tests for Snapshot.wrap.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AsyncContext } from "contextvars/async-context";
import { AsyncContextDouble } from "../helpers/async-context-double.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { tracedFunction } from "../helpers/traced-function.ts";

const implementations = [
  { name: "contextvars/async-context", ns: AsyncContext },
  { name: "test double of the proposal", ns: AsyncContextDouble },
] as const;

for (const { name, ns } of implementations) {
  const { Variable, Snapshot } = ns;

  describe(`${name}: Variable`, () => {
    it("name and defaultValue come from the options; both are optional", () => {
      const named = new Variable<number>({ name: "count", defaultValue: 7 });
      assert.equal(named.name, "count");
      assert.equal(named.get(), 7);
      const bare = new Variable<number>();
      assert.equal(bare.name, "");
      assert.equal(bare.get(), undefined);
      assert.equal(new Variable({ name: 42 }).name, "42");
      // The spec's HasProperty and ToString (test262 Variable/constructor-name*.js).
      assert.equal(new Variable({ name: undefined }).name, "undefined");
      assert.equal(new Variable({}).name, "");
      assert.throws(() => new Variable({ name: Symbol("s") }), TypeError);
      // Any Object is read so, a function too: its own name counts as the option.
      const fromFunction = new Variable<number>(
        Object.assign(function opts() {}, { defaultValue: 3 }),
      );
      assert.deepEqual([fromFunction.name, fromFunction.get()], ["opts", 3]);
      let reads = 0;
      const counted = new Variable({
        get name() {
          reads++;
          return "once";
        },
      });
      assert.equal(counted.name, "once");
      assert.equal(reads, 1);
    });

    it("run and Snapshot#run call fn with this undefined (Call(fn, undefined, args))", () => {
      const v = new Variable<number>();
      const seen: unknown[] = [];
      v.run(1, function (this: unknown) {
        seen.push(this);
      });
      new Snapshot().run(function (this: unknown) {
        seen.push(this);
      });
      assert.deepEqual(seen, [undefined, undefined]);
    });

    it("the namespace's toStringTag is AsyncContext", () => {
      assert.equal(Object.prototype.toString.call(ns), "[object AsyncContext]");
    });

    itFromEveryState(
      "run(value, fn, ...args) sets the value for fn only and returns fn's result",
      () => {
        const v = new Variable<string>({ defaultValue: "outside" });
        const result = v.run("inside", (a: number, b: number) => `${v.get()} ${a + b}`, 1, 2);
        assert.equal(result, "inside 3");
        assert.equal(v.get(), "outside");
      },
    );

    itFromEveryState("nested runs restore the outer value, also when fn throws", () => {
      const v = new Variable<string>();
      v.run("outer", () => {
        v.run("inner", () => assert.equal(v.get(), "inner"));
        assert.equal(v.get(), "outer");
        assert.throws(() =>
          v.run("throwing", () => {
            throw new Error("x");
          }),
        );
        assert.equal(v.get(), "outer");
      });
      assert.equal(v.get(), undefined);
    });

    itFromEveryState(
      "the value follows awaits and timers; concurrent runs stay apart",
      async () => {
        const v = new Variable<string>();
        const worker = async (id: string) =>
          v.run(id, async () => {
            const seen = [v.get()];
            await sleep(2);
            seen.push(v.get());
            await new Promise((resolve) => setTimeout(resolve, 1));
            seen.push(v.get());
            return seen;
          });
        assert.deepEqual(await Promise.all([worker("a"), worker("b")]), [
          ["a", "a", "a"],
          ["b", "b", "b"],
        ]);
        assert.equal(v.get(), undefined);
      },
    );

    it("two variables are independent", () => {
      const a = new Variable<number>();
      const b = new Variable<number>();
      a.run(1, () => b.run(2, () => assert.deepEqual([a.get(), b.get()], [1, 2])));
    });

    it("run with a non-function throws a TypeError", () => {
      const v = new Variable();
      assert.throws(() => v.run(1, 42 as unknown as () => void), TypeError);
    });

    it("has the proposal's toStringTag", () => {
      assert.equal(
        Object.prototype.toString.call(new Variable()),
        "[object AsyncContext.Variable]",
      );
    });
  });

  describe(`${name}: Snapshot`, () => {
    itFromEveryState("run(fn, ...args) restores every variable's value at construction", () => {
      const a = new Variable<string>({ defaultValue: "a0" });
      const b = new Variable<string>({ defaultValue: "b0" });
      const snapshot = a.run("a1", () => b.run("b1", () => new Snapshot()));
      assert.deepEqual([a.get(), b.get()], ["a0", "b0"]);
      const result = a.run("a2", () =>
        snapshot.run((x: number) => [a.get(), b.get(), x] as const, 5),
      );
      assert.deepEqual(result, ["a1", "b1", 5]);
    });

    it("a snapshot taken outside every run restores the defaults", () => {
      const v = new Variable<string>({ defaultValue: "default" });
      const snapshot = new Snapshot();
      v.run("set", () =>
        assert.equal(
          snapshot.run(() => v.get()),
          "default",
        ),
      );
    });

    it("run is re-entrant, and restores the caller's values after fn", () => {
      const v = new Variable<string>();
      const snapshot = v.run("captured", () => new Snapshot());
      v.run("caller", () => {
        snapshot.run(() => snapshot.run(() => assert.equal(v.get(), "captured")));
        assert.equal(v.get(), "caller");
      });
    });

    it("values follow awaits inside snapshot.run", async () => {
      const v = new Variable<string>();
      const snapshot = v.run("captured", () => new Snapshot());
      const seen = await snapshot.run(async () => {
        await sleep(1);
        return v.get();
      });
      assert.equal(seen, "captured");
    });

    it("wrap(fn) runs fn in the values at wrap time, passing this and arguments", () => {
      const v = new Variable<string>();
      const wrapped = v.run("at wrap", () =>
        Snapshot.wrap(function (this: { k: string }, x: number) {
          return `${this.k} ${x} ${v.get()}`;
        }),
      );
      assert.equal(
        v.run("at call", () => wrapped.call({ k: "this" }, 1)),
        "this 1 at wrap",
      );
    });

    it("wrap names the result 'wrapped <name>' and keeps fn's length", () => {
      function handler(_a: unknown, _b: unknown) {}
      const wrapped = Snapshot.wrap(handler);
      assert.equal(wrapped.name, "wrapped handler");
      assert.equal(wrapped.length, 2);
    });

    it("wrap's length is CopyNameAndLength's (test262 wrap/wrapped-function/length.js)", () => {
      const withLength = (length: unknown) => {
        const fn = () => {};
        Object.defineProperty(fn, "length", { value: length });
        return Snapshot.wrap(fn).length;
      };
      assert.deepEqual(
        [
          -42,
          7.9,
          Number.NaN,
          undefined,
          "42",
          Number.POSITIVE_INFINITY,
          Number.NEGATIVE_INFINITY,
        ].map(withLength),
        [0, 7, 0, 0, 0, Number.POSITIVE_INFINITY, 0],
      );
      const noOwnLength = () => {};
      Reflect.deleteProperty(noOwnLength, "length");
      assert.equal(Snapshot.wrap(noOwnLength).length, 0);
    });

    it("wrap reads fn's length, then its name, as CopyNameAndLength does", () => {
      const seen: string[] = [];
      const fn = tracedFunction(seen, function handler(_a: unknown) {});
      const wrapped = Snapshot.wrap(fn);
      assert.deepEqual(seen, ["has own length", "get length", "get name"]);
      assert.equal(wrapped.name, "wrapped handler");
      assert.equal(wrapped.length, 1);
    });

    it("wrap's result is not a constructor (test262 wrap/wrapped-function/not-a-constructor.js)", () => {
      const wrapped = Snapshot.wrap(function Made(this: { made?: boolean }) {
        this.made = true;
      });
      assert.throws(() => new (wrapped as unknown as new () => object)(), TypeError);
      assert.equal(Object.hasOwn(wrapped, "prototype"), false);
    });

    it("wrap with a non-function throws a TypeError", () => {
      assert.throws(() => Snapshot.wrap(42 as unknown as () => void), TypeError);
    });

    it("has the proposal's toStringTag", () => {
      assert.equal(
        Object.prototype.toString.call(new Snapshot()),
        "[object AsyncContext.Snapshot]",
      );
    });
  });
}
