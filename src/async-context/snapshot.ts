import type { Context } from "../core/context.ts";
import { copyContext } from "../core/current.ts";
import { inCopies } from "../core/in-copies.ts";
import { functionName } from "../core/inspect.ts";
import { argumentError } from "../errors.ts";
import { applyToUndefined } from "./apply.ts";

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
  run<A extends unknown[], R>(fn: (this: void, ...args: A) => R, ...args: A): R {
    if (typeof fn !== "function") {
      throw argumentError("fn", "a function", fn, "AsyncContext.Snapshot#run()");
    }
    return this.#context.copy().run(applyToUndefined, fn, args) as R;
  }

  /**
   * Wraps fn so that every call runs it in the values current now; `this`
   * and the arguments pass through, and the result has fn's type (its
   * overloads and type parameters too, as `bind`'s has). As the proposal's
   * `wrap`: the result is named `wrapped <name>`, takes fn's length
   * (CopyNameAndLength: a whole number, 0 when fn's is not a number) and is
   * not a constructor.
   * @throws {TypeError} if fn is not a function.
   */
  static wrap<F extends (...args: never[]) => unknown>(fn: F): F {
    if (typeof fn !== "function") {
      throw argumentError("fn", "a function", fn, "AsyncContext.Snapshot.wrap()");
    }
    // The values of now, as a Snapshot would take them; each call gets a copy.
    // Length before name, as CopyNameAndLength reads them (a getter or Proxy sees the order).
    const length = Object.hasOwn(fn, "length") ? fn.length : 0;
    const name = `wrapped ${functionName(fn)}`;
    return inCopies(name, length, fn, copyContext()) as F;
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Snapshot";
  }
}
