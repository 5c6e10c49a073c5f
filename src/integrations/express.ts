/**
 * `contextvars/express`: request-scoped context for Express 5 (and 4).
 */
import type { NextFunction, Request, Response } from "express";
import type { Context as RequestContext } from "../core/context.ts";
import { bindPrototype, bindToRequest } from "./request-emitters.ts";
import {
  assertMountedIn,
  type RequestContextOptions,
  refuseUncalled,
  requestId,
  resolveOptions,
} from "./request-id.ts";
import {
  fileRequestContext,
  nodeRequestContext,
  requestContextOf,
  runInRequest,
} from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/** Options of the Express middleware; `seed` and `generateId` receive Express's `req`. */
export type ExpressContextOptions = RequestContextOptions<Request>;

/**
 * What `contextMiddleware()` returns: a RequestHandler (it is assignable to
 * one) generic in the request's types, so that mounted on a route,
 * `app.get("/users/:id", contextMiddleware(), handler)`, it adds nothing to
 * what Express infers for the handler: `req.params.id` stays a `string`
 * where a plain RequestHandler would widen it to ParamsDictionary's.
 */
export type ExpressContextMiddleware = <
  P,
  ResBody,
  ReqBody,
  ReqQuery,
  // biome-ignore lint/suspicious/noExplicitAny: Express's own bound; an interface (res.locals typed without an index signature) meets it, not Record<string, unknown>
  Locals extends Record<string, any>,
>(
  req: Request<P, ResBody, ReqBody, ReqQuery, Locals>,
  res: Response<ResBody, Locals>,
  next: NextFunction,
) => void;

/**
 * Express 5 (and 4) middleware that runs the rest of the request (later
 * middleware, body parsers, the route handler, error handlers,
 * `res.on("finish")` listeners) in the request's own fresh copy of the root
 * Context. Mount it first, so that everything after it is inside. `requestId` is set from the
 * `x-request-id` header when well-formed (else a new UUID) and echoed;
 * then `seed` runs.
 *
 * Values set by a middleware, also after an `await` in an async one, are
 * seen by every later middleware and the handler. Listeners added to `req`
 * and `res` run in the request's Context: the middleware installs the
 * listener methods once on the app's `app.request`/`app.response` (a sub-app
 * mounted with `app.use` inherits them; one reached through a Router needs
 * its own mount). Mounted twice, or under
 * `withContext` from `contextvars/http`, the request still has one Context
 * (later mounts enter it and run only their `seed`).
 *
 * @example
 * import express from "express";
 * import { ContextVar } from "contextvars";
 * import { contextMiddleware, requestId } from "contextvars/express";
 *
 * const tenant = new ContextVar<string>("tenant");
 * const app = express();
 * app.use(contextMiddleware({ seed: (req) => tenant.set(req.get("x-tenant") ?? "public") }));
 * app.use(express.json());
 * app.post("/orders", async (req, res) => {
 *   res.json({ id: requestId.get(), tenant: tenant.get(), items: req.body });
 * });
 * @throws {TypeError} if an option has the wrong type, or when mounted uncalled (`app.use(contextMiddleware)`)
 *   or in another framework (imported from the wrong subpath), on Fastify (a hook or route; `register` rejects)
 *   or as a node:http request or upgrade listener: then at each request, naming what to use there.
 */
export function contextMiddleware(options?: ExpressContextOptions): ExpressContextMiddleware {
  // biome-ignore lint/complexity/noArguments: a mount of the uncalled factory shows only in its arguments
  if (arguments.length > 1) return refuseUncalled("Express", arguments) as never;
  const resolved = resolveOptions(options);
  const seed = resolved.seed;
  // Typed for every route's Request, used as the plain Request it is.
  return function contextMiddleware(req: Request, res: Response, next: NextFunction): void {
    // Koa and Hono call middleware with (ctx, next), node:http a listener with
    // (req, res): no `next` of Express's. Refused before anything is done:
    // going on would patch the prototypes of req and res (Node's own, for
    // node:http), then fail at `next()`.
    if (typeof next !== "function") {
      assertMountedIn("Express", req, res);
      throw calledWithoutNext();
    }
    const context = nodeRequestContext(req, res, resolved, req, fileFor);
    // Also when the request had its Context already: a later mount in a sub-app
    // whose prototypes are not chained to the app's (one reached through a
    // Router, which emits no "mount") must patch the sub-app's own.
    bindThroughApp(req, res, context);
    runInRequest(context, proceed, seed, req, next);
  } as ExpressContextMiddleware;
}

// Express's own request, but no next: called by hand, from a route.
function calledWithoutNext(): TypeError {
  return new TypeError(
    "contextMiddleware from contextvars/express was called without Express's next: mount it with app.use(contextMiddleware(options)), first, rather than calling it",
  );
}

// A new request's Context is filed for req (nothing is added to the object).
function fileFor(req: Request, _res: Response, context: RequestContext): void {
  fileRequestContext(req, context);
}

// Express has swapped the prototypes of req and res for the app's own by now;
// adding to the objects would be slow, so the Context is filed in the WeakMap
// and the app's prototypes are patched once instead (request-emitters.ts).
// An object another library bound before Express saw it has listener methods
// of its own, which call those it found then and never reach the prototypes'
// (OpenTelemetry's AsyncLocalStorageContextManager, as instrumentation-http
// binds req and res): that object is bound itself, over them.
function bindThroughApp(req: Request, res: Response, context: RequestContext): void {
  bindPrototype(Object.getPrototypeOf(req) as object, requestContextOf);
  bindPrototype(Object.getPrototypeOf(res) as object, contextOfResponse);
  if (Object.hasOwn(req, "on")) bindToRequest(req, context);
  if (Object.hasOwn(res, "on")) bindToRequest(res, context);
}

function contextOfResponse(res: object): RequestContext | undefined {
  const req = (res as { req?: unknown }).req;
  return typeof req === "object" && req !== null ? requestContextOf(req) : undefined;
}

// A throw from seed is handed to next(err) here, inside the request's run, so
// error handlers see the request's values (had it propagated, Express's router
// would call next(err) after the run has ended, outside the request).
function proceed(
  seed: ((req: Request) => void) | undefined,
  req: Request,
  next: NextFunction,
): void {
  if (seed !== undefined) {
    try {
      seed(req);
    } catch (error) {
      next(error);
      return;
    }
  }
  next();
}
