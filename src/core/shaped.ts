/**
 * A wrapper function with a given name and `length`, built by syntax: a
 * method whose key is computed, declaring as many parameters as the wrapped
 * function does. Object.defineProperty on a function's name or length takes
 * V8's slow path on Node 20 (about 0.8 µs, twice the rest of `bind`), and
 * the length matters to callers that read it: createTask passes the signal
 * only to a function that declares a parameter, Express tells error
 * handlers by their four. Past four parameters the length is defined.
 */
// biome-ignore-all lint/complexity/noArguments: the arguments object passes the call's own argument count through
type Call = (self: unknown, args: ArrayLike<unknown>) => unknown;

export function shaped(name: string, length: unknown, call: Call): Function {
  const n = typeof length === "number" && length > 0 ? Math.trunc(length) : 0;
  switch (n) {
    case 0:
      return {
        [name](this: unknown): unknown {
          return call(this, arguments);
        },
      }[name] as Function;
    case 1:
      return {
        [name](this: unknown, _1: unknown): unknown {
          return call(this, arguments);
        },
      }[name] as Function;
    case 2:
      return {
        [name](this: unknown, _1: unknown, _2: unknown): unknown {
          return call(this, arguments);
        },
      }[name] as Function;
    case 3:
      return {
        [name](this: unknown, _1: unknown, _2: unknown, _3: unknown): unknown {
          return call(this, arguments);
        },
      }[name] as Function;
    case 4:
      return {
        [name](this: unknown, _1: unknown, _2: unknown, _3: unknown, _4: unknown): unknown {
          return call(this, arguments);
        },
      }[name] as Function;
    default: {
      const wrapper = shaped(name, 0, call);
      Object.defineProperty(wrapper, "length", { value: n, configurable: true });
      return wrapper;
    }
  }
}
