/**
 * `contextvars/async-context`: the TC39 AsyncContext proposal's API
 * (https://github.com/tc39/proposal-async-context) over this package's
 * Contexts, so code written for the proposal runs today and moves to a
 * native `globalThis.AsyncContext` by changing one import.
 *
 * @example
 * import { AsyncContext } from "contextvars/async-context";
 * const traceId = new AsyncContext.Variable<string>({ name: "traceId" });
 */
import { Snapshot } from "./snapshot.ts";
import { Variable } from "./variable.ts";

export { Snapshot } from "./snapshot.ts";
export { Variable, type VariableOptions } from "./variable.ts";

type Namespace = {
  readonly Variable: typeof Variable;
  readonly Snapshot: typeof Snapshot;
  readonly [Symbol.toStringTag]: "AsyncContext";
};

// The classes as types too, as the proposal's global namespace gives them:
// `let v: AsyncContext.Variable<string>`. Types only: nothing is emitted.
export declare namespace AsyncContext {
  type Variable<T> = import("./variable.ts").Variable<T>;
  type Snapshot = import("./snapshot.ts").Snapshot;
}

/** The proposal's namespace: `AsyncContext.Variable`, `AsyncContext.Snapshot`. */
export const AsyncContext: Namespace = Object.freeze(
  Object.defineProperty({ Variable, Snapshot }, Symbol.toStringTag, {
    value: "AsyncContext",
    configurable: true,
  }) as Namespace,
);
