import { AsyncLocalStorage } from "node:async_hooks";
import type { Context } from "../core/context.ts";
import type { Carrier } from "./carrier.ts";

/**
 * The carrier on Node, Bun, Deno and Cloudflare Workers: one
 * AsyncLocalStorage, used through `run` and `getStore` only. Its methods
 * already have the Carrier's shape, so the instance is returned as it is.
 * `#carrier` resolves here everywhere but under the `browser` condition; the
 * `workerd` condition comes before it because wrangler bundles a Worker with
 * `workerd`, `worker` and `browser`, and workerd has AsyncLocalStorage under
 * the `nodejs_compat` or `nodejs_als` flag (see select.ts).
 */
export function createPlatformCarrier(): Carrier {
  return new AsyncLocalStorage<Context>();
}
