/**
 * A test double of the TC39 proposal's `AsyncContext` namespace
 * (https://github.com/tc39/proposal-async-context), small enough to read in
 * one go: the proposal's model, one immutable mapping `Variable -> value`
 * swapped in and out, carried across async work by one AsyncLocalStorage.
 *
 * No polyfill from npm is worth using (see TOOLCHAIN.md), and the package
 * only needs `Variable#get` and `Variable#run`, so this double is what the
 * AsyncContext carrier is tested against:
 * `test/runtimes/install-async-context-double.ts` puts it on `globalThis`
 * before the package loads, and the core and tasks files run again on top.
 *
 * What it models of the spec: `run` swaps in a new mapping for fn (called
 * with `this` undefined) and restores the previous one when fn returns or
 * throws; a Snapshot captures the mapping at construction; `wrap` returns a
 * non-constructor named `wrapped <name>` with CopyNameAndLength's length;
 * the constructor reads `name` with HasProperty and ToString.
 */
import { AsyncLocalStorage } from "node:async_hooks";

type Mapping = ReadonlyMap<Variable<unknown>, unknown>;

const EMPTY: Mapping = new Map();
const storage = new AsyncLocalStorage<Mapping>();

function current(): Mapping {
  return storage.getStore() ?? EMPTY;
}

function assertCallable(fn: unknown): asserts fn is Function {
  if (typeof fn !== "function") throw new TypeError(`${String(fn)} is not a function`);
}

export class Variable<T> {
  readonly #name: string;
  readonly #defaultValue: T | undefined;

  // The spec's steps: HasProperty(options, "name"), then ToString (a template
  // literal: it throws on a Symbol); defaultValue read only from an object.
  constructor(options?: { name?: unknown; defaultValue?: T }) {
    const object =
      (typeof options === "object" && options !== null) || typeof options === "function";
    this.#name = object && "name" in options ? `${options.name as string}` : "";
    this.#defaultValue = object ? options.defaultValue : undefined;
  }

  get name(): string {
    return this.#name;
  }

  get(): T | undefined {
    const mapping = current();
    return mapping.has(this) ? (mapping.get(this) as T) : this.#defaultValue;
  }

  run<A extends unknown[], R>(value: T, fn: (...args: A) => R, ...args: A): R {
    assertCallable(fn);
    const next = new Map(current());
    next.set(this, value);
    return storage.run(next, () => Reflect.apply(fn, undefined, args)); // Call(fn, undefined, args)
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Variable";
  }
}

export class Snapshot {
  readonly #mapping: Mapping = current();

  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    assertCallable(fn);
    return storage.run(this.#mapping, () => Reflect.apply(fn, undefined, args));
  }

  static wrap<F extends (...args: never[]) => unknown>(fn: F): F {
    assertCallable(fn);
    const snapshot = new Snapshot();
    // A method has no [[Construct]], as the spec's built-in function has none.
    const { wrapped } = {
      wrapped(this: unknown, ...args: unknown[]): unknown {
        return snapshot.run(() => Reflect.apply(fn, this, args));
      },
    };
    // CopyNameAndLength.
    let length = 0;
    if (Object.hasOwn(fn, "length")) {
      const own: unknown = fn.length;
      if (typeof own === "number") {
        length = own === Number.POSITIVE_INFINITY ? own : Math.max(Math.trunc(own) || 0, 0);
      }
    }
    const name: unknown = fn.name;
    Object.defineProperties(wrapped, {
      name: { value: `wrapped ${typeof name === "string" ? name : ""}`, configurable: true },
      length: { value: length, configurable: true },
    });
    return wrapped as F;
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Snapshot";
  }
}

/** The double, shaped as the proposal's global namespace. */
export const AsyncContextDouble: {
  readonly Variable: typeof Variable;
  readonly Snapshot: typeof Snapshot;
  readonly [Symbol.toStringTag]: "AsyncContext";
} = Object.freeze(
  Object.defineProperty({ Variable, Snapshot }, Symbol.toStringTag, {
    value: "AsyncContext",
    configurable: true,
  }) as {
    Variable: typeof Variable;
    Snapshot: typeof Snapshot;
    [Symbol.toStringTag]: "AsyncContext";
  },
);
