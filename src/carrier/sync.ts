import type { Context } from "../core/context.ts";
import type { Carrier } from "./carrier.ts";

/**
 * The carrier where the platform has no way to follow asynchronous work (a
 * browser without `AsyncContext`): `#carrier` resolves here under the
 * `browser` condition, unless `workerd` is also set (a Cloudflare Worker,
 * which has AsyncLocalStorage).
 *
 * It keeps the current Context in a field for the synchronous extent of
 * `run` only, as CPython does for `ctx.run` outside asyncio: the Context is
 * current inside fn and in everything fn calls synchronously, including the
 * synchronous start of an async function or a task; the code after an
 * `await`, a `.then` callback or a timer runs in whatever Context is current
 * when the engine calls it, which is the root Context. `bind(fn)` and
 * `copyContext().run(...)` carry a Context across such a hop by hand.
 */
class SyncCarrier implements Carrier {
  #current: Context | undefined = undefined;

  getStore(): Context | undefined {
    return this.#current;
  }

  run<A extends unknown[], R>(context: Context, fn: (...args: A) => R, ...args: A): R {
    const previous = this.#current;
    this.#current = context;
    try {
      return fn(...args);
    } finally {
      this.#current = previous;
    }
  }
}

/** A carrier that propagates synchronously only. */
export function createPlatformCarrier(): Carrier {
  return new SyncCarrier();
}
