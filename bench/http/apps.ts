/**
 * The servers the HTTP benchmark measures: one small app per framework (and
 * a plain fetch handler, `fetch`, for contextvars/fetch), in
 * each of the modes below, all answering GET / with the same 2-byte body so
 * that only the per-request context work differs.
 *
 *   bare     the framework alone
 *   bare2    the same app again: the bare-vs-bare control (noise floor)
 *   als      plus a minimal hand-written AsyncLocalStorage middleware (a
 *            fresh object per request, `als.run(store, next)`) whose handler
 *            reads the store 3 times: the floor any ALS-based context pays
 *   alsid    the als middleware plus, by hand, what our integration does by
 *            default: a request id from a well-formed `x-request-id` or a
 *            new `crypto.randomUUID()`, echoed with `setHeader` on the raw
 *            response, held in the store (3 reads): the floor for the same
 *            features, so ours/alsid is what the library itself adds
 *   ours     plus this package's integration, defaults (request id from the
 *            header or a new UUID, echoed), handler does 3 `requestId.get()`
 *   quiet    the same with `echo: false`: the context without the response
 *            header (on bare node:http the echo is the response's only
 *            header, which takes Node off its no-headers fast path)
 *   alt      the popular alternative where one exists:
 *            @fastify/request-context, Hono's contextStorage(); 3 reads
 *
 * Each app is imported only in the child process that runs it, so no mode
 * ever has a second AsyncLocalStorage instance loaded beside its own.
 *
 * The package is loaded from JavaScript that tsc compiled (the directory in
 * CONTEXTVARS_BUILD, made by run.ts), as users load dist/, not from the
 * sources through tsx: tsx compiles with esbuild's keepNames, which wraps
 * every function expression in a `__name()` call, an Object.defineProperty
 * that costs about 1 µs per closure created on Node 20, so any closure made
 * per request would be charged a cost that users never pay.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

type HttpModule = typeof import("../../src/integrations/http.ts");
type ExpressModule = typeof import("../../src/integrations/express.ts");
type FastifyModule = typeof import("../../src/integrations/fastify.ts");
type HonoModule = typeof import("../../src/integrations/hono.ts");
type KoaModule = typeof import("../../src/integrations/koa.ts");
type FetchModule = typeof import("../../src/integrations/fetch.ts");

/** Imports an integration from the compiled package. */
async function integration<M>(name: string): Promise<M> {
  const build = process.env.CONTEXTVARS_BUILD;
  if (build === undefined) throw new Error("CONTEXTVARS_BUILD is not set; run bench/http/run.ts");
  return (await import(pathToFileURL(join(build, "integrations", `${name}.js`)).href)) as M;
}

export const FRAMEWORKS = ["http", "express", "fastify", "hono", "koa", "fetch"] as const;
export type Framework = (typeof FRAMEWORKS)[number];
export type Mode = "bare" | "bare2" | "als" | "alsid" | "ours" | "quiet" | "alt";

/** The modes measured for a framework (alt only where an alternative exists). */
export function modesOf(framework: Framework): Mode[] {
  const modes: Mode[] = ["bare", "bare2", "als", "alsid", "ours", "quiet"];
  if (framework === "fastify" || framework === "hono") modes.push("alt");
  return modes;
}

const BODY = "ok";

/** Uses the three values read, so the reads cannot be optimised away. */
function check(a: unknown, b: unknown, c: unknown): string {
  if (a !== b || b !== c || a === undefined) throw new Error("reads disagree");
  return BODY;
}

interface Store {
  url: string | undefined;
}

interface IdStore {
  id: string;
}

// The id rule of src/integrations/request-id.ts, written out as an app would.
const WELL_FORMED_ID = /^[\w.:=+/-]{1,200}$/;
function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === "string" && WELL_FORMED_ID.test(header) ? header : randomUUID();
}
/** The minimal middleware's store plus the id feature: read, validate or make, echo. */
function idStore(req: IncomingMessage, res: ServerResponse): IdStore {
  const id = requestIdFrom(req.headers["x-request-id"]);
  res.setHeader("x-request-id", id);
  return { id };
}

async function listenOn(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  return (server.address() as AddressInfo).port;
}

async function startHttp(mode: Mode): Promise<number> {
  const als = new AsyncLocalStorage<Store>();
  const bare = (_req: IncomingMessage, res: ServerResponse) => res.end(BODY);
  if (mode === "bare" || mode === "bare2") return listenOn(createServer(bare));
  if (mode === "als") {
    const read = (_req: IncomingMessage, res: ServerResponse) => {
      const s = als.getStore;
      res.end(check(s.call(als)?.url, s.call(als)?.url, s.call(als)?.url));
    };
    return listenOn(createServer((req, res) => als.run({ url: req.url }, read, req, res)));
  }
  if (mode === "alsid") {
    const ids = new AsyncLocalStorage<IdStore>();
    const read = (_req: IncomingMessage, res: ServerResponse) => {
      res.end(check(ids.getStore()?.id, ids.getStore()?.id, ids.getStore()?.id));
    };
    return listenOn(createServer((req, res) => ids.run(idStore(req, res), read, req, res)));
  }
  const { requestId, withContext } = await integration<HttpModule>("http");
  return listenOn(
    createServer(
      withContext(
        (_req, res) => res.end(check(requestId.get(), requestId.get(), requestId.get())),
        {
          echo: mode !== "quiet",
        },
      ),
    ),
  );
}

async function startExpress(mode: Mode): Promise<number> {
  const { default: express } = await import("express");
  const app = express();
  if (mode === "bare" || mode === "bare2") {
    app.get("/", (_req, res) => {
      res.send(BODY);
    });
  } else if (mode === "als") {
    const als = new AsyncLocalStorage<Store>();
    app.use((req, _res, next) => als.run({ url: req.url }, next));
    app.get("/", (_req, res) => {
      res.send(check(als.getStore()?.url, als.getStore()?.url, als.getStore()?.url));
    });
  } else if (mode === "alsid") {
    const ids = new AsyncLocalStorage<IdStore>();
    app.use((req, res, next) => ids.run(idStore(req, res), next));
    app.get("/", (_req, res) => {
      res.send(check(ids.getStore()?.id, ids.getStore()?.id, ids.getStore()?.id));
    });
  } else {
    const { contextMiddleware, requestId } = await integration<ExpressModule>("express");
    app.use(contextMiddleware({ echo: mode !== "quiet" }));
    app.get("/", (_req, res) => {
      res.send(check(requestId.get(), requestId.get(), requestId.get()));
    });
  }
  return listenOn(createServer(app));
}

async function startFastify(mode: Mode): Promise<number> {
  const { default: Fastify } = await import("fastify");
  const app = Fastify();
  if (mode === "bare" || mode === "bare2") {
    app.get("/", async () => BODY);
  } else if (mode === "als") {
    const als = new AsyncLocalStorage<Store>();
    app.addHook("onRequest", (request, _reply, done) => als.run({ url: request.url }, done));
    app.get("/", async () => check(als.getStore()?.url, als.getStore()?.url, als.getStore()?.url));
  } else if (mode === "alsid") {
    const ids = new AsyncLocalStorage<IdStore>();
    app.addHook("onRequest", (request, reply, done) =>
      ids.run(idStore(request.raw, reply.raw), done),
    );
    app.get("/", async () => check(ids.getStore()?.id, ids.getStore()?.id, ids.getStore()?.id));
  } else if (mode === "ours" || mode === "quiet") {
    const { contextPlugin, requestId } = await integration<FastifyModule>("fastify");
    await app.register(contextPlugin, { echo: mode !== "quiet" });
    app.get("/", async () => check(requestId.get(), requestId.get(), requestId.get()));
  } else {
    const { fastifyRequestContext, requestContext } = await import("@fastify/request-context");
    await app.register(fastifyRequestContext, { defaultStoreValues: () => ({ url: "/" }) });
    const get = () => requestContext.get("url" as never);
    app.get("/", async () => check(get(), get(), get()));
  }
  await app.listen({ port: 0, host: "127.0.0.1" });
  return (app.server.address() as AddressInfo).port;
}

async function startHono(mode: Mode): Promise<number> {
  const { Hono } = await import("hono");
  const { getRequestListener } = await import("@hono/node-server");
  const app = new Hono();
  if (mode === "bare" || mode === "bare2") {
    app.get("/", (c) => c.text(BODY));
  } else if (mode === "als") {
    // The store holds `c`, as contextStorage's does (c.req.path would parse the URL).
    const als = new AsyncLocalStorage<{ c: object }>();
    app.use((c, next) => als.run({ c }, next));
    app.get("/", (c) => c.text(check(als.getStore()?.c, als.getStore()?.c, als.getStore()?.c)));
  } else if (mode === "alsid") {
    // Through Hono's header API, as our middleware does on any runtime.
    const ids = new AsyncLocalStorage<IdStore>();
    app.use((c, next) => {
      const id = requestIdFrom(c.req.header("x-request-id"));
      c.header("x-request-id", id);
      return ids.run({ id }, next);
    });
    app.get("/", (c) => c.text(check(ids.getStore()?.id, ids.getStore()?.id, ids.getStore()?.id)));
  } else if (mode === "ours" || mode === "quiet") {
    const { contextMiddleware, requestId } = await integration<HonoModule>("hono");
    app.use(contextMiddleware({ echo: mode !== "quiet" }));
    app.get("/", (c) => c.text(check(requestId.get(), requestId.get(), requestId.get())));
  } else {
    const { contextStorage, getContext } = await import("hono/context-storage");
    app.use(contextStorage());
    const get = () => getContext();
    app.get("/", (c) => c.text(check(get(), get(), get())));
  }
  return listenOn(createServer(getRequestListener(app.fetch)));
}

async function startKoa(mode: Mode): Promise<number> {
  const { default: Koa } = await import("koa");
  const app = new Koa();
  if (mode === "als") {
    const als = new AsyncLocalStorage<Store>();
    app.use((ctx, next) => als.run({ url: ctx.url }, next));
    app.use((ctx) => {
      ctx.body = check(als.getStore()?.url, als.getStore()?.url, als.getStore()?.url);
    });
  } else if (mode === "alsid") {
    const ids = new AsyncLocalStorage<IdStore>();
    app.use((ctx, next) => ids.run(idStore(ctx.req, ctx.res), next));
    app.use((ctx) => {
      ctx.body = check(ids.getStore()?.id, ids.getStore()?.id, ids.getStore()?.id);
    });
  } else if (mode === "ours" || mode === "quiet") {
    const { contextMiddleware, requestId } = await integration<KoaModule>("koa");
    app.use(contextMiddleware({ echo: mode !== "quiet" }));
    app.use((ctx) => {
      ctx.body = check(requestId.get(), requestId.get(), requestId.get());
    });
  } else {
    app.use((ctx) => {
      ctx.body = BODY;
    });
  }
  return listenOn(createServer(app.callback()));
}

// A plain fetch handler, with no framework, served from node:http through
// @hono/node-server's getRequestListener, as the Hono app above is.
async function startFetch(mode: Mode): Promise<number> {
  const { getRequestListener } = await import("@hono/node-server");
  type Handler = (request: Request) => Response | Promise<Response>;
  let handler: Handler;
  if (mode === "bare" || mode === "bare2") {
    handler = () => new Response(BODY);
  } else if (mode === "als") {
    const als = new AsyncLocalStorage<{ request: Request }>();
    const read = () =>
      new Response(
        check(als.getStore()?.request, als.getStore()?.request, als.getStore()?.request),
      );
    handler = (request) => als.run({ request }, read);
  } else if (mode === "alsid") {
    // What withContext does by default, by hand: the id read or made, echoed on the Response.
    const ids = new AsyncLocalStorage<IdStore>();
    const read = () => {
      const id = (ids.getStore() as IdStore).id;
      return new Response(check(ids.getStore()?.id, ids.getStore()?.id, id), {
        headers: { "x-request-id": id },
      });
    };
    handler = (request) =>
      ids.run({ id: requestIdFrom(request.headers.get("x-request-id") ?? undefined) }, read);
  } else {
    const { requestId, withContext } = await integration<FetchModule>("fetch");
    handler = withContext(
      () => new Response(check(requestId.get(), requestId.get(), requestId.get())),
      {
        echo: mode !== "quiet",
      },
    );
  }
  return listenOn(createServer(getRequestListener(handler)));
}

/** Starts the app of `framework` in `mode` on 127.0.0.1; resolves to its port. */
export function start(framework: Framework, mode: Mode): Promise<number> {
  switch (framework) {
    case "http":
      return startHttp(mode);
    case "express":
      return startExpress(mode);
    case "fastify":
      return startFastify(mode);
    case "hono":
      return startHono(mode);
    case "koa":
      return startKoa(mode);
    case "fetch":
      return startFetch(mode);
  }
}
