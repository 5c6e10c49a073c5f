/**
 * The same property as types.test.ts, over the subpaths' public functions:
 * `contextvars/http`, `/fetch`, `/express`, `/fastify`, `/hono`, `/koa`, `/pino`,
 * `/winston`, `/worker`, `/otel`, `/socket.io`. A wrong-typed argument (or option) gives a
 * TypeError naming it, thrown at once (or, for async functions, for
 * `ContextPool#run` and `#close` and for Fastify's `register`, as the rejection), and
 * changes no Context.
 *
 * Not here, on purpose: `contextvars/async-context` checks its arguments as
 * the TC39 proposal does (proposal.test.ts); `extract`/`extractInto` of
 * `contextPropagation` read any carrier, one that cannot be read carrying
 * nothing (propagation.test.ts); and `ContextVarsContextManager` takes what
 * OpenTelemetry's own context managers take.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request as httpRequest, IncomingMessage, ServerResponse } from "node:http";
import { describe, it } from "node:test";
import { ContextVar } from "contextvars";
import * as express from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import * as fetchContext from "contextvars/fetch";
import * as hono from "contextvars/hono";
import { withContext, withUpgradeContext } from "contextvars/http";
import * as koa from "contextvars/koa";
import { baggageField, codecs, contextPropagation } from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import { withSocketContext } from "contextvars/socket.io";
import { contextFormat, contextMeta } from "contextvars/winston";
import { ContextPool, contextPool, toThread, useThreadPool, Worker } from "contextvars/worker";
import expressApp from "express";
import fc from "fast-check";
import Fastify from "fastify";
import { Hono } from "hono";
import Koa from "koa";
import { Piscina } from "piscina";
import { Server as SocketIoServer } from "socket.io";
import { close, listen, send } from "../helpers/http.ts";
import { pinContext } from "../helpers/pin-context.ts";

const noop = () => {};
// Pass instanceof, but are not what they claim: told apart by brand.
const fakeVar: unknown = Object.create(ContextVar.prototype);
const fakePool: unknown = Object.create(ContextPool.prototype);
const anyValue = fc.oneof(
  fc.anything(),
  fc.constantFrom<unknown>(
    Object.create(null),
    new String("x"),
    Symbol("x"),
    10n,
    [noop],
    { run: noop },
    fakeVar,
    fakePool,
  ),
);
const notA = (accept: (x: unknown) => boolean) => anyValue.filter((x) => !accept(x));
const isUndefined = (x: unknown) => x === undefined;
const isFunction = (x: unknown) => typeof x === "function";
const isOptionsObject = (x: unknown) => x === undefined || (typeof x === "object" && x !== null);
const optional = (test: (x: unknown) => boolean) => (x: unknown) => x === undefined || test(x);
const forbiddenHeaders = new Set(
  "connection keep-alive proxy-connection transfer-encoding upgrade te http2-settings content-length".split(
    " ",
  ),
);
const isHeaderName = (x: unknown) =>
  typeof x === "string" &&
  /^[!#$%&'*+.^`|~\w-]+$/.test(x) &&
  !forbiddenHeaders.has(x.toLowerCase());
const isBoolean = (x: unknown) => typeof x === "boolean";
const isModuleLocation = (x: unknown) =>
  x instanceof URL || (typeof x === "string" && /^(file:|\/|[a-zA-Z]:[\\/])/.test(x));
const isFieldValue = (x: unknown) => (x instanceof ContextVar && x !== fakeVar) || isFunction(x);

type Loose = (...args: unknown[]) => unknown;
const loose = <F>(fn: F) => fn as unknown as Loose;
const fakePiscina = {
  run: noop,
  options: { filename: null, name: "default" },
  close: noop,
  destroy: noop,
};
const AnyWorker = Worker as unknown as new (...args: unknown[]) => unknown;

async function registerFastify(options: unknown): Promise<void> {
  const app = Fastify();
  await app.register(contextPlugin, options as never);
  await app.close();
}

/** [what is called, the names the message may use for the argument, wrong values, the call] */
type Case = readonly [string, readonly string[], fc.Arbitrary<unknown>, (bad: unknown) => unknown];

const optionCases = (api: string, make: (options: unknown) => unknown): Case[] => [
  [`${api}(options)`, ["options"], notA(isOptionsObject), (bad) => make(bad)],
  [
    `${api}({ header })`,
    ["options.header"],
    notA(optional(isHeaderName)),
    (bad) => make({ header: bad }),
  ],
  [`${api}({ echo })`, ["options.echo"], notA(optional(isBoolean)), (bad) => make({ echo: bad })],
  [`${api}({ seed })`, ["options.seed"], notA(optional(isFunction)), (bad) => make({ seed: bad })],
  [
    `${api}({ trustHeader })`,
    ["options.trustHeader"],
    notA(optional(isBoolean)),
    (bad) => make({ trustHeader: bad }),
  ],
  [
    `${api}({ generateId })`,
    ["options.generateId"],
    notA(optional(isFunction)),
    (bad) => make({ generateId: bad }),
  ],
];

const socketIo = new SocketIoServer(createServer());
const user = new ContextVar<string>("user");
const carry = contextPropagation({ user });
// A pool whose jobs go nowhere: enough to check the arguments of run().
const runPool = contextPool({
  ...fakePiscina,
  options: { filename: "/job.js", name: "default" },
} as never);
const moved = () => Piscina.move(new ArrayBuffer(1)) as unknown as number;
const isObject = (x: unknown) => typeof x === "object" && x !== null;
const isCodec = (x: unknown) =>
  isObject(x) &&
  typeof (x as { encode?: unknown }).encode === "function" &&
  typeof (x as { decode?: unknown }).decode === "function";
const isBaggageKey = (x: unknown) =>
  typeof x === "string" && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(x) && x !== "__proto__";

const cases: readonly Case[] = [
  ["withContext(listener)", ["listener"], notA(isFunction), (bad) => loose(withContext)(bad)],
  ...optionCases("withContext", (options) => loose(withContext)(noop, options)),
  [
    "fetch withContext(handler)",
    ["handler"],
    notA(isFunction),
    (bad) => loose(fetchContext.withContext)(bad),
  ],
  ...optionCases("fetch withContext", (options) => loose(fetchContext.withContext)(noop, options)),
  ...optionCases("express contextMiddleware", (options) =>
    loose(express.contextMiddleware)(options),
  ),
  ...optionCases("hono contextMiddleware", (options) => loose(hono.contextMiddleware)(options)),
  ...optionCases("koa contextMiddleware", (options) => loose(koa.contextMiddleware)(options)),
  ["socket.io withSocketContext(io)", ["io"], anyValue, (bad) => loose(withSocketContext)(bad)],
  // One server for every case: a call refused for its options changes nothing on it.
  ...optionCases("socket.io withSocketContext", (options) =>
    loose(withSocketContext)(socketIo, options),
  ),
  ...optionCases("fastify register(contextPlugin)", registerFastify).slice(1), // Fastify checks `options` itself
  [
    "pino contextMixin(fields)",
    ["fields"],
    notA((x) => typeof x === "object" && x !== null),
    (bad) => loose(contextMixin)(bad),
  ],
  [
    "pino contextMixin({ field })",
    ['fields["field"]'],
    notA(isFieldValue),
    (bad) => loose(contextMixin)({ field: bad }),
  ],
  [
    "winston contextFormat(fields)",
    ["fields"],
    notA((x) => typeof x === "object" && x !== null),
    (bad) => loose(contextFormat)(bad),
  ],
  [
    "winston contextFormat({ field })",
    ['fields["field"]'],
    notA(isFieldValue),
    (bad) => loose(contextFormat)({ field: bad }),
  ],
  ["winston contextMeta(fields)", ["fields"], notA(isObject), (bad) => loose(contextMeta)(bad)],
  [
    "winston contextMeta({ field })",
    ['fields["field"]'],
    notA(isFieldValue),
    (bad) => loose(contextMeta)({ field: bad }),
  ],
  [
    "otel contextPropagation(fields)",
    ["fields"],
    notA(isObject),
    (bad) => loose(contextPropagation)(bad),
  ],
  [
    "otel contextPropagation({ field })",
    ['fields["field"]'],
    notA((x) => x instanceof ContextVar && x !== fakeVar),
    (bad) => loose(contextPropagation)({ field: bad }),
  ],
  [
    "otel contextPropagation({ [key]: var })",
    ["fields"],
    fc.string().filter((key) => !isBaggageKey(key)),
    (bad) => loose(contextPropagation)({ [bad as string]: user }),
  ],
  [
    "otel baggageField(v, codec)",
    ["v"],
    notA((x) => x instanceof ContextVar && x !== fakeVar),
    (bad) => loose(baggageField)(bad, codecs.string),
  ],
  [
    "otel baggageField(v, codec) with a bad codec",
    ["codec"],
    notA(isCodec),
    (bad) => loose(baggageField)(user, bad),
  ],
  [
    "otel codecs.matching(pattern)",
    ["pattern"],
    notA((x) => x instanceof RegExp),
    (bad) => loose(codecs.matching)(bad),
  ],
  ["otel codecs.json(isT)", ["isT"], notA(isFunction), (bad) => loose(codecs.json)(bad)],
  [
    "otel contextPropagation(…).inject(headers)",
    ["headers"],
    notA(isObject),
    (bad) => loose(carry.inject)(bad),
  ],
  [
    "otel contextPropagation(…).wrapFetch(fetchFn)",
    ["fetchFn"],
    notA(optional(isFunction)),
    (bad) => loose(carry.wrapFetch)(bad),
  ],
  [
    "new Worker(code, options)",
    ["options"],
    notA(isOptionsObject),
    (bad) => new AnyWorker("0", bad),
  ],
  [
    "new Worker(code, { context })",
    ["options.context", "context"],
    notA(isUndefined),
    (bad) => new AnyWorker("0", { eval: true, context: bad }),
  ],
  [
    "new Worker(code, { onUncloneable })",
    ["options.onUncloneable", "onUncloneable"],
    notA(isUndefined),
    (bad) => new AnyWorker("0", { eval: true, onUncloneable: bad }),
  ],
  ["useThreadPool(pool)", ["pool"], notA(isUndefined), (bad) => loose(useThreadPool)(bad)],
  [
    "toThread(moduleUrl)",
    ["moduleUrl"],
    notA(isModuleLocation), // fc.string() can draw "/" or "file:", which are fine
    (bad) => loose(toThread)(bad, "x"),
  ],
  [
    "toThread(moduleUrl, exportName)",
    ["exportName"],
    notA((x) => typeof x === "string"),
    (bad) => loose(toThread)("/x.js", bad),
  ],
  [
    "contextPool(piscina)",
    ["piscina"],
    // duck-typed on run() and options
    notA((x) => {
      const pool = x as { run?: unknown; options?: unknown } | null;
      return typeof pool?.run === "function" && isObject(pool.options);
    }),
    (bad) => loose(contextPool)(bad),
  ],
  [
    "contextPool(piscina, options)",
    ["options"],
    notA(isOptionsObject),
    (bad) => loose(contextPool)(fakePiscina, bad),
  ],
  [
    "ContextPool#run(task, options)",
    ["options"],
    notA(isOptionsObject),
    (bad) => loose(runPool.run).call(runPool, 1, bad),
  ],
  [
    "ContextPool#run(task, { name })",
    ["options.name"],
    notA((x) => x == null || typeof x === "string"),
    (bad) => runPool.run(1, { name: bad as string }),
  ],
  [
    "ContextPool#run(task, { filename })",
    ["options.filename"],
    notA((x) => x == null || isModuleLocation(x)),
    (bad) => runPool.run(1, { filename: bad as string }),
  ],
  [
    "ContextPool#run(task, { transferList })",
    ["options.transferList"],
    notA((x) => x === undefined || Array.isArray(x)),
    (bad) => runPool.run(1, { transferList: bad as [] }),
  ],
  [
    "ContextPool#run(Piscina.move(buffer), { transferList })",
    ["options.transferList"],
    notA((x) => x === undefined || Array.isArray(x)),
    (bad) => runPool.run(moved(), { transferList: bad as [] }),
  ],
  [
    "ContextPool#run(task, { signal })",
    ["options.signal"],
    notA((x) => x == null || x instanceof AbortSignal),
    (bad) => runPool.run(1, { signal: bad as AbortSignal }),
  ],
  [
    "ContextPool#close(options)",
    ["options"],
    notA(isOptionsObject),
    (bad) => loose(runPool.close).call(runPool, bad),
  ],
  [
    "ContextPool#close({ force })",
    ["options.force"],
    notA(optional(isBoolean)),
    (bad) => runPool.close({ force: bad as boolean }),
  ],
  [
    "contextPool(piscina, { onUncloneable })",
    ["options.onUncloneable", "onUncloneable"],
    notA(isUndefined),
    (bad) => loose(contextPool)(fakePiscina, { onUncloneable: bad }),
  ],
];

async function failureOf(call: () => unknown): Promise<unknown> {
  try {
    const result = call();
    return result instanceof Promise ? await result.then(() => undefined) : undefined;
  } catch (error) {
    return error;
  }
}

describe("subpaths: wrong-typed arguments give a TypeError that names them", () => {
  for (const [api, names, wrong, call] of cases) {
    it(api, async () => {
      await fc.assert(
        fc.asyncProperty(wrong, async (bad) => {
          const pin = pinContext();
          const error = await failureOf(() => call(bad));
          pin.check(api);
          assert.ok(error instanceof TypeError, `${api}: ${String(error)}`);
          assert.ok(
            names.some((name) => error.message.includes(`\`${name}\``)),
            `${api}: the message names ${names.join(" or ")}: ${error.message}`,
          );
        }),
        { numRuns: api.startsWith("fastify") ? 15 : 40 },
      );
    });
  }
});

describe("an integration mounted the way another framework's is", () => {
  /** What an Express app answers (its error handler sends the message) with `middleware` mounted first. */
  async function expressMessage(middleware: unknown): Promise<string> {
    const server = createServer(
      expressApp()
        .use(middleware as never)
        .use((_req: unknown, res: { end(text: string): void }) => res.end("no error"))
        .use((error: Error, _req: unknown, res: { end(text: string): void }, _next: unknown) => {
          res.end(error.message);
        }),
    );
    try {
      return (await send(await listen(server), "/")).body;
    } finally {
      await close(server);
    }
  }
  /** The message of the first error a Koa app with `middleware` mounted reports, if any. */
  async function koaMessage(middleware: unknown): Promise<string | undefined> {
    const app = new Koa();
    app.use(middleware as never);
    const errors: string[] = [];
    app.on("error", (error: Error) => errors.push(error.message));
    const server = createServer(app.callback());
    try {
      await send(await listen(server), "/");
    } finally {
      await close(server);
    }
    return errors[0];
  }
  /** What a Hono app answers (its onError sends the message) with `middleware` mounted first. */
  async function honoMessage(middleware: unknown): Promise<string> {
    const app = new Hono();
    app.use(middleware as never);
    app.onError((error, c) => c.text(error.message, 500));
    app.get("/", (c) => c.text("no error"));
    return (await app.request("/")).text();
  }
  /** What `listener` throws when a real node:http server calls it with (req, res), once. */
  async function thrownAsRequestListener(listener: (req: never, res: never) => unknown) {
    const thrown: unknown[] = [];
    const server = createServer((req, res) => {
      try {
        listener(req as never, res as never);
      } catch (error) {
        thrown.push(error);
      }
      res.end();
    });
    try {
      await send(await listen(server), "/");
    } finally {
      await close(server);
    }
    assert.equal(thrown.length, 1);
    return thrown[0];
  }
  /** What `listener` throws when a real node:http server calls it as an upgrade listener, once. */
  async function thrownAsUpgradeListener(listener: (...args: never[]) => unknown) {
    const thrown: unknown[] = [];
    const server = createServer();
    server.on("upgrade", (req, socket, head) => {
      try {
        listener(req as never, socket as never, head as never);
      } catch (error) {
        thrown.push(error);
      }
      socket.destroy();
    });
    try {
      const url = new URL(await listen(server));
      const request = httpRequest({
        host: url.hostname,
        port: url.port,
        headers: { connection: "Upgrade", upgrade: "websocket" },
      });
      const ended = once(request, "error").catch(() => {});
      request.end();
      await ended;
    } finally {
      await close(server);
    }
    assert.equal(thrown.length, 1);
    return thrown[0];
  }
  /** The message of the error a Fastify app answers with when `mount` put `fn` on its route or hook. */
  async function fastifyMessage(mount: "route" | "hook", fn: unknown): Promise<string> {
    const app = Fastify();
    if (mount === "hook") app.addHook("onRequest", fn as never);
    app.get("/", mount === "route" ? (fn as never) : async () => "no error");
    try {
      const reply = await app.inject("/");
      assert.equal(reply.statusCode, 500);
      return (JSON.parse(reply.body) as { message: string }).message;
    } finally {
      await app.close();
    }
  }
  const uncalled =
    /^contextMiddleware was called as middleware.*mount app\.use\(contextMiddleware\(options\)\), not contextMiddleware itself$/;

  it("express, koa: app.use(contextMiddleware) fails each request saying to call it", async () => {
    const expressServer = createServer(
      expressApp()
        .use(loose(express.contextMiddleware) as never)
        .use((error: Error, _req: unknown, res: { end(text: string): void }, _next: unknown) => {
          res.end(error.message);
        }),
    );
    const koaApp = new Koa();
    koaApp.use(loose(koa.contextMiddleware) as never);
    const koaErrors: string[] = [];
    koaApp.on("error", (error: Error) => koaErrors.push(error.message));
    const koaServer = createServer(koaApp.callback());
    try {
      const fromExpress = await send(await listen(expressServer), "/");
      assert.match(fromExpress.body, uncalled);
      const fromKoa = await send(await listen(koaServer), "/");
      assert.equal(fromKoa.status, 500);
      assert.equal(koaErrors.length, 1);
      assert.match(koaErrors[0] as string, uncalled);
    } finally {
      await close(expressServer);
      await close(koaServer);
    }
  });

  it("a contextMiddleware mounted in another framework fails each request naming the subpath to import", async () => {
    const importFrom = (subpath: string) =>
      new RegExp(
        `^contextMiddleware from contextvars/\\w+ is \\w+ middleware, but .* called it: import contextMiddleware from ${subpath} instead$`,
      );
    assert.match(await expressMessage(koa.contextMiddleware()), importFrom("contextvars/express"));
    assert.match(await expressMessage(hono.contextMiddleware()), importFrom("contextvars/express"));
    assert.match(
      (await koaMessage(express.contextMiddleware())) ?? "",
      importFrom("contextvars/koa"),
    );
    assert.match((await koaMessage(hono.contextMiddleware())) ?? "", importFrom("contextvars/koa"));
    assert.match(await honoMessage(express.contextMiddleware()), importFrom("contextvars/hono"));
    assert.match(await honoMessage(koa.contextMiddleware()), importFrom("contextvars/hono"));
  });

  it("a contextMiddleware its own framework's request reaches without a next is not told to import itself", async () => {
    const middleware = hono.contextMiddleware();
    const app = new Hono();
    app.onError((error, c) => c.text(error.message, 500));
    app.get("/", (c) => (middleware as (c: unknown, next?: unknown) => Promise<void>)(c));
    const reply = await app.request("/");
    assert.equal(reply.status, 500);
    assert.doesNotMatch(await reply.text(), /contextvars\/hono/);
  });

  it("node:http: createServer(contextMiddleware()) of any subpath says to wrap the listener in withContext, and patches nothing of Node's", async () => {
    const prototypes = [IncomingMessage.prototype, ServerResponse.prototype];
    const ownKeys = prototypes.map((p) => Reflect.ownKeys(p));
    const listener =
      "node:http called it as a request listener, with \\(req, res\\): (?<mount>.*)wrap the listener in withContext\\(listener, options\\) from contextvars/http";
    for (const [subpath, framework, middleware] of [
      ["express", "Express", express.contextMiddleware()],
      ["koa", "Koa", koa.contextMiddleware()],
      ["hono", "Hono", hono.contextMiddleware()],
    ] as const) {
      const thrown = await thrownAsRequestListener(middleware as never);
      assert.ok(thrown instanceof TypeError);
      const match = new RegExp(
        `^contextMiddleware from contextvars/${subpath} is ${framework} middleware, but ${listener}$`,
      ).exec(thrown.message);
      assert.ok(match, thrown.message);
      // Only Express's own can also be mounted in an app.
      assert.equal(
        match.groups?.mount,
        subpath === "express"
          ? "mount it in an Express app with app.use(contextMiddleware(options)), or "
          : "",
      );
    }
    assert.deepEqual(
      prototypes.map((p) => Reflect.ownKeys(p)),
      ownKeys,
    );
  });

  it("express: contextMiddleware called by hand from a route, without next, says to mount it", async () => {
    const middleware = express.contextMiddleware() as unknown as (
      req: unknown,
      res: unknown,
    ) => void;
    const server = createServer(
      expressApp()
        .get("/", (req: unknown, res: unknown) => middleware(req, res))
        .use((error: Error, _req: unknown, res: { end(text: string): void }, _next: unknown) => {
          res.end(error.message);
        }),
    );
    try {
      assert.equal(
        (await send(await listen(server), "/")).body,
        "contextMiddleware from contextvars/express was called without Express's next: mount it with app.use(contextMiddleware(options)), first, rather than calling it",
      );
    } finally {
      await close(server);
    }
  });

  it("hono: app.use(contextMiddleware) fails each request saying to call it", async () => {
    const app = new Hono();
    app.use(loose(hono.contextMiddleware) as never);
    app.onError((error, c) => c.text(error.message, 500));
    app.get("/", (c) => c.text("ok"));
    const reply = await app.request("/");
    assert.equal(reply.status, 500);
    assert.match(await reply.text(), uncalled);
  });

  it("node:http: createServer(withContext) says to wrap the listener", async () => {
    const thrown = await thrownAsRequestListener(loose(withContext));
    assert.ok(thrown instanceof TypeError);
    assert.match(
      thrown.message,
      /^withContext was called as a request listener, with \(req, res\): .*createServer\(withContext\(listener, options\)\)/,
    );
  });

  it("node:http: server.on('upgrade', withUpgradeContext) says to wrap the listener", async () => {
    const thrown = await thrownAsUpgradeListener(loose(withUpgradeContext));
    assert.ok(thrown instanceof TypeError);
    assert.match(
      thrown.message,
      /^withUpgradeContext was called as an upgrade listener, with \(req, socket, head\): .*server\.on\("upgrade", withUpgradeContext\(listener, options\)\)/,
    );
  });

  it("fastify: register(contextPlugin(options)) says to register the plugin itself", async () => {
    const app = Fastify();
    const error = await failureOf(() =>
      app.register(loose(contextPlugin)({ header: "x-id" }) as never),
    );
    await app.close();
    assert.ok(error instanceof TypeError);
    assert.match(
      error.message,
      /^contextPlugin is a Fastify plugin, not a factory: .*await app\.register\(contextPlugin, options\)/,
    );
  });

  it("express, koa, hono, node:http: contextPlugin given as middleware or a request listener names what to use there, not Fastify's register", async () => {
    const is = "^contextPlugin is a Fastify plugin, but ";
    const fromNode = await thrownAsRequestListener(contextPlugin as never);
    assert.ok(fromNode instanceof TypeError);
    assert.equal(
      fromNode.message,
      "contextPlugin is a Fastify plugin, but node:http called it as a request listener, with (req, res): wrap the listener in withContext(listener, options) from contextvars/http",
    );
    assert.match(
      await expressMessage(contextPlugin),
      new RegExp(
        `${is}Express called it: import contextMiddleware from contextvars/express instead$`,
      ),
    );
    assert.match(
      (await koaMessage(contextPlugin)) ?? "",
      new RegExp(`${is}Koa called it: import contextMiddleware from contextvars/koa instead$`),
    );
    assert.match(
      await honoMessage(contextPlugin),
      new RegExp(`${is}Hono called it: import contextMiddleware from contextvars/hono instead$`),
    );
  });

  it("fastify: withContext given as serverFactory itself says to wrap the handler in one", async () => {
    const error = await failureOf(async () => {
      const app = Fastify({ serverFactory: withContext as never });
      await app.close();
    });
    assert.ok(error instanceof TypeError);
    assert.equal(
      error.message,
      "withContext was called as Fastify's serverFactory, with (handler, options): it wraps a listener and makes no server, so pass serverFactory: (handler) => createServer(withContext(handler, options))",
    );
  });

  it("node:http: a Koa app, a Hono app or a Fastify instance given whole to withContext is told what to pass instead", async () => {
    const fastifyApp = Fastify();
    try {
      const apps: [unknown, string][] = [
        [
          new Koa(),
          "Expected `listener` to be a function, got `[object Object]` (object); a Koa app is not a listener, its callback is: withContext(app.callback())",
        ],
        [
          new Hono(),
          "Expected `listener` to be a function, got `[object Object]` (object); a Hono app is not a listener: use contextMiddleware from contextvars/hono, or withContext(getRequestListener(app.fetch)) with @hono/node-server",
        ],
        [
          fastifyApp,
          "Expected `listener` to be a function, got `[object Object]` (object); a Fastify instance makes its own server: register contextPlugin from contextvars/fastify, or wrap its handler with serverFactory: (handler) => createServer(withContext(handler))",
        ],
        // Any other object is told only that it is not a function.
        [{ fetch: 1 }, "Expected `listener` to be a function, got `[object Object]` (object)"],
      ];
      for (const [app, message] of apps) {
        assert.throws(() => withContext(app as never), { name: "TypeError", message });
      }
      // What each message says to pass is accepted.
      assert.equal(typeof withContext(new Koa().callback()), "function");
    } finally {
      await fastifyApp.close();
    }
  });

  it("fastify: Express's contextMiddleware({ echo: false }) on an onRequest hook adds no listener methods to Fastify's request and reply", async () => {
    const app = Fastify();
    app.addHook("onRequest", express.contextMiddleware({ echo: false }) as never);
    app.get("/", async (request, reply) => ({
      request: typeof (request as { on?: unknown }).on,
      reply: typeof (reply as { on?: unknown }).on,
    }));
    try {
      await app.inject("/");
      assert.deepEqual(JSON.parse((await app.inject("/")).body), {
        request: "undefined",
        reply: "undefined",
      });
    } finally {
      await app.close();
    }
  });

  it("fastify: a contextMiddleware, made or not, on a hook, a route or register says to register contextPlugin, and register rejects", async () => {
    const registerContextPlugin =
      /^contextMiddleware from contextvars\/\w+ is \w+ middleware, but Fastify called it: register contextPlugin from contextvars\/fastify instead, await app\.register\(contextPlugin, options\)$/;
    for (const subpath of [express, koa, hono]) {
      assert.match(await fastifyMessage("route", subpath.contextMiddleware), registerContextPlugin);
      assert.match(await fastifyMessage("hook", subpath.contextMiddleware), registerContextPlugin);
      const app = Fastify();
      const error = await failureOf(async () => {
        await app.register(subpath.contextMiddleware as never);
      });
      await app.close();
      assert.ok(error instanceof TypeError);
      assert.match(error.message, registerContextPlugin);
    }
    // Made: those that find no next of their framework (Express's as a route, which has no next).
    assert.match(await fastifyMessage("route", express.contextMiddleware()), registerContextPlugin);
    for (const subpath of [koa, hono]) {
      assert.match(
        await fastifyMessage("route", subpath.contextMiddleware()),
        registerContextPlugin,
      );
      assert.match(
        await fastifyMessage("hook", subpath.contextMiddleware()),
        registerContextPlugin,
      );
    }
  });

  it("node:http: a contextMiddleware, made or not, and withContext given as an upgrade listener say to wrap it in withUpgradeContext", async () => {
    const wrapUpgrade =
      'wrap the upgrade listener in withUpgradeContext\\(listener, options\\) from contextvars/http: server\\.on\\("upgrade", withUpgradeContext\\(listener, options\\)\\)$';
    for (const fn of [
      express.contextMiddleware,
      koa.contextMiddleware,
      hono.contextMiddleware,
      express.contextMiddleware(),
      koa.contextMiddleware(),
      hono.contextMiddleware(),
    ]) {
      const thrown = await thrownAsUpgradeListener(fn as never);
      assert.ok(thrown instanceof TypeError);
      assert.match(
        thrown.message,
        new RegExp(
          `^contextMiddleware from contextvars/\\w+ is \\w+ middleware, but node:http called it as an upgrade listener, with \\(req, socket, head\\): ${wrapUpgrade}`,
        ),
      );
    }
    const thrown = await thrownAsUpgradeListener(loose(withContext));
    assert.ok(thrown instanceof TypeError);
    assert.match(
      thrown.message,
      new RegExp(
        `^withContext wraps a request listener, but node:http called it as an upgrade listener, with \\(req, socket, head\\): ${wrapUpgrade}`,
      ),
    );
    // Nor is contextPlugin told it is withUpgradeContext.
    const fromPlugin = await thrownAsUpgradeListener(contextPlugin as never);
    assert.ok(fromPlugin instanceof TypeError);
    assert.match(
      fromPlugin.message,
      new RegExp(
        `^contextPlugin is a Fastify plugin, but node:http called it as an upgrade listener, with \\(req, socket, head\\): ${wrapUpgrade}`,
      ),
    );
  });

  it("node:http: an uncalled contextMiddleware as a request listener says to wrap the listener in withContext, and withUpgradeContext as one is not said to be an upgrade listener", async () => {
    for (const [subpath, framework] of [
      [express, "Express"],
      [koa, "Koa"],
      [hono, "Hono"],
    ] as const) {
      const thrown = await thrownAsRequestListener(subpath.contextMiddleware as never);
      assert.ok(thrown instanceof TypeError);
      assert.match(
        thrown.message,
        new RegExp(
          `^contextMiddleware from contextvars/${framework.toLowerCase()} is ${framework} middleware, but node:http called it as a request listener, with \\(req, res\\): .*wrap the listener in withContext\\(listener, options\\) from contextvars/http$`,
        ),
      );
    }
    const thrown = await thrownAsRequestListener(loose(withUpgradeContext));
    assert.ok(thrown instanceof TypeError);
    assert.equal(
      thrown.message,
      "withUpgradeContext wraps a server's upgrade listener, but node:http called it as a request listener, with (req, res): wrap the listener in withContext(listener, options) from contextvars/http",
    );
  });

  it("koa, hono, fastify: withContext and withUpgradeContext given as middleware, a hook, a route or a plugin name what to use there, and register rejects", async () => {
    for (const [name, wrapper] of [
      ["withContext", withContext],
      ["withUpgradeContext", withUpgradeContext],
    ] as const) {
      const wraps = new RegExp(
        `^${name} wraps (a request listener|a server's upgrade listener), but `,
      );
      const fromKoa = (await koaMessage(wrapper)) ?? "";
      assert.match(fromKoa, wraps);
      assert.match(
        fromKoa,
        /Koa called it: import contextMiddleware from contextvars\/koa instead$/,
      );
      const fromHono = await honoMessage(wrapper);
      assert.match(fromHono, wraps);
      assert.match(
        fromHono,
        /Hono called it: import contextMiddleware from contextvars\/hono instead$/,
      );
      const fromFastify =
        /Fastify called it: register contextPlugin from contextvars\/fastify instead, await app\.register\(contextPlugin, options\)$/;
      for (const mount of ["route", "hook"] as const) {
        const message = await fastifyMessage(mount, wrapper);
        assert.match(message, wraps);
        assert.match(message, fromFastify);
      }
      const app = Fastify();
      const error = await failureOf(async () => {
        await app.register(wrapper as never);
      });
      await app.close();
      assert.ok(error instanceof TypeError);
      assert.match(error.message, wraps);
      assert.match(error.message, fromFastify);
    }
  });
});
