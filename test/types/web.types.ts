/**
 * Type tests for the web integrations: `contextvars/http` (withContext over
 * node:http, node:https and http2-compat listeners), `/express`, `/fastify`,
 * `/hono` and `/koa`. Each middleware or plugin must be accepted where the
 * framework's own (installed) types take one, and the options' `seed` and
 * `generateId` receive the framework's request type. Only typechecked.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import {
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { Router } from "@koa/router";
import { ContextVar } from "contextvars";
import * as expressContext from "contextvars/express";
import { contextPlugin, type FastifyContextOptions } from "contextvars/fastify";
import * as honoContext from "contextvars/hono";
import {
  type HttpContextOptions,
  type NodeRequestLike,
  type NodeResponseLike,
  type RequestContextOptions,
  requestId,
  type UpgradeContextOptions,
  withContext,
  withUpgradeContext,
} from "contextvars/http";
import * as koaContext from "contextvars/koa";
import express, { type Request as ExpressRequest, type RequestHandler } from "express";
import Fastify, { type FastifyPluginCallback, type FastifyRequest } from "fastify";
import { type Env, Hono, type Context as HonoContext, type MiddlewareHandler } from "hono";
import Koa, { type Context as KoaContext, type Middleware as KoaMiddleware } from "koa";
import { WebSocketServer } from "ws";
import { type Equal, type Extends, expectType } from "./expect.ts";

const tenant = new ContextVar<string>("tenant");

export function requestIdIsOneVar(): void {
  expectType<Equal<typeof requestId, ContextVar<string>>>();
  expectType<Equal<typeof expressContext.requestId, ContextVar<string>>>();
  expectType<Equal<typeof honoContext.requestId, ContextVar<string>>>();
  expectType<Equal<typeof koaContext.requestId, ContextVar<string>>>();
  const shown = requestId.get("-");
  expectType<Equal<typeof shown, string>>();
}

export function http(): void {
  const listener = withContext(
    async (req, res) => {
      expectType<Equal<typeof req, IncomingMessage>>();
      expectType<Equal<typeof res, ServerResponse>>();
      res.end(requestId.get());
    },
    {
      header: "x-correlation-id",
      echo: false,
      trustHeader: false,
      generateId: (req) => String(req.headers["x-trace"] ?? "generated"),
      seed: (req) => {
        expectType<Equal<typeof req, IncomingMessage>>();
        tenant.set(req.headers.host ?? "public");
      },
    },
  );
  expectType<Equal<typeof listener, (req: IncomingMessage, res: ServerResponse) => void>>();
  createServer(listener);
  createServer(withContext((_req, res) => res.end()));
  createHttpsServer(
    {},
    withContext((_req, res) => res.end()),
  );

  // An http2-compat server's request and response types are kept.
  const h2 = withContext((req: Http2ServerRequest, res: Http2ServerResponse) => res.end(req.url), {
    seed: (req) => expectType<Equal<typeof req, Http2ServerRequest>>(),
  });
  expectType<Equal<typeof h2, (req: Http2ServerRequest, res: Http2ServerResponse) => void>>();
  createHttp2Server(h2);
  expectType<Extends<Http2ServerRequest, NodeRequestLike>>();
  expectType<Extends<Http2ServerResponse, NodeResponseLike>>();

  // Koa's callback is a listener too, of node:http's server and of an
  // http2-compat one: wrapped, it still takes both, as does its seed.
  const koa = withContext(new Koa().callback(), {
    seed: (req) => expectType<Equal<typeof req, IncomingMessage | Http2ServerRequest>>(),
  });
  createServer(koa);
  createHttp2Server(koa);
  // Express's app is one too, of node:http's server only.
  createServer(withContext(express()));
  // @ts-expect-error Express's app does not take an http2-compat request
  createHttp2Server(withContext(express()));
  // A listener that declares no parameters still gets node:http's.
  const bare = withContext(() => {});
  expectType<Equal<typeof bare, (req: IncomingMessage, res: ServerResponse) => void>>();

  const options: HttpContextOptions<IncomingMessage> = { header: "x-id" };
  const shared: RequestContextOptions<IncomingMessage> = options;
  withContext(() => {}, shared);

  // @ts-expect-error the listener must be a function
  withContext("listener");
  // @ts-expect-error seed must be a function
  withContext(() => {}, { seed: "tenant" });
  // @ts-expect-error generateId returns a string
  withContext(() => {}, { generateId: () => 42 });
  // @ts-expect-error echo is a boolean
  withContext(() => {}, { echo: "yes" });
  // @ts-expect-error an unknown option
  withContext(() => {}, { headerName: "x-id" });
  // @ts-expect-error the request is not a Node request (no headers)
  withContext((req: { url: string }) => req.url);
}

export function upgrade(): void {
  const wss = new WebSocketServer({ noServer: true });
  const listener = withUpgradeContext(
    (req, socket, head) => {
      expectType<Equal<typeof req, IncomingMessage>>();
      expectType<Equal<typeof socket, Duplex>>();
      expectType<Equal<typeof head, Buffer>>();
      wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", () => requestId.get()));
    },
    {
      header: "x-correlation-id",
      echo: false,
      trustHeader: false,
      generateId: (req) => String(req.headers["x-trace"] ?? "generated"),
      seed: (req) => {
        expectType<Equal<typeof req, IncomingMessage>>();
        tenant.set(req.headers.host ?? "public");
      },
    },
  );
  expectType<
    Equal<typeof listener, (req: IncomingMessage, socket: Duplex, head: Buffer) => void>
  >();
  createServer().on("upgrade", listener);
  createHttpsServer().on(
    "upgrade",
    withUpgradeContext(() => {}),
  );
  // A listener typed with net.Socket keeps its type.
  const typed = withUpgradeContext((_req: IncomingMessage, socket: Socket) => socket.remoteAddress);
  expectType<Equal<typeof typed, (req: IncomingMessage, socket: Socket, head: Buffer) => void>>();

  // withContext's options without echo fit; ones that may echo do not.
  const shared: UpgradeContextOptions<IncomingMessage> = { header: "x-id", seed: () => {} };
  withUpgradeContext(() => {}, shared);
  const mayEcho: HttpContextOptions<IncomingMessage> = {};
  // @ts-expect-error echo may only be false: the wrapper writes no response
  withUpgradeContext(() => {}, mayEcho);
  // @ts-expect-error echo may only be false
  withUpgradeContext(() => {}, { echo: true });
  // @ts-expect-error the listener must be a function
  withUpgradeContext("listener");
  // @ts-expect-error seed must be a function
  withUpgradeContext(() => {}, { seed: "tenant" });
}

export function expressMiddleware(): void {
  const app = express();
  const middleware = expressContext.contextMiddleware({
    header: "x-request-id",
    seed: (req) => {
      expectType<Equal<typeof req, ExpressRequest>>();
      tenant.set(req.get("x-tenant") ?? "public");
    },
    generateId: (req) => req.ip ?? "anonymous",
  });
  expectType<Equal<typeof middleware, expressContext.ExpressContextMiddleware>>();
  expectType<Extends<typeof middleware, RequestHandler>>();
  const handler: RequestHandler = middleware;
  app.use(middleware);
  app.use(expressContext.contextMiddleware());
  app.use("/api", [expressContext.contextMiddleware()], handler);
  app.get("/", expressContext.contextMiddleware(), (_req, res) => {
    res.json({ id: requestId.get() });
  });
  express.Router().use(expressContext.contextMiddleware());

  // On a route, the handler after it keeps the params Express infers from
  // the path (a plain RequestHandler would widen them to string | string[]).
  app.get("/users/:id", expressContext.contextMiddleware(), (req, res) => {
    expectType<Equal<typeof req.params.id, string>>();
    res.send(req.params.id);
  });
  express.Router().post("/orders/:orderId/items/:itemId", middleware, (req, res) => {
    expectType<Equal<typeof req.params, { orderId: string } & { itemId: string }>>();
    res.end();
  });
  // Locals typed as an interface, which has no index signature: Express
  // constrains them by Record<string, any>, which an interface meets.
  interface ShopLocals {
    user: string;
  }
  app.get<{ id: string }, string, unknown, unknown, ShopLocals>(
    "/shops/:id",
    expressContext.contextMiddleware(),
    (req, res) => {
      expectType<Equal<typeof res.locals.user, string>>();
      res.send(req.params.id);
    },
  );
  const typedLocals: RequestHandler<{ id: string }, string, unknown, unknown, ShopLocals> =
    expressContext.contextMiddleware();
  app.use(typedLocals);
  const options: expressContext.ExpressContextOptions = { echo: true };
  expressContext.contextMiddleware(options);

  // @ts-expect-error the header is a string
  expressContext.contextMiddleware({ header: 1 });
  // @ts-expect-error seed takes Express's request, not a string
  expressContext.contextMiddleware({ seed: (req: string) => req });
}

export async function fastifyPlugin(): Promise<void> {
  const app = Fastify();
  await app.register(contextPlugin);
  await app.register(contextPlugin, {
    header: "x-correlation-id",
    seed: (request) => {
      expectType<Equal<typeof request, FastifyRequest>>();
      tenant.set(request.hostname);
    },
    generateId: (request) => request.id,
  });
  expectType<Equal<typeof contextPlugin, FastifyPluginCallback<FastifyContextOptions>>>();
  app.get("/me", async () => ({ id: requestId.get() }));

  // Also on an http2 app and one with its own logger type.
  await Fastify({ http2: true }).register(contextPlugin, { echo: false });
  await Fastify({ loggerInstance: Fastify().log }).register(contextPlugin);

  // @ts-expect-error echo is a boolean
  await app.register(contextPlugin, { echo: "no" });
  // @ts-expect-error seed takes the FastifyRequest
  await app.register(contextPlugin, { seed: (request: number) => request });
}

interface AppEnv {
  Variables: { user: string };
  Bindings: { TOKEN: string };
}

export function honoMiddleware(): void {
  const app = new Hono();
  app.use(honoContext.contextMiddleware());
  app.use("/api/*", honoContext.contextMiddleware({ header: "x-trace-id" }));
  const plain = honoContext.contextMiddleware({
    seed: (c) => {
      expectType<Extends<typeof c, HonoContext>>();
      tenant.set(c.req.header("x-tenant") ?? "public");
    },
  });
  expectType<Equal<typeof plain, MiddlewareHandler<Env>>>();

  // With the app's Env written out, seed sees its variables and bindings
  // (`app.use` is overloaded, so E is not inferred from it).
  const typed = new Hono<AppEnv>();
  const middleware = honoContext.contextMiddleware<AppEnv>({
    seed: (c) => {
      const user = c.get("user");
      expectType<Equal<typeof user, string>>();
      expectType<Equal<typeof c.env.TOKEN, string>>();
    },
  });
  expectType<Equal<typeof middleware, MiddlewareHandler<AppEnv>>>();
  typed.use(middleware);
  typed.use(honoContext.contextMiddleware());
  const options: honoContext.HonoContextOptions<AppEnv> = { echo: false };
  typed.use(honoContext.contextMiddleware(options));

  // @ts-expect-error trustHeader is a boolean
  honoContext.contextMiddleware({ trustHeader: 1 });
  // @ts-expect-error "missing" is not one of the app's variables
  honoContext.contextMiddleware<AppEnv>({ seed: (c) => c.get("missing") });
}

export async function seedIsSynchronous(): Promise<void> {
  // What a seed returns is ignored, unless it is a promise: an `async` seed
  // fails every request with a TypeError, so it does not compile.
  withContext(() => {}, { seed: (req) => tenant.set(req.headers.host ?? "public") });
  withContext(() => {}, { seed: (req) => new URL(req.url ?? "/", "http://localhost") });
  expressContext.contextMiddleware({ seed: (req) => [req.ip] });
  koaContext.contextMiddleware({ seed: () => null });

  // @ts-expect-error an async seed
  withContext(() => {}, { seed: async (req) => tenant.set(req.headers.host ?? "public") });
  // @ts-expect-error a seed returning a promise
  expressContext.contextMiddleware({ seed: (req) => Promise.resolve(req.ip) });
  // @ts-expect-error an async seed
  await Fastify().register(contextPlugin, { seed: async (request) => void request });
  // @ts-expect-error a seed returning a PromiseLike
  honoContext.contextMiddleware({ seed: (): PromiseLike<void> => Promise.resolve() });
  // @ts-expect-error an async seed
  koaContext.contextMiddleware({ seed: async (ctx) => void ctx });
}

interface AppState {
  user?: string;
}

export function koaMiddleware(): void {
  const app = new Koa();
  const middleware = koaContext.contextMiddleware({
    seed: (ctx) => {
      expectType<Equal<typeof ctx, KoaContext>>();
      tenant.set(ctx.get("x-tenant") || "public");
    },
    generateId: (ctx) => ctx.ip,
  });
  expectType<Equal<typeof middleware, KoaMiddleware>>();
  app.use(middleware);
  app.use(koaContext.contextMiddleware());
  new Koa<AppState>().use(koaContext.contextMiddleware());
  const router = new Router();
  router.use(koaContext.contextMiddleware());
  app.use(router.routes());
  const options: koaContext.KoaContextOptions = { header: "x-id" };
  koaContext.contextMiddleware(options);

  // @ts-expect-error seed takes Koa's ctx
  koaContext.contextMiddleware({ seed: (ctx: IncomingMessage) => ctx });
  // @ts-expect-error options are an object
  koaContext.contextMiddleware("x-request-id");
}
