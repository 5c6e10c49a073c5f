/**
 * One small app on each of the five web integrations, built through their
 * public API only (`contextvars/http`, `/express`, `/fastify`, `/hono`,
 * `/koa`), on a real node:http server on 127.0.0.1 port 0. The leak, fault,
 * bad-input tests and the soak drive them all the same way:
 *
 *   seed        the integration's `seed`, given the Node request
 *   any path    GET: `handle(path, undefined)`; POST: the JSON body parsed
 *               by the framework's own parser, then `handle(path, body)`;
 *               answers 200 with the result as JSON
 *   a throw     from `handle` (or the parser) reaches the framework's error
 *               handling, written in its idiom; it answers 500 with
 *               `onError(error)` as JSON
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { bodyParser } from "@koa/bodyparser";
import * as expressIntegration from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import * as honoIntegration from "contextvars/hono";
import { withContext } from "contextvars/http";
import * as koaIntegration from "contextvars/koa";
import express, { type NextFunction, type Request, type Response } from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import Koa from "koa";
import { close, listen } from "./http.ts";

export interface AppHooks {
  /** Runs as the integration's `seed`, in the request's fresh Context. */
  seed?(req: IncomingMessage): void;
  /** What every route answers; `body` is the parsed JSON body of a POST. */
  handle(path: string, body: unknown): unknown;
  /** What the error handler answers, with status 500. Default `{ error: message }`. */
  onError?(error: unknown): unknown;
}

export interface RunningApp {
  readonly name: string;
  readonly base: string;
  readonly server: Server;
  close(): Promise<void>;
}

export type FrameworkName = "http" | "express" | "fastify" | "hono" | "koa";

const describeError = (error: unknown) => ({
  error: error instanceof Error ? error.message : String(error),
});

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = "";
  req.setEncoding("utf8");
  for await (const chunk of req) text += chunk;
  return text === "" ? undefined : JSON.parse(text);
}

function answer(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

function httpApp(hooks: AppHooks, onError: (error: unknown) => unknown): Server {
  return createServer(
    withContext(
      async (req, res) => {
        try {
          const body = req.method === "POST" ? await readJson(req) : undefined;
          const path = new URL(req.url ?? "/", "http://x").pathname;
          answer(res, 200, await hooks.handle(path, body));
        } catch (error) {
          if (!res.headersSent) answer(res, 500, onError(error));
        }
      },
      { seed: hooks.seed },
    ),
  );
}

function expressApp(hooks: AppHooks, onError: (error: unknown) => unknown): Server {
  const app = express();
  app.use(expressIntegration.contextMiddleware({ seed: hooks.seed }));
  app.use(express.json({ limit: "1mb" }));
  app.use(async (req: Request, res: Response) => {
    res.json(await hooks.handle(req.path, req.method === "POST" ? req.body : undefined));
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json(onError(error));
  });
  return createServer(app);
}

async function fastifyApp(hooks: AppHooks, onError: (error: unknown) => unknown) {
  const app = Fastify({ bodyLimit: 1 << 20 });
  await app.register(contextPlugin, { seed: (request) => hooks.seed?.(request.raw) });
  app.setErrorHandler((error, _request, reply) => {
    void reply.code(500).send(onError(error));
  });
  app.route({
    method: ["GET", "POST"],
    url: "/*",
    handler: async (request) =>
      hooks.handle(new URL(request.url, "http://x").pathname, request.body ?? undefined),
  });
  await app.ready();
  return app.server;
}

function honoApp(hooks: AppHooks, onError: (error: unknown) => unknown): Server {
  type NodeEnv = { Bindings: HttpBindings };
  const app = new Hono<NodeEnv>();
  app.use(
    honoIntegration.contextMiddleware<NodeEnv>({
      seed: (c) => hooks.seed?.(c.env.incoming as IncomingMessage),
    }),
  );
  app.onError((error, c) => c.json(onError(error) as object, 500));
  app.all("*", async (c) => {
    const body: unknown = c.req.method === "POST" ? await c.req.json() : undefined;
    return c.json((await hooks.handle(c.req.path, body)) as object);
  });
  return createServer(getRequestListener(app.fetch));
}

function koaApp(hooks: AppHooks, onError: (error: unknown) => unknown): Server {
  const app = new Koa();
  app.silent = true;
  app.use(koaIntegration.contextMiddleware({ seed: (ctx) => hooks.seed?.(ctx.req) }));
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      ctx.status = 500;
      ctx.body = onError(error);
    }
  });
  app.use(bodyParser({ jsonLimit: "1mb" }));
  app.use(async (ctx) => {
    const body: unknown = ctx.method === "POST" ? ctx.request.body : undefined;
    ctx.body = await hooks.handle(ctx.path, body);
  });
  return createServer(app.callback());
}

const builders: Record<
  FrameworkName,
  (hooks: AppHooks, onError: (error: unknown) => unknown) => Server | Promise<Server>
> = {
  http: httpApp,
  express: expressApp,
  fastify: fastifyApp,
  hono: honoApp,
  koa: koaApp,
};

export const frameworkNames: readonly FrameworkName[] = [
  "http",
  "express",
  "fastify",
  "hono",
  "koa",
];

/** Builds the app on `name`'s integration and starts it on 127.0.0.1, port 0. */
export async function startApp(name: FrameworkName, hooks: AppHooks): Promise<RunningApp> {
  const server = await builders[name](hooks, hooks.onError ?? describeError);
  const base = await listen(server);
  return { name, base, server, close: () => close(server) };
}
