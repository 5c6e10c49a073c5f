import type { Context } from "../core/context.ts";
import { copyContext } from "../core/current.ts";
import { assertFunction } from "../errors.ts";

/**
 * The TC39 proposal's `AsyncContext.Snapshot`: the values of every
 * Variable (and every ContextVar) at the moment it is constructed, to run
 * code in later. Each `run` gets a fresh copy of those values, so a
 * ContextVar set inside one run is not seen by the next.
 *
 * @example
 * const snapshot = new Snapshot();
 * button.addEventListener("click", () => snapshot.run(() => log(user.get())));
 */
export class Snapshot {
  readonly #context: Context = copyContext();

  /**
   * Calls `fn(...args)` with the captured values current, for fn and
   * everything it starts.
   * @throws {TypeError} if fn is not a function.
   */
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    assertFunction("fn", fn);
    return this.#context.copy().run(fn, ...args);
  }

  /**
   * Wraps fn so that every call runs it in the values current now; `this`
   * and the arguments pass through. The result is named `wrapped <name>`
   * and keeps fn's length, as the proposal's `wrap` does.
   * @throws {TypeError} if fn is not a function.
   */
  static wrap<A extends unknown[], R, This = unknown>(
    fn: (this: This, ...args: A) => R,
  ): (this: This, ...args: A) => R {
    assertFunction("fn", fn);
    const snapshot = new Snapshot();
    const wrapped = function (this: This, ...args: A): R {
      return snapshot.run(() => Reflect.apply(fn, this, args));
    };
    Object.defineProperties(wrapped, {
      name: { value: `wrapped ${typeof fn.name === "string" ? fn.name : ""}`, configurable: true },
      length: { value: fn.length, configurable: true },
    });
    return wrapped;
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Snapshot";
  }
}
