// gather(): asyncio.gather. Ports test_asyncio_task_decimal_context from
// CPython's Lib/test/test_asyncio/test_context.py, with a ContextVar standing
// in for the decimal context.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, createTask, currentTask, gather, run, type Task } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

describe("gather: each function in its own copy", () => {
  itFromEveryState("test_asyncio_task_decimal_context", async () => {
    const precision = new ContextVar<number>("precision", { default: 28 });
    const fractions = async (t: number, prec: number, x: number, y: number) => {
      precision.set(prec);
      const a = (x / y).toPrecision(precision.get());
      await sleep(t);
      const b = (x / y ** 2).toPrecision(precision.get());
      return [a, b];
    };
    const [r1, r2] = await run(() =>
      gather(
        () => fractions(10, 3, 1, 3),
        () => fractions(20, 6, 1, 3),
      ),
    );
    assert.deepEqual(r1, ["0.333", "0.111"]);
    assert.deepEqual(r2, ["0.333333", "0.111111"]);
    assert.equal(precision.get(), 28);
  });

  itFromEveryState(
    "siblings with equal delays never see each other; the caller sees neither",
    async () => {
      const v = new ContextVar<string>("v");
      v.set("caller");
      const worker = async (name: string) => {
        assert.equal(v.get(), "caller");
        v.set(name);
        await sleep(5);
        const mid = v.get();
        await sleep(5);
        return [mid, v.get()];
      };
      const results = await gather(
        () => worker("a"),
        () => worker("b"),
        () => worker("c"),
      );
      assert.deepEqual(results, [
        ["a", "a"],
        ["b", "b"],
        ["c", "c"],
      ]);
      assert.equal(v.get(), "caller");
    },
  );

  itFromEveryState("the copy is taken when gather is called", async () => {
    const v = new ContextVar<string>("v");
    v.set("at call");
    const gathered = gather(async () => {
      await sleep(1);
      return v.get();
    });
    v.set("later");
    assert.deepEqual(await gathered, ["at call"]);
  });

  itFromEveryState("each function runs as its own task", async () => {
    const caller = currentTask();
    const [a, b] = await gather(
      () => [currentTask()],
      async () => [currentTask()],
    );
    assert.ok(a[0] !== undefined && b[0] !== undefined);
    assert.notEqual(a[0], b[0]);
    assert.notEqual(a[0], caller);
  });
});

describe("gather: PromiseLikes and results", () => {
  it("PromiseLikes are awaited as they are; results in order", async () => {
    // A thenable that is not a Promise.
    const thenable: PromiseLike<string> = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      then(onFulfilled, onRejected) {
        return sleep(1, "thenable").then(onFulfilled, onRejected);
      },
    };
    const task: Task<number> = createTask(async () => {
      await sleep(5);
      return 1;
    });
    const results = await gather(
      task,
      Promise.resolve("promise"),
      thenable,
      () => "sync",
      async () => 2,
    );
    assert.deepEqual(results, [1, "promise", "thenable", "sync", 2]);
  });

  it("no items resolves with []", async () => {
    assert.deepEqual(await gather(), []);
  });

  it("the first rejection rejects gather; the others go on running", async () => {
    const boom = new Error("boom");
    let finished = false;
    const gathered = gather(
      async () => {
        await sleep(1);
        throw boom;
      },
      async () => {
        await sleep(20);
        finished = true;
      },
      async () => {
        await sleep(2);
        throw new Error("second");
      },
    );
    await assert.rejects(gathered, (e) => e === boom);
    assert.equal(finished, false);
    await sleep(40);
    assert.equal(finished, true);
  });

  it("a synchronous throw rejects gather (it does not throw)", async () => {
    const boom = new Error("sync");
    const gathered = gather(() => {
      throw boom;
    });
    await assert.rejects(gathered, (e) => e === boom);
  });

  it("a synchronous throw after an item rejected already: the earlier rejection wins, as in Promise.all", async () => {
    const first = new Error("rejected before gather was called");
    const later = new Error("thrown while gather starts");
    const throwLater = (): never => {
      throw later;
    };
    const all = await Promise.all([Promise.reject(first), (async () => throwLater())()]).catch(
      (e: unknown) => e,
    );
    assert.equal(all, first);
    await assert.rejects(gather(Promise.reject(first), throwLater), (e) => e === first);
    await assert.rejects(
      gather(Promise.reject(first), async () => throwLater()),
      (e) => e === first,
      "as for an async function that throws",
    );
    await assert.rejects(gather(throwLater, Promise.reject(first)), (e) => e === later);
  });
});

describe("gather: a PromiseLike's then, as Promise.all reads it", () => {
  // Settles p and counts microtask turns until then: the turn it settles on.
  const turnOf = async (p: Promise<unknown>): Promise<number> => {
    let turn = 0;
    let settled = false;
    const count = (): void => {
      if (settled || turn > 20) return;
      turn++;
      queueMicrotask(count);
    };
    queueMicrotask(count);
    await p.then(
      () => {},
      () => {},
    );
    settled = true;
    return turn;
  };
  class SubPromise<T> extends Promise<T> {}
  const shapes: [string, () => unknown][] = [
    ["a Promise", () => Promise.resolve(1)],
    ["a Promise subclass", () => SubPromise.resolve(2)],
    // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
    ["a thenable", () => ({ then: (resolve: (v: number) => void) => resolve(3) })],
    ["a rejected Promise", () => Promise.reject(new Error("no"))],
  ];

  it("reads then once: a getter runs once, as for Promise.all", async () => {
    let reads = 0;
    const thenable = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      get then() {
        reads++;
        return (resolve: (v: string) => void) => resolve("ok");
      },
    };
    assert.deepEqual(await gather(thenable as PromiseLike<string>), ["ok"]);
    assert.equal(reads, 1);
    // A then that is a function only the first time it is read is still followed.
    let first = true;
    const fickle = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      get then() {
        const then = first ? (resolve: (v: string) => void) => resolve("first") : undefined;
        first = false;
        return then;
      },
    };
    assert.deepEqual(await gather(fickle as PromiseLike<string>), ["first"]);
  });

  it("a thenable that rejects, or a Promise subclass that does, rejects gather with its reason", async () => {
    const no = new Error("no");
    // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
    const rejecting = { then: (_: unknown, reject: (e: unknown) => void) => reject(no) };
    await assert.rejects(gather(rejecting as PromiseLike<never>), (e) => e === no);
    await assert.rejects(
      gather(() => 1, SubPromise.reject(no)),
      (e) => e === no,
    );
  });

  it("a Promise with its own then: gather calls that then, once, as Promise.all does", async () => {
    const withOwnThen = (calls: string[]): Promise<number> => {
      const p = Promise.resolve(1);
      // biome-ignore lint/suspicious/noThenProperty: an own then on purpose
      p.then = function (this: Promise<number>, ...args: Parameters<Promise<number>["then"]>) {
        calls.push("then");
        return Promise.prototype.then.apply(this, args) as never;
      };
      return p;
    };
    const viaAll: string[] = [];
    assert.deepEqual(await Promise.all([withOwnThen(viaAll)]), [1]);
    const viaGather: string[] = [];
    assert.deepEqual(await gather(withOwnThen(viaGather)), [1]);
    assert.deepEqual(viaGather, viaAll);
    assert.deepEqual(viaGather, ["then"]);
  });

  it("a then getter that throws rejects gather with its error (it does not throw)", async () => {
    const boom = new Error("getter");
    const throwing = {
      // biome-ignore lint/suspicious/noThenProperty: a malformed thenable on purpose
      get then(): never {
        throw boom;
      },
    };
    let started = false;
    const gathered = gather(() => {
      started = true;
    }, throwing as never);
    assert.equal(started, true);
    await assert.rejects(gathered, (e) => e === boom);
  });

  it("a promise whose constructor getter throws rejects gather with its error, as Promise.all (it does not throw)", async () => {
    const boom = new Error("constructor");
    const odd = (): Promise<number> => {
      const p = Promise.resolve(1);
      Object.defineProperty(p, "constructor", {
        get() {
          throw boom;
        },
      });
      return p;
    };
    await assert.rejects(Promise.all([odd()]), (e) => e === boom);
    let gathered: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      gathered = gather(odd());
    });
    await assert.rejects(gathered as Promise<unknown>, (e) => e === boom);
  });

  it("a function returning a promise whose then getter throws rejects gather (it does not throw)", async () => {
    const boom = new Error("getter");
    let firstDone = false;
    const gathered = gather(
      async () => {
        await null;
        firstDone = true;
      },
      () => {
        const p = Promise.resolve();
        // biome-ignore lint/suspicious/noThenProperty: a malformed promise on purpose
        Object.defineProperty(p, "then", {
          get() {
            throw boom;
          },
        });
        return p;
      },
    );
    await assert.rejects(gathered, (e) => e === boom);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(firstDone, true, "the task before it still ran to its end");
  });

  it("a function returning a Proxy whose getPrototypeOf trap throws: gather fulfils with it, as Promise.all does (it does not throw)", async () => {
    const proxy = new Proxy(
      {},
      {
        getPrototypeOf() {
          throw new Error("trap");
        },
      },
    );
    assert.deepEqual(await Promise.all([Promise.resolve(proxy)]), [proxy]);
    let gathered: Promise<unknown[]> | undefined;
    assert.doesNotThrow(() => {
      gathered = gather(
        () => proxy,
        async () => "after it",
      );
    });
    const [first, second] = (await gathered) as unknown[];
    assert.equal(first, proxy);
    assert.equal(second, "after it");
  });

  for (const [title, make] of shapes) {
    it(`${title} settles gather on the microtask turn Promise.all settles on`, async () => {
      const all = await turnOf(Promise.all([make()]));
      assert.equal(await turnOf(gather(make() as never)), all);
    });
  }
});

describe("every outcome: Promise.allSettled of tasks (asyncio's return_exceptions=True)", () => {
  itFromEveryState("each task in its own copy; failures come back as outcomes", async () => {
    const v = new ContextVar<string>("v");
    v.set("caller");
    const boom = new Error("boom");
    const worker = async (name: string, fail: boolean) => {
      v.set(name);
      await sleep(fail ? 2 : 5);
      if (fail) throw boom;
      return v.get();
    };
    const outcomes = await Promise.allSettled([
      createTask(() => worker("a", false)),
      createTask(() => worker("b", true)),
      createTask(() => {
        v.set("sync");
        throw new Error(`sync ${v.get()}`);
      }),
      createTask(() => worker("c", false)),
    ]);
    assert.deepEqual(
      outcomes.map((o) => (o.status === "fulfilled" ? o.value : (o.reason as Error).message)),
      ["a", "boom", "sync sync", "c"],
    );
    assert.equal(v.get(), "caller");
  });
});

describe("gather: bad input", () => {
  const bad: [string, unknown][] = [
    ["a number", 42],
    ["null", null],
    ["undefined", undefined],
    ["a string", "fn"],
    ["an object without then", {}],
    // biome-ignore lint/suspicious/noThenProperty: a malformed thenable on purpose
    ["an object whose then is not a function", { then: 1 }],
  ];
  for (const [title, item] of bad) {
    it(`${title}: TypeError synchronously, naming the item; nothing started`, () => {
      let started = false;
      const first = () => {
        started = true;
      };
      assert.throws(
        () => gather(first, item as never),
        (e: unknown) => e instanceof TypeError && /`items\[1\]`/.test(e.message),
      );
      assert.equal(started, false);
    });
  }
});
