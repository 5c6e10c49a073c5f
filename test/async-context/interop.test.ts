/**
 * `contextvars/async-context` keeps its values in this package's Contexts, so
 * proposal-style code and ContextVar code see one state: a Snapshot carries
 * ContextVars, copyContext/bind/tasks carry Variables.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { bind, ContextVar, copyContext, createTask, gather } from "contextvars";
import { AsyncContext, Snapshot, Variable } from "contextvars/async-context";

describe("contextvars/async-context over ContextVars", () => {
  it("exports the namespace and the two classes, the namespace frozen", () => {
    assert.equal(AsyncContext.Variable, Variable);
    assert.equal(AsyncContext.Snapshot, Snapshot);
    assert.ok(Object.isFrozen(AsyncContext));
  });

  it("a Snapshot carries ContextVar values; each run gets a fresh copy", () => {
    const user = new ContextVar<string>("user", { default: "nobody" });
    const snapshot = user.run("alice", () => new Snapshot());
    assert.equal(
      snapshot.run(() => user.get()),
      "alice",
    );
    snapshot.run(() => user.set("changed inside"));
    assert.equal(
      snapshot.run(() => user.get()),
      "alice",
    );
  });

  it("copyContext, bind and tasks carry Variable values", async () => {
    const traceId = new Variable<string>({ name: "traceId" });
    const [copied, bound, fromTask] = traceId.run("t-1", () => [
      copyContext(),
      bind(() => traceId.get()),
      createTask(async () => traceId.get()),
    ]);
    assert.equal(
      copied.run(() => traceId.get()),
      "t-1",
    );
    assert.equal(bound(), "t-1");
    assert.equal(await fromTask, "t-1");
  });

  it("gather's tasks each see the Variable value of their caller", async () => {
    const v = new Variable<number>();
    const results = await v.run(1, () =>
      gather(
        () => v.run(2, async () => v.get()),
        async () => v.get(),
      ),
    );
    assert.deepEqual(results, [2, 1]);
  });

  it("run, Snapshot#run and Snapshot.wrap name fn, and the Variable or method, when fn is not a function", () => {
    // The proposal requires a TypeError only; the words are this package's.
    const notAFunction = (where: string) =>
      new TypeError(`Expected \`fn\` to be a function, got \`42\` (number), in ${where}`);
    const fn = 42 as unknown as () => void;
    assert.throws(
      () => new Variable({ name: "traceId" }).run(1, fn),
      notAFunction('AsyncContext.Variable("traceId").run()'),
    );
    assert.throws(
      () => new Variable().run(1, fn),
      notAFunction("the run() of an AsyncContext.Variable with no name"),
    );
    assert.throws(() => new Snapshot().run(fn), notAFunction("AsyncContext.Snapshot#run()"));
    assert.throws(() => Snapshot.wrap(fn), notAFunction("AsyncContext.Snapshot.wrap()"));
  });

  it("a Variable reads well", () => {
    const v = new Variable({ name: "traceId", defaultValue: "none" });
    assert.equal(inspect(v), "<AsyncContext.Variable name=\"traceId\" defaultValue='none'>");
    // No default, no field for it; past the depth, the name alone, as for any object there.
    assert.equal(inspect(new Variable({ name: "bare" })), '<AsyncContext.Variable name="bare">');
    assert.equal(inspect({ v }, { depth: 0 }), '{ v: [AsyncContext.Variable "traceId"] }');
  });
  it("a generator sees the values of whoever calls next(), unlike the proposal (pinned); Snapshot.wrap(next) fixes it", () => {
    const v = new Variable<string>();
    function* reads() {
      yield v.get();
      yield v.get();
    }
    const plain = v.run("created", () => reads());
    assert.deepEqual(
      [v.run("first", () => plain.next().value), v.run("second", () => plain.next().value)],
      ["first", "second"],
    );
    const wrappedNext = v.run("created", () => {
      const generator = reads();
      return Snapshot.wrap(() => generator.next().value);
    });
    assert.deepEqual(
      [v.run("first", wrappedNext), v.run("second", wrappedNext)],
      ["created", "created"],
    );
  });
});
