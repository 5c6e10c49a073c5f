/**
 * Finished work leaves nothing alive in the observability integrations:
 * ContextVarsContextManager (`with`, `attach`, `bind` of a function or an
 * EventEmitter, `disable`, the manager itself), a real tracer making spans in requests,
 * contextPropagation (`inject`, `extract`, `extractInto`, `wrapFetch`), and
 * the pino mixin and winston format that read vars per log line.
 *
 * What legitimately stays is pinned here and in docs/guarantees.md: a bound
 * function or EventEmitter holds its context while it is reachable, a
 * winston entry object the caller keeps holds the values written into it,
 * and Node's fetch holds the Context of the fetch that started its timer.
 *
 * Requests close their connections (`connection: close`, or the server
 * closes them): an idle keep-alive connection and Node's Date-header cache
 * timer hold a request's Context for their own reasons, pinned in
 * requests.test.ts; `Watch#survivors` waits out the second one.
 * `forgetReadCache()` moves the vars' read cache off the tracked values
 * (var-cache.test.ts).
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  context as contextApi,
  createContextKey,
  type Context as OtelContext,
  ROOT_CONTEXT,
  type Tracer,
} from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Context, ContextVar, copyContext, createTask } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import {
  type BaggageCodec,
  baggageField,
  ContextVarsContextManager,
  contextPropagation,
} from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import { contextFormat, contextMeta } from "contextvars/winston";
import pino from "pino";
import winston from "winston";
import { Watch } from "../helpers/gc.ts";
import { close, listen, send } from "../helpers/http.ts";

interface User {
  name: string;
}

const user = new ContextVar<User>("user");
const scratch = new ContextVar<object>("scratch");
const key = createContextKey("contextvars.leak-test");

// The global manager: the tracer and extractInto go through @opentelemetry/api.
const globalManager = new ContextVarsContextManager().enable();
contextApi.setGlobalContextManager(globalManager);

function forgetReadCache(): void {
  user.get(undefined);
  scratch.get(undefined);
  globalManager.active();
}

/** A tracked OpenTelemetry context of its own. */
function otelContext(watch: Watch, label: string): OtelContext {
  return watch.track(ROOT_CONTEXT.setValue(key, { label }), label);
}

/** A server on 127.0.0.1 whose requests run `handle` in their Context (withContext). */
async function serve(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  seed?: (req: IncomingMessage) => void,
) {
  const server = createServer(withContext(handle, seed === undefined ? {} : { seed }));
  const base = await listen(server);
  return { base, close: () => close(server) };
}

/** `count` requests at once, each with its own id and `connection: close`; all must answer 200. */
async function sendAll(base: string, prefix: string, count = 20): Promise<void> {
  const replies = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      send(base, `/${i}`, { headers: { "x-request-id": `${prefix}-${i}`, connection: "close" } }),
    ),
  );
  for (const reply of replies) assert.equal(reply.status, 200, reply.body);
}

describe("ContextVarsContextManager keeps no finished context", () => {
  it("with: the context given and what fn set, once fn returned, threw or settled", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    await (async () => {
      manager.with(otelContext(watch, "sync"), () => {
        scratch.set(watch.track({}, "sync: value"));
        return manager.active();
      });
      assert.throws(() =>
        manager.with(otelContext(watch, "throwing"), () => {
          throw new Error("fn failed");
        }),
      );
      await manager.with(otelContext(watch, "async"), async () => {
        await sleep(1);
        scratch.set(watch.track({}, "async: value"));
        await sleep(1);
      });
    })();
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), []);
  });

  it("attach: left in a finished run or task, or disposed where it was made", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    await (async () => {
      new Context().run(() => {
        manager.attach(otelContext(watch, "attached in a run"));
      });
      await createTask(async () => {
        const token = manager.attach(otelContext(watch, "attached in a task"));
        await sleep(1);
        token.dispose();
      });
      // In the test's own Context, which outlives the test: dispose gives it back.
      const token = manager.attach(otelContext(watch, "attached here"));
      assert.deepEqual(manager.active().getValue(key), { label: "attached here" });
      token.dispose();
    })();
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), []);
  });

  it("bind(ctx, fn): the context is held while the bound function is reachable, not after", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    const holder: { bound?: () => OtelContext } = {};
    (() => {
      holder.bound = manager.bind(otelContext(watch, "bound"), () => manager.active());
    })();
    assert.equal(holder.bound?.().getValue(key) !== undefined, true);
    assert.deepEqual(await watch.survivors(5), ["bound"], "pinned: the bound function holds it");
    holder.bound = undefined;
    assert.deepEqual(await watch.survivors(), []);
  });

  it("bind(ctx, emitter): removed listeners go at once, the context with the emitter", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    const holder: { emitter?: EventEmitter } = {};
    (() => {
      const emitter = manager.bind(otelContext(watch, "emitter's context"), new EventEmitter());
      holder.emitter = emitter;
      const seen: unknown[] = [];
      const listener = (label: string) =>
        watch.track(() => seen.push(manager.active().getValue(key)), label);
      const on = listener("on");
      const prepended = listener("prependListener");
      emitter.on("a", on);
      emitter.once("a", listener("once"));
      emitter.prependListener("a", prepended);
      emitter.prependOnceListener("b", listener("prependOnceListener"));
      emitter.on("c", listener("removeAllListeners(c)"));
      emitter.emit("a");
      emitter.emit("b");
      emitter.emit("a");
      assert.equal(seen.length, 6);
      emitter.off("a", on);
      emitter.removeListener("a", prepended);
      emitter.removeAllListeners("c");
    })();
    forgetReadCache();
    assert.deepEqual(
      await watch.survivors(8),
      ["emitter's context"],
      "pinned: a bound emitter holds its context while it lives",
    );
    holder.emitter = undefined;
    assert.deepEqual(await watch.survivors(), []);
  });

  it("disable(): a context attached and never disposed in the Context it is called in goes", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    (() => {
      // In the test's own Context, which outlives the test.
      manager.attach(otelContext(watch, "attached, not disposed"));
    })();
    forgetReadCache();
    assert.deepEqual(await watch.survivors(5), ["attached, not disposed"], "held until disable()");
    manager.disable();
    assert.equal(manager.active(), ROOT_CONTEXT);
    assert.deepEqual(await watch.survivors(), []);
  });

  it("disable() from inside a task lets go of a context attached in the root Context", async () => {
    const manager = new ContextVarsContextManager();
    const watch = new Watch();
    (() => {
      // The test's own Context is the root: no run is entered around it.
      manager.attach(otelContext(watch, "attached at the root"));
    })();
    forgetReadCache();
    assert.deepEqual(await watch.survivors(5), ["attached at the root"], "held until disable()");
    await createTask(() => {
      manager.disable();
    });
    assert.deepEqual(await watch.survivors(), []);
  });

  it("a manager no longer referenced goes, enabled and with an emitter it bound", async () => {
    const watch = new Watch();
    (() => {
      const manager = watch.track(new ContextVarsContextManager().enable(), "manager");
      manager.bind(otelContext(watch, "bound emitter"), new EventEmitter()).on("x", () => {});
      // The var the manager keeps its context in, which requests register to inherit.
      const vars = manager.with(otelContext(watch, "with"), () => [...copyContext().keys()]);
      const slot = vars.find((v) => v.name === "opentelemetry.context");
      watch.track(slot as object, "the manager's var");
    })();
    globalManager.enable(); // back as the manager extractInto activates in
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), []);
  });
});

describe("a real tracer keeps no finished request", () => {
  const exporter = new InMemorySpanExporter();
  const tracers: { name: string; tracer: Tracer; reset: () => void }[] = [
    {
      name: "no span processor",
      tracer: new BasicTracerProvider().getTracer("leaks"),
      reset: () => {},
    },
    {
      name: "InMemorySpanExporter, reset",
      tracer: new BasicTracerProvider({
        spanProcessors: [new SimpleSpanProcessor(exporter)],
      }).getTracer("leaks"),
      reset: () => exporter.reset(),
    },
  ];

  for (const { name, tracer, reset } of tracers) {
    it(`${name}: spans in 20 requests through withContext, connections closed`, async () => {
      const watch = new Watch();
      const app = await serve(async (_req, res) => {
        const id = requestId.get();
        await tracer.startActiveSpan("request", async (span) => {
          watch.track(span, `${id}: request span`);
          watch.track(contextApi.active(), `${id}: request span's context`);
          scratch.set(watch.track({}, `${id}: value`));
          await sleep(1);
          await createTask(() =>
            tracer.startActiveSpan("child", (child) => {
              watch.track(child, `${id}: child span`);
              child.end();
            }),
          );
          span.end();
        });
        res.end(id);
      });
      try {
        await sendAll(app.base, name);
        assert.equal(watch.tracked, 20 * 4, "every request tracked its four objects");
        reset();
        forgetReadCache();
        assert.deepEqual(await watch.survivors(), []);
      } finally {
        await app.close();
      }
    });
  }
});

describe("contextPropagation keeps no finished Context", () => {
  // A codec that decodes to a fresh object: the values extracted can be tracked
  // (each request decodes twice, in extractInto and in extract).
  let decoded: Watch | undefined;
  let decodes = 0;
  const userCodec: BaggageCodec<User> = {
    encode: (value) => value.name,
    decode: (text) => (decoded as Watch).track({ name: text }, `${text}: decoded ${++decodes}`),
  };
  const carry = contextPropagation({ user: baggageField(user, userCodec) });
  const tracer = new BasicTracerProvider().getTracer("leaks");
  // Its connection stays open while the tracked requests run, and undici's timer with it.
  const WARM_UP = "/warm-up";

  it("pinned (Node's fetch): the fetch that starts undici's timer holds its Context, the next ones none", async () => {
    // Node 20's and 22's fetch (undici 6) starts its timer wheel, one 499 ms timer it
    // refreshes, in the Context of the fetch that finds it stopped: the first
    // in the process, or the first after it went idle. That timer keeps the
    // Context until a later fetch starts the wheel again. Node 24's and 26's
    // and Deno's keep none (scripts/runtimes/skips.ts).
    const watch = new Watch();
    const app = await serve(async (_req, res) => {
      res.end("ok");
    });
    try {
      for (const label of ["first fetch", "second fetch"]) {
        await new Context().run(async () => {
          scratch.set(watch.track({}, label));
          await (await fetch(app.base)).text();
        });
      }
    } finally {
      await app.close();
    }
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), ["first fetch"], "pinned: undici's timer holds it");
  });

  it("inject, extract and extractInto over 20 requests from propagatingFetch", async () => {
    const watch = new Watch();
    decoded = watch;
    const app = await serve(
      async (req, res) => {
        if (req.url === WARM_UP) {
          res.end();
          return;
        }
        const id = requestId.get();
        const { context, values } = carry.extract(req.headers);
        watch.track(context, `${id}: extract's context`);
        watch.track(values, `${id}: extract's values`);
        const headers = watch.track(
          carry.inject<Record<string, string>>({}),
          `${id}: injected headers`,
        );
        await sleep(1);
        res.end(
          `${user.get(undefined)?.name} ${headers.traceparent === undefined ? "-" : "traced"}`,
        );
      },
      (req) => {
        const context = carry.extractInto(req.headers);
        if (req.url !== WARM_UP) watch.track(context, `${requestId.get()}: extractInto's context`);
      },
    );
    const propagatingFetch = carry.wrapFetch(fetch);
    try {
      // From the test's own Context first: undici's timer (pinned above) starts here.
      await (await fetch(`${app.base}${WARM_UP}`)).text();
      const bodies = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          new Context().run(() => {
            user.set(watch.track({ name: `client-${i}` }, `client-${i}: user`));
            return tracer.startActiveSpan("client", async (span) => {
              watch.track(span, `client-${i}: span`);
              const response = await propagatingFetch(`${app.base}/${i}`, {
                headers: { "x-request-id": `fetch-${i}` },
              });
              span.end();
              return response.text();
            });
          }),
        ),
      );
      assert.deepEqual(
        bodies,
        Array.from({ length: 20 }, (_, i) => `client-${i} traced`),
      );
      assert.equal(watch.tracked, 20 * 8, "every request tracked its eight objects");
    } finally {
      // fetch keeps its connections alive: closing them lets both ends go.
      await app.close();
    }
    decoded = undefined;
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), []);
  });
});

/** A request that seeds a tracked user and logs three lines, from the handler, after an await and from a task. */
function loggingRequests(watch: Watch, log: (message: string) => void) {
  return serve(
    async (_req, res) => {
      log("start");
      await sleep(1);
      log("after await");
      await createTask(async () => log("in a task"));
      res.end(requestId.get());
    },
    () => {
      user.set(watch.track({ name: requestId.get() }, `${requestId.get()}: user`));
    },
  );
}

/** A stream that keeps each line written to it, as a string. */
function toMemory(lines: string[]): Writable {
  return new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
}

describe("the log integrations keep no logged value", () => {
  it("pino contextMixin: 20 requests' users, logged to memory", async () => {
    const watch = new Watch();
    const lines: string[] = [];
    const logger = pino(
      { base: undefined, mixin: contextMixin({ requestId, user }) },
      { write: (line: string) => lines.push(line) },
    );
    const app = await loggingRequests(watch, (message) => logger.info(message));
    try {
      await sendAll(app.base, "pino");
      assert.equal(lines.length, 20 * 3);
      assert.ok(lines.every((line) => line.includes('"user":{"name":"pino-')));
    } finally {
      await app.close();
    }
    forgetReadCache();
    assert.deepEqual(await watch.survivors(), []);
  });

  for (const withMeta of [false, true]) {
    const name = withMeta ? "contextMeta and contextFormat" : "contextFormat";
    it(`winston ${name}: 20 requests' users, logged to memory`, async () => {
      const watch = new Watch();
      const lines: string[] = [];
      const fields = { requestId, user };
      const logger = winston.createLogger({
        ...(withMeta ? { defaultMeta: contextMeta(fields) } : {}),
        format: winston.format.combine(contextFormat(fields), winston.format.json()),
        transports: [new winston.transports.Stream({ stream: toMemory(lines) })],
      });
      const child = logger.child({ module: "db" });
      const app = await loggingRequests(watch, (message) => {
        logger.info(message);
        // An entry object of the caller's own, formatted in place and then dropped.
        logger.info({ message: `${message} (object)` });
        child.warn(message, { extra: true });
      });
      try {
        await sendAll(app.base, "winston");
        assert.equal(lines.length, 20 * 3 * 3);
        assert.ok(lines.every((line) => line.includes('"user":{"name":"winston-')));
      } finally {
        await app.close();
      }
      forgetReadCache();
      assert.deepEqual(await watch.survivors(), []);
    });
  }

  it("winston: an entry object the caller keeps holds what was written into it, and only that", async () => {
    const watch = new Watch();
    const logger = winston.createLogger({
      format: winston.format.combine(contextFormat({ user }), winston.format.json()),
      transports: [new winston.transports.Stream({ stream: toMemory([]) })],
    });
    const kept: { entry?: object } = {};
    (() => {
      new Context().run(() => {
        user.set(watch.track({ name: "kept" }, "kept entry's user"));
        kept.entry = { message: "kept" };
        logger.info(kept.entry);
      });
      new Context().run(() => {
        user.set(watch.track({ name: "dropped" }, "dropped entry's user"));
        logger.info({ message: "dropped" });
      });
    })();
    forgetReadCache();
    assert.deepEqual(
      await watch.survivors(8),
      ["kept entry's user"],
      "pinned: the kept entry holds its user",
    );
    kept.entry = undefined;
    assert.deepEqual(await watch.survivors(), []);
  });
});
