import type { Context } from "../core/context.ts";
import { copyContext } from "../core/current.ts";
import { assertFunction } from "../errors.ts";
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
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    assertFunction("fn", fn);
    return this.#context.copy().run(applyToUndefined, fn, args) as R;
  }

  /**
   * Wraps fn so that every call runs it in the values current now; `this`
   * and the arguments pass through. As the proposal's `wrap`: the result is
   * named `wrapped <name>`, takes fn's length (CopyNameAndLength: a whole
   * number, 0 when fn's is not a number) and is not a constructor.
   * @throws {TypeError} if fn is not a function.
   */
  static wrap<A extends unknown[], R, This = unknown>(
    fn: (this: This, ...args: A) => R,
  ): (this: This, ...args: A) => R {
    assertFunction("fn", fn);
    const snapshot = new Snapshot();
    // A method: `this` passes through, and `new` throws (no [[Construct]]).
    const { wrapped } = {
      wrapped(this: This, ...args: A): R {
        return snapshot.run(() => Reflect.apply(fn, this, args));
      },
    };
    const length = Object.hasOwn(fn, "length") ? lengthOf(fn.length) : 0;
    Object.defineProperties(wrapped, {
      name: { value: `wrapped ${typeof fn.name === "string" ? fn.name : ""}`, configurable: true },
      length: { value: length, configurable: true },
    });
    return wrapped;
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Snapshot";
  }
}

// CopyNameAndLength's length: +Infinity kept, -Infinity and NaN 0, else the
// integer part, at least 0; anything but a number is 0.
function lengthOf(length: unknown): number {
  if (typeof length !== "number" || Number.isNaN(length)) return 0;
  if (length === Number.POSITIVE_INFINITY) return length;
  return Math.max(Math.trunc(length), 0);
}
