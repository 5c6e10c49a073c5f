/**
 * Custom thenables (query builders, lazy ORM queries): which Context the
 * `then` body sees, and which the code after the await sees.
 *
 * Pinned on Node 20: the engine calls `then` from a microtask queued where
 * the thenable is *resolved* — by `await x`, by `Promise.resolve(x)`, or by an
 * async function returning x — and that microtask runs in the Context that
 * was current there. The code after the await always sees the awaiting
 * Context. Where the thenable was created does not matter.
 */
import assert from "node:assert/strict";
import { describe } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Context, ContextVar, createTask, gather } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });

type Resolve<T> = (value: T) => void;
type Reject = (reason: unknown) => void;

/** A thenable that records the Context its `then` body runs in, then resolves on a timer. */
class Probe implements PromiseLike<string> {
  readonly thenSaw: string[] = [];
  constructor(readonly result: string) {}
  // biome-ignore lint/suspicious/noThenProperty: a custom thenable is what is under test
  then<R1 = string, R2 = never>(
    onFulfilled?: ((value: string) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): PromiseLike<R1 | R2> {
    this.thenSaw.push(v.get());
    return sleep(1)
      .then(() => this.result)
      .then(onFulfilled, onRejected);
  }
}

describe("await thenable", () => {
  itFromEveryState("then body and continuation see the awaiting Context", async () => {
    const probe = v.run("created", () => new Probe("ok"));
    v.set("awaiter");
    assert.equal(await probe, "ok");
    assert.equal(v.get(), "awaiter");
    assert.deepEqual(probe.thenSaw, ["awaiter"]);
  });

  itFromEveryState("one thenable awaited by interleaved siblings", async () => {
    const shared = new Probe("shared");
    const waiter = async (name: string): Promise<string> => {
      v.set(name);
      await sleep(1);
      await shared;
      return v.get();
    };
    const results = await Promise.all([
      gather(
        () => waiter("a"),
        () => waiter("b"),
      ),
      new Context().run(() => waiter("ctx")),
      createTask(() => waiter("task")),
    ]);
    assert.deepEqual(results, [["a", "b"], "ctx", "task"]);
    assert.deepEqual([...shared.thenSaw].sort(), ["a", "b", "ctx", "task"]);
  });

  // The then body runs in the awaiting Context itself (the cell), so a set
  // inside it is visible after the await, as a set in an awaited callee is.
  itFromEveryState("a set inside the then body is seen after the await", async () => {
    const thenable = {
      // biome-ignore lint/suspicious/noThenProperty: a custom thenable is what is under test
      then(resolve: Resolve<number>) {
        v.set("set in then");
        setTimeout(() => resolve(1), 1);
      },
    };
    const ctx = new Context();
    await ctx.run(async () => {
      v.set("awaiter");
      await thenable;
      assert.equal(v.get(), "set in then");
    });
    assert.equal(ctx.get(v), "set in then");
  });

  itFromEveryState("a rejecting thenable: catch sees the awaiting Context", async () => {
    const rejecting = {
      // biome-ignore lint/suspicious/noThenProperty: a custom thenable is what is under test
      then(_resolve: Resolve<never>, reject: Reject) {
        setTimeout(() => reject(new Error(v.get())), 1);
      },
    };
    const attempt = async (name: string): Promise<string> => {
      v.set(name);
      try {
        await rejecting;
        return "resolved";
      } catch (error) {
        return `${(error as Error).message}/${v.get()}`;
      }
    };
    assert.deepEqual(
      await gather(
        () => attempt("a"),
        () => attempt("b"),
      ),
      ["a/a", "b/b"],
    );
  });

  itFromEveryState("a getter-defined then is read once, in the awaiting Context", async () => {
    const reads: string[] = [];
    const bodies: string[] = [];
    // biome-ignore lint/suspicious/noThenProperty: a custom thenable is what is under test
    const lazy = Object.defineProperty({}, "then", {
      get() {
        reads.push(v.get());
        return (resolve: Resolve<string>) => {
          bodies.push(v.get());
          resolve("lazy");
        };
      },
    });
    const [a, b] = await gather(
      async () => {
        v.set("a");
        return [await lazy, v.get()];
      },
      async () => {
        v.set("b");
        await null;
        return [await lazy, v.get()];
      },
    );
    assert.deepEqual(
      [a, b],
      [
        ["lazy", "a"],
        ["lazy", "b"],
      ],
    );
    assert.deepEqual(reads, ["a", "b"]);
    assert.deepEqual(bodies, ["a", "b"]);
  });
});

describe("thenable resolved elsewhere", () => {
  itFromEveryState("returned after `await null`: then body sees the callee's Context", async () => {
    const probe = new Probe("returned");
    v.set("caller");
    const value = await v.run("callee", async () => {
      await null;
      return probe;
    });
    assert.equal(value, "returned");
    assert.equal(v.get(), "caller");
    assert.deepEqual(probe.thenSaw, ["callee"]);
  });

  itFromEveryState("a task whose fn returns a thenable calls then in the task", async () => {
    const probe = new Probe("from task");
    v.set("creator");
    const task = createTask(() => {
      v.set("task");
      return probe;
    });
    assert.equal(await task, "from task");
    assert.deepEqual(probe.thenSaw, ["task"]);
    assert.equal(v.get(), "creator");
  });
});

describe("Promise.resolve(thenable): the ORM-transaction case", () => {
  const tx = new ContextVar<string | undefined>("tx", { default: undefined });
  /** A lazy query: runs when awaited, on the transaction current when `then` runs. */
  class Query implements PromiseLike<string> {
    constructor(readonly sql: string) {}
    // biome-ignore lint/suspicious/noThenProperty: a custom thenable is what is under test
    then<R1 = string, R2 = never>(
      onFulfilled?: ((value: string) => R1 | PromiseLike<R1>) | null,
      onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
    ): PromiseLike<R1 | R2> {
      const on = tx.get() ?? "pool";
      return sleep(1)
        .then(() => `${this.sql} on ${on}`)
        .then(onFulfilled, onRejected);
    }
  }
  const transaction = <T>(id: string, body: () => Promise<T>): Promise<T> => tx.run(id, body);

  itFromEveryState("awaited inside the transaction: runs on it", async () => {
    const results = await Promise.all([
      transaction("tx-1", async () => [await new Query("a"), await new Query("b")]),
      transaction("tx-2", async () => [await new Query("c"), await new Query("d")]),
    ]);
    assert.deepEqual(results, [
      ["a on tx-1", "b on tx-1"],
      ["c on tx-2", "d on tx-2"],
    ]);
  });

  // Pinned: Promise.resolve(q) queues the `then` call where it is made, so
  // the query runs on the transaction even if the promise is awaited outside.
  itFromEveryState("Promise.resolve inside, awaited outside: runs on it", async () => {
    const pending = transaction("tx-1", async () => Promise.resolve(new Query("a")));
    const direct = tx.run("tx-2", () => Promise.resolve(new Query("b")));
    assert.equal(tx.get(), undefined);
    assert.deepEqual(await Promise.all([pending, direct]), ["a on tx-1", "b on tx-2"]);
  });

  // Pinned: a query built inside but first awaited after the transaction runs
  // on whatever the awaiting code has: the thenable does not remember.
  itFromEveryState("built inside, awaited after the transaction: runs outside it", async () => {
    const query = await transaction("tx-1", async () => ({ query: new Query("late") }));
    assert.equal(await query.query, "late on pool");
    assert.equal(await tx.run("tx-9", async () => await query.query), "late on tx-9");
  });
});
