/**
 * The one wrapper behind `bind`, `isolated` and `AsyncContext.Snapshot.wrap`:
 * each call runs fn in a fresh copy of a Context, `this` and the arguments
 * passed through. It is built by syntax, a method whose key is computed and
 * which declares as many parameters as it is asked for: Object.defineProperty
 * on a function's name or length takes V8's slow path on Node 20 (about
 * 0.8 µs, twice the rest of `bind`), and the length matters to callers that
 * read it: createTask passes the signal only to a function that declares a
 * parameter, Express tells error handlers by their four. Past four
 * parameters the length is defined. Being a method, it is no constructor.
 */
// biome-ignore-all lint/complexity/noArguments: the arguments object passes the call's own argument count through
import { carrier } from "../carrier/select.ts";
import type { Context } from "./context.ts";
import { copyContext } from "./current.ts";

// A module-local alias: an imported binding is read through the exporting
// module's cell, with a check that it has been initialised, on every call.
const slot = carrier;

function applyIn(fn: Function, self: unknown, args: ArrayLike<unknown>): unknown {
  return Reflect.apply(fn, self, args);
}

// A fresh copy of `context`, or of the caller's Context when there is none.
function copyOf(context: Context | undefined): Context {
  return context === undefined ? copyContext() : context.copy();
}

/**
 * A function named `name`, of length `length` (a whole number, 0 if it is
 * not a positive number), whose every call runs fn in a fresh copy of
 * `context` (default: of the caller's current Context). Internal.
 */
export function inCopies(
  name: string,
  length: unknown,
  fn: Function,
  context: Context | undefined,
): Function {
  const n = typeof length === "number" && length > 0 ? Math.trunc(length) : 0;
  switch (n) {
    case 0:
      return {
        [name](this: unknown): unknown {
          return slot.run(copyOf(context), applyIn, fn, this, arguments);
        },
      }[name] as Function;
    case 1:
      return {
        [name](this: unknown, _1: unknown): unknown {
          return slot.run(copyOf(context), applyIn, fn, this, arguments);
        },
      }[name] as Function;
    case 2:
      return {
        [name](this: unknown, _1: unknown, _2: unknown): unknown {
          return slot.run(copyOf(context), applyIn, fn, this, arguments);
        },
      }[name] as Function;
    case 3:
      return {
        [name](this: unknown, _1: unknown, _2: unknown, _3: unknown): unknown {
          return slot.run(copyOf(context), applyIn, fn, this, arguments);
        },
      }[name] as Function;
    case 4:
      return {
        [name](this: unknown, _1: unknown, _2: unknown, _3: unknown, _4: unknown): unknown {
          return slot.run(copyOf(context), applyIn, fn, this, arguments);
        },
      }[name] as Function;
    default: {
      const wrapper = inCopies(name, 0, fn, context);
      Object.defineProperty(wrapper, "length", { value: n, configurable: true });
      return wrapper;
    }
  }
}

const AsyncFunctionPrototype: object = Object.getPrototypeOf(async () => {});

/**
 * The wrapper of an async function made one in kind: its prototype is
 * AsyncFunction.prototype, so `Symbol.toStringTag`, `instanceof` and
 * `constructor` say so. async.js tells an async function by its tag and
 * calls any other with a callback it then waits on for ever, so
 * `async.queue(bind(worker))` would never run a second job. Any other
 * function's wrapper is returned as it is. Internal.
 */
export function keepAsync(wrapper: Function, fn: Function): Function {
  if (Object.getPrototypeOf(fn) === AsyncFunctionPrototype) {
    Object.setPrototypeOf(wrapper, AsyncFunctionPrototype);
  }
  return wrapper;
}
