import { argumentError, assertFunction } from "../errors.ts";
import { type Context, isContext } from "./context.ts";
import { copyContext } from "./current.ts";
import { inCopies, keepAsync } from "./in-copies.ts";
import { functionName } from "./inspect.ts";

/** Throws unless value is a Context (or undefined, when optional). Internal. */
export function assertContext(name: string, value: unknown): asserts value is Context | undefined {
  if (value !== undefined && !isContext(value)) {
    throw argumentError(name, "a Context", value);
  }
}

/**
 * Wraps fn so that each call runs it in a fresh copy of `context` (default:
 * the Context current now), whoever calls it and from wherever: the
 * JavaScript form of a callback that remembers where it was made. `this`
 * and the arguments pass through. The wrapper of an async function is an
 * async function too, for libraries that tell one by its tag (async.js).
 *
 * @example
 * pool.acquire(bind((conn) => { requestId.get(); })); // the caller's id, not the pool's
 * @throws {TypeError} if fn is not a function or context is not a Context.
 */
export function bind<F extends (...args: never[]) => unknown>(fn: F, context?: Context): F {
  assertFunction("fn", fn);
  assertContext("context", context);
  // As long as fn and named `bound <name>`, as Function#bind makes it, which
  // reads an own length first, then the name (a getter or Proxy sees the order).
  const length = Object.hasOwn(fn, "length") ? fn.length : 0;
  const wrapper = inCopies(`bound ${functionName(fn)}`, length, fn, context ?? copyContext());
  return keepAsync(wrapper, fn) as F;
}
