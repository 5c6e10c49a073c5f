/**
 * `attach()`, the imperative activation `@opentelemetry/api` 1.10 added to
 * its ContextManager (optional there, and `context.attach()` no-ops with a
 * warning under a manager without it). OpenTelemetry JS's own `.attach()`
 * tests (AsyncHooksContextManager.test.ts) run over both managers, ours and
 * AsyncLocalStorageContextManager, with their original names; the one about
 * sibling chains is where the two differ, and both sides of that are pinned.
 * Then what only ours has: attach inside requests, tasks and every starting
 * state, a real tracer's parent span, `using`, and dispose from elsewhere.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import {
  context as contextApi,
  createContextKey,
  type Context as OtelContext,
  ROOT_CONTEXT,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Context, copyContext, createTask, gather } from "contextvars";
import { withContext } from "contextvars/http";
import { type AttachToken, ContextVarsContextManager } from "contextvars/otel";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

/** The managers that have attach (AsyncLocalStorageContextManager has it from 2.12). */
interface Attaching {
  active(): OtelContext;
  with<R>(context: OtelContext, fn: () => R): R;
  bind<T>(context: OtelContext, target: T): T;
  attach(context: OtelContext): { dispose(): void };
  enable(): unknown;
  disable(): unknown;
}

const managers: { name: string; make: () => Attaching }[] = [
  { name: "ContextVarsContextManager", make: () => new ContextVarsContextManager() },
  {
    name: "AsyncLocalStorageContextManager",
    make: () => new AsyncLocalStorageContextManager() as unknown as Attaching,
  },
];

const key1 = createContextKey("test key 1");
const scope = (value: unknown): OtelContext => ROOT_CONTEXT.setValue(key1, value);

for (const { name, make } of managers) {
  describe(`${name}: .attach()`, () => {
    let contextManager: Attaching;

    beforeEach(() => {
      contextManager = make();
      contextManager.enable();
    });

    afterEach(() => {
      contextManager.disable();
    });

    it("should attach and restore context via token.dispose()", () => {
      const context1 = scope(1);
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      const token1 = contextManager.attach(context1);
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should support nested attach with token.dispose()", () => {
      const [context1, context2, context3] = [scope(1), scope(2), scope(3)];
      const token1 = contextManager.attach(context1);
      assert.strictEqual(contextManager.active(), context1);
      const token2 = contextManager.attach(context2);
      assert.strictEqual(contextManager.active(), context2);
      const token3 = contextManager.attach(context3);
      assert.strictEqual(contextManager.active(), context3);
      token3.dispose();
      assert.strictEqual(contextManager.active(), context2);
      token2.dispose();
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should work with async operations", async () => {
      const context1 = scope(1);
      const token1 = contextManager.attach(context1);
      await new Promise<void>((resolve) => {
        setImmediate(() => {
          assert.strictEqual(contextManager.active(), context1);
          resolve();
        });
      });
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should interact correctly with .with()", () => {
      const [context1, context2] = [scope(1), scope(2)];
      const token1 = contextManager.attach(context1);
      contextManager.with(context2, () => {
        assert.strictEqual(contextManager.active(), context2);
      });
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should maintain context across attach inside with()", () => {
      const [context1, context2, context3] = [scope(1), scope(2), scope(3)];
      const token1 = contextManager.attach(context1);
      contextManager.with(context2, () => {
        assert.strictEqual(contextManager.active(), context2);
        const token3 = contextManager.attach(context3);
        assert.strictEqual(contextManager.active(), context3);
        token3.dispose();
        assert.strictEqual(contextManager.active(), context2);
      });
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should work with bound functions after attach", () => {
      const [context1, context2] = [scope(1), scope(2)];
      const token1 = contextManager.attach(context1);
      const fn = contextManager.bind(context2, () => contextManager.active());
      assert.strictEqual(fn(), context2);
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should handle multiple attach/dispose sequences", () => {
      const [context1, context2] = [scope(1), scope(2)];
      const token1 = contextManager.attach(context1);
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      const token2 = contextManager.attach(context2);
      assert.strictEqual(contextManager.active(), context2);
      token2.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should propagate context to promises after attach", async () => {
      const context1 = scope(1);
      const token1 = contextManager.attach(context1);
      const result = await Promise.resolve().then(() => contextManager.active());
      assert.strictEqual(result, context1);
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("should work correctly when disabled", () => {
      contextManager.disable();
      const context1 = scope(1);
      const token1 = contextManager.attach(context1);
      assert.strictEqual(contextManager.active(), context1);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      contextManager.enable();
    });

    it("a second dispose does nothing", () => {
      const [context1, context2] = [scope(1), scope(2)];
      const token1 = contextManager.attach(context1);
      token1.dispose();
      const token2 = contextManager.attach(context2);
      token1.dispose();
      assert.strictEqual(contextManager.active(), context2);
      token2.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
    });

    it("disposed out of order, each token puts back what was active before it", () => {
      const [context1, context2] = [scope(1), scope(2)];
      const token1 = contextManager.attach(context1);
      const token2 = contextManager.attach(context2);
      token1.dispose();
      assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      token2.dispose();
      assert.strictEqual(contextManager.active(), context1);
    });
  });
}

/**
 * Two chains of timer callbacks, each attaching its own context, in a fixed
 * order: A attaches, B attaches, A reads and disposes, B reads and disposes.
 * `start` runs each chain (as it is, or as a task). Returns what A and B read.
 */
async function siblingChains(
  manager: Attaching,
  start: (chain: () => Promise<unknown>) => PromiseLike<unknown>,
): Promise<unknown[]> {
  let bAttached = (): void => {};
  const bReady = new Promise<void>((resolve) => {
    bAttached = resolve;
  });
  const chainA = () =>
    new Promise<unknown>((resolve) => {
      setTimeout(() => {
        const token = manager.attach(scope("A"));
        void bReady.then(() => {
          const seen = key1In(manager.active());
          token.dispose();
          resolve(seen);
        });
      }, 0);
    });
  const chainB = () =>
    new Promise<unknown>((resolve) => {
      setTimeout(() => {
        const token = manager.attach(scope("B"));
        bAttached();
        setTimeout(() => {
          const seen = key1In(manager.active());
          token.dispose();
          resolve(seen);
        }, 0);
      }, 0);
    });
  return Promise.all([start(chainA), start(chainB)]);
}

describe("attach in sibling chains: where the two managers differ", () => {
  it("AsyncLocalStorageContextManager: should not leak an attached context into a concurrent sibling async chain", async () => {
    const manager = new AsyncLocalStorageContextManager() as unknown as Attaching;
    assert.deepEqual(await siblingChains(manager, (chain) => chain()), ["A", "B"]);
    // The attaches happened in the timer callbacks' own async chains.
    assert.strictEqual(manager.active(), ROOT_CONTEXT);
  });

  it("ContextVarsContextManager: timer callbacks of one Context share what they attach, as they share a set", async () => {
    const manager = new ContextVarsContextManager();
    await new Context().run(async () => {
      // A reads B's; A's dispose then resets to what A found, so B reads the root.
      assert.deepEqual(await siblingChains(manager, (chain) => chain()), ["B", undefined]);
      // B's dispose put back what B found, A's: interleaved attaches in one
      // Context do not unwind, as interleaved sets do not.
      assert.equal(key1In(manager.active()), "A");
    });
  });

  it("ContextVarsContextManager: chains run as tasks keep their own, and leave the caller as it was", async () => {
    const manager = new ContextVarsContextManager();
    assert.deepEqual(await siblingChains(manager, (chain) => createTask(chain)), ["A", "B"]);
    assert.strictEqual(manager.active(), ROOT_CONTEXT);
  });
});

function key1In(context: OtelContext): unknown {
  return context.getValue(key1);
}

describe("ContextVarsContextManager: attach in this package's Contexts", () => {
  const manager = new ContextVarsContextManager();

  itFromEveryState(
    "attach reaches awaits and timers of the Context; dispose puts back its previous",
    async () => {
      const before = manager.active();
      const token = manager.attach(scope("x"));
      await immediate();
      assert.equal(key1In(manager.active()), "x");
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          assert.equal(key1In(manager.active()), "x");
          resolve();
        }, 1),
      );
      token.dispose();
      assert.strictEqual(manager.active(), before);
    },
  );

  itFromEveryState(
    "an attach inside a task, a with or a copy does not reach the code around it",
    async () => {
      const before = manager.active();
      await createTask(async () => {
        manager.attach(scope("task"));
        await immediate();
        assert.equal(key1In(manager.active()), "task");
      });
      manager.with(scope("with"), () => manager.attach(scope("inside with")));
      copyContext().run(() => manager.attach(scope("copy")));
      assert.strictEqual(manager.active(), before);
    },
  );

  it("is disposable with using", () => {
    {
      using _ = manager.attach(scope("using"));
      assert.equal(key1In(manager.active()), "using");
    }
    assert.strictEqual(manager.active(), ROOT_CONTEXT);
  });

  it("a copy taken after attach keeps the attached context after dispose; dispose run in the copy puts back the previous there only", () => {
    new Context().run(() => {
      const token: AttachToken = manager.attach(scope("attached"));
      const copy = copyContext();
      token.dispose();
      assert.strictEqual(manager.active(), ROOT_CONTEXT);
      assert.equal(
        copy.run(() => key1In(manager.active())),
        "attached",
      );

      const again = manager.attach(scope("again"));
      copy.run(() => {
        again.dispose(); // another Context: it makes the previous active here
        assert.strictEqual(manager.active(), ROOT_CONTEXT);
      });
      // The attaching Context keeps its attach, and the token is spent.
      assert.equal(key1In(manager.active()), "again");
      again.dispose();
      assert.equal(key1In(manager.active()), "again");
    });
  });

  it("a later attach disposed in another Context makes the one attached before it active there", () => {
    const elsewhere = new Context();
    elsewhere.run(() => manager.attach(scope("elsewhere")));
    new Context().run(() => {
      manager.attach(scope("first"));
      const second = manager.attach(scope("second"));
      elsewhere.run(() => {
        second.dispose(); // what was active before it where it was attached, not the root
        assert.equal(key1In(manager.active()), "first");
      });
      assert.equal(key1In(manager.active()), "second");
    });
  });

  itFromEveryState(
    "a token disposed after disable() leaves no context under the var disable() let go of",
    () => {
      const disabled = new ContextVarsContextManager();
      const vars = () => [...copyContext().keys()].map(String);
      const before = vars();
      disabled.attach(scope("first"));
      const second = disabled.attach(scope("second"));
      const third = disabled.attach(scope("third"));
      disabled.disable();
      assert.deepEqual(vars(), before);
      const since = disabled.attach(scope("since"));
      second.dispose(); // would put "first" back under the old var
      assert.equal(key1In(disabled.active()), "since", "what is active stays");
      since.dispose();
      assert.deepEqual(vars(), before);
      assert.strictEqual(disabled.active(), ROOT_CONTEXT);
      copyContext().run(() => {
        third.dispose(); // another Context: would set "second" there
        assert.deepEqual(vars(), before);
      });
    },
  );

  it("a token disposed after disable() in a Context that attached and that disable() did not reach takes the context out of it", () => {
    const disabled = new ContextVarsContextManager();
    const vars = () => [...copyContext().keys()].map(String);
    const held = new Context();
    const before = held.run(vars);
    const token = held.run(() => disabled.attach(scope("held")));
    assert.notDeepEqual(held.run(vars), before);
    disabled.disable(); // from another Context: held keeps the context until it finishes
    held.run(() => token.dispose());
    assert.deepEqual(held.run(vars), before);
    assert.strictEqual(
      held.run(() => disabled.active()),
      ROOT_CONTEXT,
    );
  });

  it("a missing context attaches the root, as with() takes it", () => {
    new Context().run(() => {
      manager.attach(scope("outer"));
      const token = manager.attach(undefined as unknown as OtelContext);
      assert.strictEqual(manager.active(), ROOT_CONTEXT);
      token.dispose();
      assert.equal(key1In(manager.active()), "outer");
    });
  });
});

describe("ContextVarsContextManager: attach as the global manager, with a real tracer and real requests", () => {
  const manager = new ContextVarsContextManager();
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer("contextvars-test");
  // `context.attach` is in @opentelemetry/api from 1.10 (the OpenTelemetry JS 3
  // line the runtime matrix runs this file on); before that, the manager's own.
  const api = contextApi as unknown as { attach?: (context: OtelContext) => { dispose(): void } };
  const attach = (context: OtelContext) => api.attach?.(context) ?? manager.attach(context);

  before(() => {
    assert.ok(contextApi.setGlobalContextManager(manager), "registered as the global manager");
  });
  after(() => {
    contextApi.disable();
  });

  it("a span made active with attach is the parent of spans started after it, until dispose", async () => {
    await new Context().run(async () => {
      const parent = tracer.startSpan("parent");
      const token = attach(trace.setSpan(contextApi.active(), parent));
      await immediate();
      const child = tracer.startSpan("child");
      token.dispose();
      const orphan = tracer.startSpan("orphan");
      for (const span of [child, orphan, parent]) span.end();
      await provider.forceFlush();
      const spans = new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
      assert.equal(spans.get("child")?.parentSpanContext?.spanId, parent.spanContext().spanId);
      assert.equal(spans.get("orphan")?.parentSpanContext, undefined);
    });
  });

  it("100 concurrent requests each attach their own context and keep it, and none is left for the next request", async () => {
    const server = createServer(
      withContext(async (req, res) => {
        const id = req.headers["x-id"] as string;
        if (id === "after") {
          res.end(String(key1In(contextApi.active()) ?? "none"));
          return;
        }
        attach(scope(id)); // never disposed: the request's Context ends with it
        await randomDelay();
        const seen = await gather(
          async () => key1In(contextApi.active()),
          async () => {
            await randomDelay();
            return key1In(contextApi.active());
          },
        );
        res.end(seen.join(","));
      }),
    );
    const base = await listen(server);
    const agent = keepAliveAgent(10);
    try {
      const ids = Array.from({ length: 100 }, (_, i) => `r${i}`);
      const replies = await Promise.all(
        ids.map((id) => send(base, "/", { agent, headers: { "x-id": id } })),
      );
      assert.deepEqual(
        replies.map((r) => r.body),
        ids.map((id) => `${id},${id}`),
      );
      const later = await Promise.all(
        Array.from({ length: 10 }, () => send(base, "/", { agent, headers: { "x-id": "after" } })),
      );
      assert.deepEqual(
        later.map((r) => r.body),
        Array(10).fill("none"),
      );
      assert.strictEqual(contextApi.active(), ROOT_CONTEXT);
    } finally {
      agent.destroy();
      await close(server);
    }
  });
});
