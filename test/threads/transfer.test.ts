/**
 * What may cross to a worker thread, with its exact error or behaviour:
 * uncloneable values (throw, or skip), two vars under one name, and
 * `{ transfer: false }`. The walk itself is tested directly; the rules
 * through a real Worker and a real pool.
 */
import assert from "node:assert/strict";
import { BlockList, SocketAddress } from "node:net";
import { after, before, describe, it } from "node:test";
import { runInNewContext } from "node:vm";
import { getEnvironmentData } from "node:worker_threads";
import { Context, ContextError, ContextVar } from "contextvars";
import { Variable } from "contextvars/async-context";
import { type ContextPool, contextPool, TransferError, Worker } from "contextvars/worker";
import { Piscina } from "piscina";
import { problemIn } from "../../src/threads/transfer.ts";
import { pinContext } from "../helpers/pin-context.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { firstMessage, fixture, workerExecArgv } from "../helpers/threads.ts";
import type { EchoReply } from "./fixtures/echo-vars.ts";
import type { JobReply } from "./fixtures/job.ts";

class Session {
  constructor(readonly id: string) {}
}
class AppError extends Error {}

const tail =
  '; give it a structured-cloneable value, create it with { transfer: false }, or pass onUncloneable: "skip" to new Worker or contextPool (for toThread, the pool given to useThreadPool)';
function uncloneable(name: string, what: string): TransferError {
  const error = new TransferError(
    "ERR_CONTEXTVAR_UNCLONEABLE",
    `ContextVar(${JSON.stringify(name)}) cannot cross to a worker thread: ${what}${tail}`,
  );
  return error;
}
function clash(name: string, context: Context): TransferError {
  return new TransferError(
    "ERR_CONTEXTVAR_NAME_CLASH",
    `two ContextVars named ${JSON.stringify(name)} have values in ${context}; a worker thread finds vars by name, so rename one or create it with { transfer: false }`,
  );
}
/** Matches class, code and message exactly. */
function exactly(expected: TransferError) {
  return (error: unknown) => {
    assert.ok(error instanceof TransferError);
    assert.ok(error instanceof ContextError);
    assert.equal(error.name, "TransferError");
    assert.equal(error.code, expected.code);
    assert.equal(error.message, expected.message);
    return true;
  };
}

function startEcho(names: string[], options: { context?: Context; onUncloneable?: "skip" } = {}) {
  return new Worker(fixture("echo-vars.ts"), {
    workerData: { names },
    execArgv: workerExecArgv,
    ...options,
  });
}

const user = new ContextVar<string>("user");
const callback = new ContextVar<() => void>("callback");
const session = new ContextVar<{ user: string; session: Session }>("session");

describe("problemIn: what survives structured clone", () => {
  it("passes what structured clone keeps", () => {
    const cycle: Record<string, unknown> = { n: 1 };
    cycle.self = cycle;
    for (const [i, value] of [
      "s",
      1,
      10n,
      null,
      undefined,
      true,
      { a: [1, { b: new Date(0) }] },
      Object.create(null),
      /x/g,
      new Map([[{ k: 1 }, new Set([1n])]]),
      new Uint8Array(4),
      new ArrayBuffer(8),
      new TypeError("t"),
      new Blob(["a"]),
      cycle,
    ].entries()) {
      assert.equal(problemIn(value, true), undefined, `value #${i}`);
    }
  });

  // A limit docs/threads.md states: these pass, and lose what the clone drops.
  it("passes an Error with its own fields, and symbol-keyed and hidden properties, which the clone drops", () => {
    const failure = Object.assign(new Error("m", { cause: new Session("s") }), { code: "E_APP" });
    const tagged: Record<PropertyKey, unknown> = { a: 1, [Symbol("tag")]: 2 };
    Object.defineProperty(tagged, "hidden", { value: 3, enumerable: false });
    assert.equal(problemIn(failure, true), undefined);
    assert.equal(problemIn(tagged, true), undefined);
    const arrived = structuredClone(failure) as Error & { code?: string };
    assert.equal(arrived.message, "m");
    assert.equal(arrived.code, undefined);
    // Plain where it arrives (Bun's clone drops an Error's cause altogether).
    if (arrived.cause !== undefined)
      assert.equal(Object.getPrototypeOf(arrived.cause), Object.prototype);
    assert.deepEqual(Reflect.ownKeys(structuredClone(tagged)), ["a"]);
  });

  // docs/threads.md: a clone of the package's own objects loses every field, silently.
  it("a Context, a ContextVar or a Token clones to an empty plain object with no error; as a var's value each is named", () => {
    const context = new Context();
    const token = context.run(() => user.set("u"));
    for (const [value, name] of [
      [context, "Context"],
      [user, "ContextVar"],
      [token, "Token"],
    ] as const) {
      assert.deepEqual(structuredClone(value), {}, name);
      assert.equal(
        problemIn(value),
        `value is a ${name}, which would arrive as a plain object without its prototype`,
      );
    }
  });

  it("names what would fail or lose its prototype, with its path", () => {
    assert.equal(
      problemIn(() => 1),
      "value is a function",
    );
    assert.equal(problemIn(Symbol("s")), "value is a symbol");
    assert.equal(problemIn({ tags: ["a", Symbol("b")] }), "value.tags[1] is a symbol");
    assert.equal(
      problemIn({ user: "u", session: new Session("s") }),
      "value.session is a Session, which would arrive as a plain object without its prototype",
    );
    assert.equal(
      problemIn(new AppError("e")),
      "value is an AppError, which would arrive as a plain Error without its prototype",
    );
    class Registry extends Map<string, number> {}
    assert.equal(
      problemIn({ registry: new Registry() }),
      "value.registry is a Registry, which would arrive as a plain Map without its prototype",
    );
    assert.equal(problemIn(new Map([["k", () => 1]])), "value.get(…) is a function");
    // A Map's keys are cloned as its values are: a Session as a key arrives plain too.
    assert.equal(
      problemIn(new Map([[new Session("s"), "v"]])),
      "value (a Map key) is a Session, which would arrive as a plain object without its prototype",
    );
    assert.equal(problemIn(new Set([Symbol.iterator])), "value (a Set item) is a symbol");
    // A Proxy looks plain to the walk; only a real clone finds it (exact).
    const proxy = new Proxy({}, {});
    assert.equal(problemIn(proxy), undefined);
    assert.equal(problemIn(proxy, true), "value cannot be cloned (#<Object> could not be cloned.)");
  });

  it('the article follows the sound: "a User", "a Uint8Bytes", "a URLRecord", but "an Update"', () => {
    class User {}
    class Update {}
    class Uint8Bytes extends Uint8Array {}
    class URLRecord {}
    class Umbrella {}
    const said = [new User(), new Update(), new Uint8Bytes(1), new URLRecord(), new Umbrella()].map(
      (value) => problemIn(value)?.split(", which")[0],
    );
    assert.deepEqual(said, [
      "value is a User",
      "value is an Update",
      "value is a Uint8Bytes",
      "value is a URLRecord",
      "value is an Umbrella",
    ]);
  });

  it("plain objects and arrays of another realm are plain, and are checked all the way down", () => {
    // A node:vm context's, as in a test runner's sandbox, or made by Node's own modules under one.
    const foreign = runInNewContext("({ list: [1, { at: 2 }], inner: {} })") as {
      inner: Record<string, unknown>;
    };
    assert.equal(problemIn(foreign, true), undefined);
    assert.equal(problemIn(runInNewContext("[[1], 2]"), true), undefined);
    foreign.inner.session = new Session("s");
    assert.equal(
      problemIn(foreign, true),
      "value.inner.session is a Session, which would arrive as a plain object without its prototype",
    );
    assert.equal(
      problemIn(runInNewContext("new (class Tab {})()"), true),
      "value is a Tab, which would arrive as a plain object without its prototype",
    );
    // Not mistaken for one: a class named Object, and a prototype that claims Object.
    // biome-ignore lint/suspicious/noShadowRestrictedNames: a class named Object is the point
    const Impostor = class Object {};
    assert.match(problemIn(new Impostor()) ?? "", /^value is an Object, which would arrive/);
    const claims: object = Object.create(Object.create(null, { constructor: { value: Object } }));
    assert.match(problemIn(claims) ?? "", /^value is an Object, which would arrive/);
  });

  it("another realm's Dates, Maps, Sets, typed arrays and Errors pass as this realm's do; its Maps and Sets are checked all the way down", () => {
    // A clone makes this realm's built-in of the same kind of each.
    const foreign = runInNewContext(
      "({ when: new Date(0), tags: new Set(['a']), index: new Map([['k', 1]]), bytes: new Uint8Array(2), failure: new TypeError('t'), pattern: /x/ })",
    ) as { index: Map<string, unknown>; tags: Set<unknown> };
    assert.equal(problemIn(foreign, true), undefined);
    foreign.index.set("session", new Session("s"));
    assert.equal(
      problemIn(foreign, true),
      "value.index.get(…) is a Session, which would arrive as a plain object without its prototype",
    );
    foreign.index.delete("session");
    foreign.tags.add(() => 1);
    assert.equal(problemIn(foreign, true), "value.tags (a Set item) is a function");
    // Another realm's class is no built-in, whatever it is named.
    assert.equal(
      problemIn(runInNewContext("new (class Date {})()"), true),
      "value is a Date, which would arrive as a plain object without its prototype",
    );
  });

  it("an instance that a clone would reject is named by the clone's error; a prototype with no constructor is an object", () => {
    class Job {
      readonly run = () => 1;
    }
    // The engine's own words (V8's and JavaScriptCore's differ).
    let words = "";
    try {
      structuredClone(new Job());
    } catch (error) {
      words = (error as Error).message;
    }
    assert.notEqual(words, "");
    assert.equal(problemIn({ job: new Job() }), `value.job cannot be cloned (${words})`);
    const bare: object = Object.create(Object.create(null));
    assert.equal(
      problemIn({ bare }),
      "value.bare is an object, which would arrive as a plain object without its prototype",
    );
  });

  it("a value that throws when read cannot be cloned either: a problem, not a throw", () => {
    const getter = {
      get g(): never {
        throw new Error("no");
      },
    };
    assert.equal(problemIn({ inner: getter }), "value cannot be cloned (no)");
    const throwsString = {
      get g(): never {
        throw "not an Error";
      },
    };
    assert.equal(problemIn(throwsString), "value cannot be cloned (not an Error)");
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    assert.match(problemIn({ p: proxy }) ?? "", /^value cannot be cloned \(.*revoked/);
  });

  it("what a read throws is shown safely: an object with no toString, and a long text cut", () => {
    const throwsBare = {
      get g(): never {
        throw Object.create(null);
      },
    };
    // String() of it threw, and the var's TransferError became "Cannot convert object to primitive value".
    assert.equal(problemIn(throwsBare), "value cannot be cloned (`[object Object]` (object))");
    const throwsLong = {
      get g(): never {
        throw "y".repeat(100_000);
      },
    };
    assert.equal(problemIn(throwsLong), `value cannot be cloned (${"y".repeat(200)}…)`);
    const longMessage = {
      get g(): never {
        throw new Error("z".repeat(100_000));
      },
    };
    assert.equal(problemIn(longMessage), `value cannot be cloned (${"z".repeat(200)}…)`);
    const c = new Context();
    c.run(() => callback.set(throwsBare as never));
    assert.throws(() => new Worker("0", { eval: true, context: c }), {
      name: "TransferError",
      code: "ERR_CONTEXTVAR_UNCLONEABLE",
    });
  });
});

describe("Worker: what may cross", () => {
  it("an uncloneable value throws TransferError naming the var, and starts nothing", () => {
    callback.run(
      () => {},
      () => {
        assert.throws(
          () => startEcho(["callback"]),
          exactly(uncloneable("callback", "value is a function")),
        );
      },
    );
    session.run({ user: "u", session: new Session("s") }, () => {
      assert.throws(
        () => startEcho(["session"]),
        exactly(
          uncloneable(
            "session",
            "value.session is a Session, which would arrive as a plain object without its prototype",
          ),
        ),
      );
    });
    const proxied = new ContextVar<object>("proxied");
    proxied.run(new Proxy({}, {}), () => {
      assert.throws(
        () => startEcho(["proxied"]),
        exactly(uncloneable("proxied", "value cannot be cloned (#<Object> could not be cloned.)")),
      );
    });
    assert.equal(getEnvironmentData("contextvars:values"), undefined);
  });

  itFromEveryState(
    "a TransferError, uncloneable or a name clash, leaves the current Context as it was",
    () => {
      const twin = new ContextVar<string>("user");
      const context = new Context();
      context.run(() => {
        user.set("a");
        twin.set("b");
      });
      // Reset at the end: at the root, the set would stay for the tests after this one.
      const token = callback.set(() => {});
      try {
        const pin = pinContext();
        assert.throws(() => startEcho(["callback"]), { code: "ERR_CONTEXTVAR_UNCLONEABLE" });
        pin.check("uncloneable");
        const again = pinContext();
        assert.throws(() => startEcho(["user"], { context }), {
          code: "ERR_CONTEXTVAR_NAME_CLASH",
        });
        again.check("name clash");
      } finally {
        callback.reset(token);
      }
    },
  );

  it('onUncloneable: "skip" leaves that var behind and sends the rest', async () => {
    const reply = await user.run("alice", () =>
      callback.run(
        () => {},
        () => firstMessage<EchoReply>(startEcho(["user", "callback"], { onUncloneable: "skip" })),
      ),
    );
    assert.deepEqual(reply.seen, { user: "alice", callback: "<unset>" });
  });

  it("Node's SocketAddress and BlockList cross: a clone of one is an instance of an internal subclass, with every method", async () => {
    const client = new ContextVar<SocketAddress>("client");
    const blocked = new ContextVar<BlockList>("blocked");
    const rules = new BlockList();
    rules.addAddress("10.0.0.1");
    const reply = await client.run(new SocketAddress({ address: "10.0.0.2", port: 8080 }), () =>
      blocked.run(rules, () => firstMessage<EchoReply>(startEcho(["client", "blocked"]))),
    );
    const seen = reply.seen as { client: SocketAddress; blocked: BlockList };
    assert.ok(seen.client instanceof SocketAddress);
    assert.equal(`${seen.client.address}:${seen.client.port}`, "10.0.0.2:8080");
    assert.ok(seen.blocked instanceof BlockList);
    assert.equal(seen.blocked.check("10.0.0.1"), true);
  });

  it("two vars with values under one name throw ERR_CONTEXTVAR_NAME_CLASH", () => {
    const twin = new ContextVar<string>("user");
    const context = new Context();
    context.run(() => {
      user.set("a");
      twin.set("b");
    });
    assert.throws(() => startEcho(["user"], { context }), exactly(clash("user", context)));
    // A twin with no value in the Context is no clash.
    assert.doesNotThrow(() => user.run("a", () => startEcho(["user"]).terminate()));
  });

  it("two vars of one name holding the same value are no clash: it is sent once", async () => {
    const twin = new ContextVar<string>("user");
    const context = new Context();
    context.run(() => {
      user.set("same");
      twin.set("same");
    });
    const reply = await firstMessage<EchoReply>(startEcho(["user"], { context }));
    assert.deepEqual(reply.seen, { user: "same" });
  });

  it("{ transfer: false } vars never cross, and are no clash", async () => {
    const local = new ContextVar<string>("user", { transfer: false });
    const localFn = new ContextVar<() => void>("fn", { transfer: false });
    const reply = await user.run("sent", () =>
      local.run("kept", () =>
        localFn.run(
          () => {},
          () => firstMessage<EchoReply>(startEcho(["user", "fn"])),
        ),
      ),
    );
    assert.deepEqual(reply.seen, { user: "sent", fn: "<unset>" });
    const onlyLocal = await local.run("kept", () => firstMessage<EchoReply>(startEcho(["user"])));
    assert.deepEqual(onlyLocal.seen, { user: "<unset>" });
    // In the worker, a var created { transfer: false } does not receive either.
    // The Worker is made inside the run: it takes its values at construction.
    const inWorker = await user.run("sent", () =>
      firstMessage<EchoReply>(
        new Worker(fixture("echo-vars.ts"), {
          workerData: { names: [], localOnly: ["user"] },
          execArgv: workerExecArgv,
        }),
      ),
    );
    assert.deepEqual(inWorker.seen, { user: "<unset>" });
  });

  it("a contextvars/async-context Variable never crosses, whatever its value, and is no clash", async () => {
    const traceId = new Variable<unknown>({ name: "user" });
    const reply = await user.run("sent", () =>
      traceId.run(
        () => {},
        () => firstMessage<EchoReply>(startEcho(["user"])),
      ),
    );
    assert.deepEqual(reply.seen, { user: "sent" });
    const alone = await traceId.run("kept", () => firstMessage<EchoReply>(startEcho(["user"])));
    assert.deepEqual(alone.seen, { user: "<unset>" });
  });
});

describe("contextPool: what may cross", () => {
  let pool: ContextPool<{ i: number; delay: number }, JobReply>;
  let skipping: ContextPool<{ i: number; delay: number }, JobReply>;
  before(() => {
    const piscina = new Piscina({
      filename: fixture("job.ts").href,
      execArgv: workerExecArgv,
      maxThreads: 2,
    });
    pool = contextPool(piscina);
    skipping = contextPool(piscina, { onUncloneable: "skip" });
  });
  after(() => pool.destroy());
  const job = { i: 0, delay: 0 };

  it("an uncloneable value rejects the run with TransferError", async () => {
    await callback.run(
      () => {},
      () => assert.rejects(pool.run(job), exactly(uncloneable("callback", "value is a function"))),
    );
    // Seen only when the post fails: the error is named all the same.
    const proxied = new ContextVar<object>("proxied");
    await proxied.run(new Proxy({}, {}), () =>
      assert.rejects(
        pool.run(job),
        exactly(uncloneable("proxied", "value cannot be cloned (#<Object> could not be cloned.)")),
      ),
    );
  });

  it('onUncloneable: "skip" runs the job without that var', async () => {
    const proxied = new ContextVar<object>("proxied");
    const reply = await user.run("u", () =>
      callback.run(
        () => {},
        () => proxied.run(new Proxy({}, {}), () => skipping.run(job)),
      ),
    );
    assert.equal(reply.user, "u");
  });

  it("a value nested deeper than postMessage can go is named too, and skipped with skip", async () => {
    // The walk does not enter an Error (structured clone keeps it), but its
    // cause is cloned: piscina's postMessage overflows its stack, a RangeError.
    let inner: Record<string, unknown> = {};
    const cause = inner;
    for (let i = 0; i < 20_000; i++) {
      const next = {};
      inner.next = next;
      inner = next;
    }
    const failure = new ContextVar<Error>("failure");
    const tooDeep = new Error("outer", { cause });
    await failure.run(tooDeep, () =>
      assert.rejects(
        pool.run(job),
        exactly(
          uncloneable("failure", "value cannot be cloned (Maximum call stack size exceeded)"),
        ),
      ),
    );
    const reply = await user.run("u", () => failure.run(tooDeep, () => skipping.run(job)));
    assert.equal(reply.user, "u");
  });

  itFromEveryState(
    "a run rejected with TransferError, found before or after the post, leaves the current Context as it was",
    async () => {
      // Reset at the end: at the root, the sets would stay for the tests after this one.
      const token = callback.set(() => {});
      try {
        const pin = pinContext();
        await assert.rejects(pool.run(job), { code: "ERR_CONTEXTVAR_UNCLONEABLE" });
        pin.check("found by the walk");
      } finally {
        callback.reset(token);
      }
      const proxied = new ContextVar<object>("proxied");
      const proxiedToken = proxied.set(new Proxy({}, {}));
      try {
        const pin = pinContext();
        await assert.rejects(pool.run(job), { code: "ERR_CONTEXTVAR_UNCLONEABLE" });
        pin.check("found when the post failed");
      } finally {
        proxied.reset(proxiedToken);
      }
    },
  );

  it("two vars under one name reject the run", async () => {
    const twin = new ContextVar<string>("user");
    const context = new Context();
    await context.run(() => {
      user.set("a");
      twin.set("b");
      return assert.rejects(pool.run(job), exactly(clash("user", context)));
    });
  });

  it("an uncloneable task is piscina's own DataCloneError, not a TransferError", async () => {
    await assert.rejects(
      (pool as unknown as ContextPool<unknown, unknown>).run(() => 1),
      (error: Error) => error.name === "DataCloneError",
    );
  });
});

describe("when values are cloned", () => {
  const box = new ContextVar<{ n: number }>("box");

  it("a Worker clones them when it is constructed: a change made later inside a value is not seen", async () => {
    const value = { n: 1 };
    const worker = box.run(value, () => startEcho(["box"]));
    value.n = 2;
    assert.deepEqual((await firstMessage<EchoReply>(worker)).seen, { box: { n: 1 } });
  });

  it("a pool clones them when piscina posts the job: a job queued behind a busy thread sees such a change", async () => {
    const pool = contextPool<unknown, unknown>(
      new Piscina({ filename: fixture("job.ts").href, execArgv: workerExecArgv, maxThreads: 1 }),
    );
    try {
      const busy = pool.run({ i: 0, delay: 300 });
      const value = { n: 1 };
      const queued = box.run(value, () => pool.run(undefined, { name: "boxed" }));
      value.n = 2;
      await busy;
      assert.deepEqual(await queued, { n: 2 });
    } finally {
      await pool.destroy();
    }
  });
});
