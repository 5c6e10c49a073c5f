import { createPlatformCarrier } from "#carrier";
import { createAsyncContextCarrier, globalAsyncContext } from "./async-context.ts";
import type { Carrier } from "./carrier.ts";

/**
 * The carrier, chosen once at import so the hot path never asks which one is
 * in use (as Node picks its AsyncLocalStorage backend at load):
 *
 * 1. `globalThis.AsyncContext`, when the engine has it (or a polyfill was
 *    loaded before this package): the standard's own Variable.
 * 2. Otherwise the platform's, through the package's `#carrier` import
 *    (package.json `imports`): AsyncLocalStorage on Node, Bun and Deno,
 *    and under the `workerd` condition (Cloudflare Workers); under a
 *    bundler's `browser` condition otherwise the synchronous carrier, so a
 *    browser bundle never reaches `node:async_hooks`.
 */
const asyncContext = globalAsyncContext();
export const carrier: Carrier =
  asyncContext === undefined ? createPlatformCarrier() : createAsyncContextCarrier(asyncContext);
