import { ContextVar } from "../core/context-var.ts";
import { type InspectFn, innerOptions, inspectCustom, show } from "../core/inspect.ts";
import { argumentError } from "../errors.ts";
import { applyToUndefined } from "./apply.ts";

/** Options of a Variable, as the proposal's constructor reads them. */
export interface VariableOptions<T> {
  /** Shown in inspection; converted to a string (default ""). */
  name?: unknown;
  /** What `get()` returns outside any `run` of this variable (default undefined). */
  defaultValue?: T | undefined;
}

/**
 * The TC39 proposal's `AsyncContext.Variable`, kept in this package's
 * Contexts: a ContextVar whose value only `run` changes. It is visible to
 * `copyContext()`, `bind`, tasks and every integration, as every ContextVar is,
 * and never crosses to a worker thread (the proposal has no threads, and its
 * variables are usually unnamed, so they cannot be matched by name there).
 *
 * @example
 * const user = new Variable<string>({ name: "user", defaultValue: "anonymous" });
 * await user.run("alice", async () => {
 *   await work();
 *   user.get(); // "alice"
 * });
 * user.get(); // "anonymous"
 */
export class Variable<T> {
  readonly #var: ContextVar<T | undefined>;
  readonly #default: T | undefined;

  /**
   * @param options `name` and `defaultValue`, read as the proposal's
   *   constructor reads them: a `name` present (even undefined) is converted
   *   to a string.
   * @throws {TypeError} if the name is a Symbol, as the proposal's ToString does.
   */
  constructor(options?: VariableOptions<T>) {
    let name = "";
    let defaultValue: T | undefined;
    if ((typeof options === "object" && options !== null) || typeof options === "function") {
      // Template literal: ToString, which throws on a Symbol where String() would not.
      if ("name" in options) name = `${options.name as string}`;
      defaultValue = options.defaultValue;
    }
    this.#default = defaultValue;
    this.#var = new ContextVar<T | undefined>(name, {
      default: this.#default,
      transfer: false,
    });
  }

  /** The name given to the constructor, or "". */
  get name(): string {
    return this.#var.name;
  }

  /** The value given to the innermost enclosing `run` of this variable, else the default. */
  get(): T | undefined {
    return this.#var.get();
  }

  /**
   * Calls `fn(...args)` with this variable set to `value` for fn and
   * everything it starts; the caller's value is unchanged.
   * @throws {TypeError} if fn is not a function.
   */
  run<A extends unknown[], R>(value: T, fn: (this: void, ...args: A) => R, ...args: A): R {
    if (typeof fn !== "function") {
      const name = this.#var.name;
      const where =
        name === ""
          ? "the run() of an AsyncContext.Variable with no name"
          : `AsyncContext.Variable(${JSON.stringify(name)}).run()`;
      throw argumentError("fn", "a function", fn, where);
    }
    return this.#var.run(value, applyToUndefined, fn, args) as R;
  }

  get [Symbol.toStringTag](): string {
    return "AsyncContext.Variable";
  }

  [inspectCustom](depth: number, options: object, inspect?: InspectFn): string {
    if (depth < 0) return `[AsyncContext.Variable ${JSON.stringify(this.name)}]`;
    const inner = innerOptions(depth, options);
    const fallback =
      this.#default === undefined ? "" : ` defaultValue=${show(this.#default, inspect, inner)}`;
    return `<AsyncContext.Variable name=${JSON.stringify(this.name)}${fallback}>`;
  }
}
