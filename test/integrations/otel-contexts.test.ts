/**
 * ContextVarsContextManager with this package's Contexts and tasks: the
 * OpenTelemetry context is one more var, so copies, bind, tasks and runs
 * carry it like any other, and `with` keeps Python's run semantics.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  context as api,
  createContextKey,
  type Context as OtelContext,
  ROOT_CONTEXT,
} from "@opentelemetry/api";
import {
  bind,
  Context,
  ContextVar,
  callLater,
  callSoon,
  copyContext,
  createTask,
  gather,
  isolated,
  taskGroup,
} from "contextvars";
import { type NodeRequestLike, type NodeResponseLike, withContext } from "contextvars/http";
import { ContextVarsContextManager } from "contextvars/otel";
import { Worker } from "contextvars/worker";
import { close, listen, randomDelay, send } from "../helpers/http.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { firstMessage, fixture, workerExecArgv } from "../helpers/threads.ts";
import type { EchoReply } from "../threads/fixtures/echo-vars.ts";

const manager = new ContextVarsContextManager();
api.setGlobalContextManager(manager.enable());

const key = createContextKey("name");
const named = (name: string): OtelContext => ROOT_CONTEXT.setValue(key, name);
const activeName = (): unknown => api.active().getValue(key);
const user = new ContextVar<string>("user");

describe("ContextVarsContextManager with Contexts", () => {
  it("is reached through @opentelemetry/api and reads well", () => {
    const ctx = named("api");
    api.with(ctx, () => assert.strictEqual(manager.active(), ctx));
    assert.equal(Object.prototype.toString.call(manager), "[object ContextVarsContextManager]");
  });

  itFromEveryState("with() sees the caller's vars; its own sets stay inside", () => {
    user.set("outer");
    api.with(named("a"), () => {
      assert.equal(user.get(), "outer");
      user.set("inner");
      assert.equal(activeName(), "a");
    });
    assert.equal(user.get(), "outer");
    assert.equal(activeName(), undefined);
  });

  itFromEveryState("all continuations of one with() share its Context", async () => {
    await api.with(named("shared"), async () => {
      const callee = async () => {
        await sleep(1);
        user.set("set by callee");
      };
      await callee();
      assert.equal(user.get(), "set by callee");
      assert.equal(activeName(), "shared");
    });
  });

  it("copyContext() and bind() capture the active context with every var", async () => {
    const [snapshot, bound] = api.with(named("captured"), () => {
      user.set("captured");
      return [copyContext(), bind(() => [activeName(), user.get()])] as const;
    });
    assert.equal(activeName(), undefined);
    assert.deepEqual(
      snapshot.run(() => [activeName(), user.get("-")]),
      ["captured", "captured"],
    );
    assert.deepEqual(bound(), ["captured", "captured"]);
    assert.deepEqual(
      new Context().run(() => activeName()),
      undefined,
    );
  });

  it("a task created in with() keeps its context after with() returns", async () => {
    const task = api.with(named("parent"), () =>
      createTask(async () => {
        await sleep(5);
        return activeName();
      }),
    );
    assert.equal(activeName(), undefined);
    assert.equal(await task, "parent");
  });

  it("gather children start from the parent's context and do not see each other's", async () => {
    const seen = await api.with(named("parent"), () =>
      gather(
        ...["a", "b", "c"].map((name) => async () => {
          const before = activeName();
          return api.with(named(name), async () => {
            await sleep(3);
            return [before, activeName()];
          });
        }),
      ),
    );
    assert.deepEqual(seen, [
      ["parent", "a"],
      ["parent", "b"],
      ["parent", "c"],
    ]);
  });

  it("TaskGroup children, isolated calls and callSoon/callLater see the creating context", async () => {
    const results: unknown[] = [];
    await api.with(named("tg"), async () => {
      await taskGroup(async (tg) => {
        tg.createTask(async () => {
          await sleep(2);
          results.push(["task", activeName()]);
        });
        tg.createTask(() => results.push(["sync task", activeName()]));
      });
      const work = isolated(async () => {
        await sleep(1);
        return activeName();
      });
      results.push(["isolated", await work()]);
      await new Promise<void>((resolve) => {
        callSoon(() => results.push(["callSoon", activeName()]));
        callLater(2, () => {
          results.push(["callLater", activeName()]);
          resolve();
        });
      });
    });
    assert.deepEqual(results.sort(), [
      ["callLater", "tg"],
      ["callSoon", "tg"],
      ["isolated", "tg"],
      ["sync task", "tg"],
      ["task", "tg"],
    ]);
  });

  it("after disable(), a request opened inside with() still takes that context", () => {
    const disabled = new ContextVarsContextManager().disable();
    const serverSpan = named("server span");
    let seen: unknown;
    const listener = withContext<NodeRequestLike, NodeResponseLike>(() => {
      seen = disabled.active();
    });
    const req = Object.assign(new EventEmitter(), { headers: {}, rawHeaders: [] });
    const res = Object.assign(new EventEmitter(), { setHeader: () => {} });
    disabled.with(serverSpan, () => listener(req, res));
    assert.equal(seen, serverSpan);
  });

  it("a Worker started inside two managers' with() starts with the caller's vars; the OpenTelemetry contexts, which hold functions and share a name, stay behind", async () => {
    const other = new ContextVarsContextManager();
    const reply = await user.run("alice", () =>
      other.with(named("other"), () =>
        manager.with(named("outer"), () => {
          const worker = new Worker(fixture("echo-vars.ts"), {
            workerData: { names: ["user", "opentelemetry.context"] },
            execArgv: workerExecArgv,
          });
          return firstMessage<EchoReply>(worker);
        }),
      ),
    );
    assert.deepEqual(reply.seen, { user: "alice", "opentelemetry.context": "<unset>" });
  });

  it("200 interleaved with() chains each keep their own context", async () => {
    const names = Array.from({ length: 200 }, (_, i) => `chain-${i}`);
    const seen = await Promise.all(
      names.map((name) =>
        api.with(named(name), async () => {
          const steps: unknown[] = [];
          for (let i = 0; i < 3; i++) {
            await sleep(Math.floor(Math.random() * 3));
            steps.push(activeName());
          }
          return steps;
        }),
      ),
    );
    assert.deepEqual(
      seen,
      names.map((name) => [name, name, name]),
    );
  });

  it("a server that opens a with() per request, as Next.js does for its request span, gives each of 200 concurrent requests its own sets, timers included; none reaches the listening Context", async () => {
    // No integration: the listener runs in the Context where listen() was called.
    const listening = user.get("unset");
    const server = createServer((req, res) => {
      void api.with(named("request span"), async () => {
        const id = new URL(req.url ?? "/", "http://x").searchParams.get("id") ?? "?";
        user.set(id);
        await randomDelay(10);
        const later = await new Promise<string>((resolve) => {
          // as a callback that Next's after() runs once the response is sent
          setTimeout(() => resolve(user.get("unset")), Math.floor(Math.random() * 5));
        });
        res.end(JSON.stringify([user.get("unset"), later, activeName()]));
      });
    });
    const base = await listen(server);
    try {
      const ids = Array.from({ length: 200 }, (_, i) => `request-${i}`);
      const replies = await Promise.all(ids.map((id) => send(base, `/?id=${id}`)));
      assert.deepEqual(
        replies.map((reply) => JSON.parse(reply.body)),
        ids.map((id) => [id, id, "request span"]),
      );
      assert.equal(user.get("unset"), listening);
    } finally {
      await close(server);
    }
  });
});
