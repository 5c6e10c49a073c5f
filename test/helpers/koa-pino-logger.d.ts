/**
 * The part of koa-pino-logger 5 the tests use: it takes pino-http's options
 * and sets `ctx.log`, the request's pino-http logger (untyped here: Koa's
 * Context is left as it is). It ships no types.
 */
declare module "koa-pino-logger" {
  import type { Middleware } from "koa";
  import type { Options } from "pino-http";

  export default function koaPinoLogger(options?: Options): Middleware;
}
