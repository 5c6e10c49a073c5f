/**
 * contextvars/worker's Worker on real worker threads: the worker's root
 * Context starts with the parent's values by name, sets in the worker stay
 * there, nested workers inherit, and Node's own options (workerData above
 * all) pass through untouched. Workers load the same source through tsx; see
 * test/helpers/threads.ts.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import { getEnvironmentData } from "node:worker_threads";
import { Context, ContextVar, gather } from "contextvars";
import { Worker } from "contextvars/worker";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { firstMessage, fixture, workerExecArgv } from "../helpers/threads.ts";
import type { EchoData, EchoReply } from "./fixtures/echo-vars.ts";
import type { LateReply } from "./fixtures/late-vars.ts";
import type { PassThroughReply } from "./fixtures/pass-through.ts";

const user = new ContextVar<string>("user");
const count = new ContextVar<number>("count");
const session = new ContextVar<{
  id: string;
  roles: string[];
  at: Date;
  tags: Map<string, Set<number>>;
}>("session");

function echo(
  data: EchoData,
  options: { context?: Context; workerData?: unknown } = {},
): Promise<EchoReply> {
  const { context, workerData = data } = options;
  return firstMessage(
    new Worker(fixture("echo-vars.ts"), { workerData, execArgv: workerExecArgv, context }),
  );
}

describe("Worker", () => {
  itFromEveryState("values arrive in the worker's root Context, by name", async () => {
    user.set("alice");
    count.set(3);
    const at = new Date(0);
    session.set({ id: "s-1", roles: ["admin"], at, tags: new Map([["a", new Set([1, 2])]]) });
    const reply = await echo({ names: ["user", "count", "session", "absent"] });
    assert.deepEqual(reply.seen, {
      user: "alice",
      count: 3,
      session: { id: "s-1", roles: ["admin"], at, tags: new Map([["a", new Set([1, 2])]]) },
      absent: "<unset>",
    });
  });

  it("sets inside the worker do not come back, and do not reach the next worker", async () => {
    await user.run("parent", async () => {
      const first = await echo({ names: ["user"], overwrite: "set in worker" });
      assert.equal(first.seen.user, "parent");
      assert.equal(user.get(), "parent");
      const second = await echo({ names: ["user"] });
      assert.equal(second.seen.user, "parent");
    });
  });

  it("each worker gets the Context current when it is constructed (concurrent siblings)", async () => {
    const replies = await gather(
      ...["a", "b", "c", "d"].map((name) => async () => {
        user.set(name);
        const worker = new Worker(fixture("echo-vars.ts"), {
          workerData: { names: ["user"] },
          execArgv: workerExecArgv,
        });
        user.set(`${name} changed after construction`);
        return (await firstMessage<EchoReply>(worker)).seen.user;
      }),
    );
    assert.deepEqual(replies, ["a", "b", "c", "d"]);
  });

  it("options.context replaces the current Context", async () => {
    const ctx = new Context();
    ctx.run(() => user.set("from ctx"));
    await count.run(7, async () => {
      const reply = await echo({ names: ["user", "count"] }, { context: ctx });
      assert.deepEqual(reply.seen, { user: "from ctx", count: "<unset>" });
    });
  });

  it("the user's workerData reaches the worker unchanged, with or without contextvars there", async () => {
    const workerData = { names: ["user"], nested: { list: [1, 2, 3] }, when: new Date(5) };
    await user.run("u", async () => {
      const reply = await echo(workerData, { workerData });
      assert.deepEqual(reply.workerData, workerData);
      assert.equal(reply.seen.user, "u");
      const plain = await firstMessage<{ workerData: unknown; env: unknown }>(
        new Worker(fixture("plain.ts"), { workerData: 42, execArgv: workerExecArgv }),
      );
      assert.equal(plain.workerData, 42);
    });
  });

  it("with no options at all, the values cross and Node's defaults apply", async () => {
    // Plain JavaScript, so that it loads without the tsx preload that this Worker does not get.
    const plain = new URL(
      `data:text/javascript,${encodeURIComponent(
        'import { getEnvironmentData, parentPort, workerData } from "node:worker_threads";' +
          'parentPort.postMessage({ workerData: workerData ?? null, env: getEnvironmentData("contextvars:values") ?? null, execArgv: process.execArgv });',
      )}`,
    );
    const reply = await user.run("bare", () =>
      firstMessage<{ workerData: unknown; env: [string, unknown][] | null; execArgv: string[] }>(
        new Worker(plain),
      ),
    );
    assert.equal(reply.workerData, null);
    assert.deepEqual(
      reply.env?.filter(([name]) => name === "user"),
      [["user", "bare"]],
    );
    assert.deepEqual(reply.execArgv, process.execArgv, "inherited, as Node's Worker does");
    assert.equal(getEnvironmentData("contextvars:values"), undefined);
  });

  it("the values are not left in this thread's environmentData", async () => {
    await user.run("u", () => echo({ names: [] }));
    assert.equal(getEnvironmentData("contextvars:values"), undefined);
  });

  it("when Node's Worker throws (its workerData cannot be cloned), the values are not left in environmentData either", () => {
    const workerData = {
      get broken(): never {
        throw new Error("workerData getter");
      },
    };
    user.run("u", () => {
      assert.throws(() => new Worker(fixture("echo-vars.ts"), { workerData }), {
        message: "workerData getter",
      });
    });
    assert.equal(getEnvironmentData("contextvars:values"), undefined);
  });

  it("a var the worker creates late reads the value in the root Context, not in a copy taken before", async () => {
    const worker = user.run(
      "alice",
      () => new Worker(fixture("late-vars.ts"), { execArgv: workerExecArgv }),
    );
    assert.deepEqual(await once(worker, "message"), ["ready"]);
    const replied = firstMessage<LateReply>(worker);
    worker.postMessage("go");
    assert.deepEqual(await replied, {
      afterAwait: "alice",
      inCopyTakenBefore: "<unset>",
      inNewContext: "<unset>",
      inTaskStartedBefore: "<unset>",
      inHandler: "alice",
    });
  });

  it("nested workers inherit; values for vars the middle never created pass through", async () => {
    const trace = new ContextVar<string>("trace");
    const reply = await trace.run("t-1", () =>
      user.run("top", () =>
        firstMessage<Record<string, unknown>>(
          new Worker(fixture("nested.ts"), { execArgv: workerExecArgv }),
        ),
      ),
    );
    assert.deepEqual(reply, {
      middle: "top",
      again: "top",
      fromRoot: { user: "top", trace: "t-1" },
      fromRun: { user: "set in middle", trace: "t-1" },
      plain: { user: "<unset>", trace: "<unset>" },
    });
  });

  it("a worker that never loads contextvars passes its values on to the plain Workers it starts", async () => {
    const reply = await user.run("relayed", () =>
      firstMessage<EchoReply>(
        new Worker(fixture("plain-relay.ts"), {
          workerData: { names: ["user"] } satisfies EchoData,
          execArgv: workerExecArgv,
        }),
      ),
    );
    assert.deepEqual(reply.seen, { user: "relayed" });
  });

  it("passed-through values reach a pool job and a toThread call in the middle worker, but not a worker started with a new Context", async () => {
    const trace = new ContextVar<string>("trace");
    const reply = await trace.run("t-1", () =>
      firstMessage<PassThroughReply>(
        new Worker(fixture("pass-through.ts"), { execArgv: workerExecArgv }),
      ),
    );
    assert.deepEqual(reply, {
      emptied: { trace: "<unset>" },
      job: { requestId: "<unset>", trace: "t-1" },
      toThread: { requestId: "<unset>", trace: "t-1" },
    });
  });

  it("an empty Context starts the worker with nothing", async () => {
    await user.run("x", async () => {
      const reply = await echo({ names: ["user"] }, { context: new Context() });
      assert.equal(reply.seen.user, "<unset>");
    });
  });

  it("rejects a context that is not a Context, and a bad onUncloneable, naming each as an option", () => {
    const file = fixture("echo-vars.ts");
    assert.throws(
      () => new Worker(file, { context: {} as Context }),
      new TypeError("Expected `options.context` to be a Context, got `[object Object]` (object)"),
    );
    assert.throws(
      () => new Worker(file, { onUncloneable: "drop" as "skip" }),
      new TypeError(
        'Expected `options.onUncloneable` to be "throw" or "skip", got `"drop"` (string)',
      ),
    );
  });

  // The worker files its vars by name in a weak list, pruned when it doubles.
  it("a worker can hold 600 000 live vars of one name", async () => {
    const reply = await firstMessage(
      new Worker(fixture("many-vars.ts"), {
        workerData: { count: 600_000 },
        execArgv: workerExecArgv,
      }),
    );
    assert.deepEqual(reply, { made: 600_000 });
  });

  it("is a node:worker_threads Worker", async () => {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const worker = new Worker("require('node:worker_threads').parentPort.postMessage(1)", {
      eval: true,
    });
    assert.ok(worker instanceof NodeWorker);
    assert.equal(Object.prototype.toString.call(worker), "[object Worker]");
    assert.equal(await firstMessage(worker), 1);
  });
});
