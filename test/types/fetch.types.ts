/**
 * Type tests for `contextvars/fetch`: the wrapper keeps the handler's
 * parameters (the Request, or a subclass of it, and every argument after it:
 * Bun's server, Deno's info, a Worker's env and ctx, Next.js's `{ params }`)
 * and returns what the handler returns, a Response as it is and a promise
 * as a Promise, `undefined` included; `seed` and `generateId` receive the handler's Request type. Only
 * typechecked.
 */
import { ContextVar } from "contextvars";
import { type FetchContextOptions, requestId, withContext } from "contextvars/fetch";
import type { requestId as httpRequestId } from "contextvars/http";
import { Hono } from "hono";
import { type Equal, type Extends, expectFalse, expectType, type IsAny } from "./expect.ts";

const user = new ContextVar<string>("user");

export function oneRequestId(): void {
  expectType<Equal<typeof requestId, typeof httpRequestId>>();
  expectType<Equal<Parameters<NonNullable<FetchContextOptions["seed"]>>, [request: Request]>>();
}

export function plainHandlers(): void {
  const sync = withContext((request: Request) => new Response(request.url));
  expectType<Equal<typeof sync, (request: Request) => Response>>();
  const async = withContext(async (_request: Request) => Response.json({ id: requestId.get() }));
  expectType<Equal<typeof async, (request: Request) => Promise<Response>>>();
  const seeded = withContext(() => new Response(), {
    seed: (request) => user.set(request.headers.get("x-user") ?? "anonymous"),
    generateId: (request) => request.method,
  });
  expectType<Equal<typeof seeded, (request: Request) => Response>>();
  expectFalse<IsAny<Parameters<typeof seeded>[0]>>();
}

// Bun.serve's handler: (req, server), undefined after server.upgrade().
interface BunServer {
  upgrade(request: Request): boolean;
}
export function bunServe(): void {
  const fetch = withContext((request: Request, server: BunServer) =>
    server.upgrade(request) ? undefined : new Response("http"),
  );
  expectType<Equal<typeof fetch, (request: Request, server: BunServer) => Response | undefined>>();
}

// A Cloudflare Worker: (request, env, ctx), called as a method of the export.
interface Env {
  readonly KV: string;
}
interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}
export function worker(): void {
  const handler = {
    fetch: withContext(async (request: Request, env: Env, ctx: ExecutionContext) => {
      ctx.waitUntil(Promise.resolve());
      return new Response(`${env.KV} ${request.url}`);
    }),
  };
  expectType<
    Equal<
      typeof handler.fetch,
      (request: Request, env: Env, ctx: ExecutionContext) => Promise<Response>
    >
  >();
}

// A Next.js route handler: a Request subclass and { params }.
declare class NextRequest extends Request {
  readonly nextUrl: URL;
}
export function nextRouteHandler(): void {
  const GET = withContext(
    async (request: NextRequest, { params }: { params: Promise<{ id: string }> }) =>
      Response.json({ id: (await params).id, path: request.nextUrl.pathname }),
    { seed: (request) => user.set(request.nextUrl.pathname) },
  );
  expectType<
    Equal<
      typeof GET,
      (request: NextRequest, context: { params: Promise<{ id: string }> }) => Promise<Response>
    >
  >();
}

export function honoFetch(): void {
  const app = new Hono();
  const fetch = withContext(app.fetch);
  expectType<Extends<typeof fetch, (request: Request) => Response | Promise<Response>>>();
}

export function refused(): void {
  // @ts-expect-error: not a fetch handler (returns a string)
  withContext((_request: Request) => "text");
  // @ts-expect-error: a node:http listener's request is not a Request
  withContext((req: { headers: Record<string, string> }) => new Response(req.headers.a));
  // @ts-expect-error: an unknown option
  withContext(() => new Response(), { echoHeader: true });
  // @ts-expect-error: the wrapper takes the handler's arguments
  withContext((_request: Request, env: Env) => new Response(env.KV))(new Request("/"));
}
