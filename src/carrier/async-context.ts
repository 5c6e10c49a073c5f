import type { Context } from "../core/context.ts";
import type { Carrier } from "./carrier.ts";

/**
 * What the carrier needs of the TC39 proposal's `AsyncContext`
 * (https://github.com/tc39/proposal-async-context): a Variable class with
 * `get()` and `run(value, fn, ...args)`. The same two verbs as
 * AsyncLocalStorage's `getStore` and `run`.
 */
export interface AsyncContextVariable<T> {
  readonly name: string;
  get(): T | undefined;
  run<A extends unknown[], R>(value: T, fn: (...args: A) => R, ...args: A): R;
}

/** The proposal's `AsyncContext` namespace, as far as this package uses it. */
export interface AsyncContextNamespace {
  readonly Variable: new <T>(options?: {
    name?: string;
    defaultValue?: T;
  }) => AsyncContextVariable<T>;
}

/** `globalThis.AsyncContext` if the engine (or a polyfill loaded first) provides one. */
export function globalAsyncContext(): AsyncContextNamespace | undefined {
  const found = (globalThis as { AsyncContext?: Partial<AsyncContextNamespace> }).AsyncContext;
  return typeof found?.Variable === "function" ? (found as AsyncContextNamespace) : undefined;
}

/**
 * The carrier where the engine has `AsyncContext`: one `AsyncContext.Variable`
 * holding the current Context. A subclass, so `run` is the Variable's own
 * method with no wrapper between the hot path and the engine, and a
 * `Snapshot` taken by any other code captures our Context with everything
 * else.
 */
export function createAsyncContextCarrier(namespace: AsyncContextNamespace): Carrier {
  class AsyncContextCarrier extends namespace.Variable<Context> implements Carrier {
    getStore(): Context | undefined {
      return this.get();
    }
  }
  return new AsyncContextCarrier({ name: "contextvars" });
}
