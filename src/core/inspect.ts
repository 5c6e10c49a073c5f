/**
 * Node's `util.inspect.custom` symbol, taken from the global registry so the
 * core does not import `node:util` (Bun and Deno honour the same symbol;
 * browsers simply ignore it).
 */
export const inspectCustom: unique symbol = Symbol.for("nodejs.util.inspect.custom") as never;

/** The `inspect` function Node passes as the third argument of a custom inspector. */
export type InspectFn = (value: unknown, options?: object) => string;

// Objects being shown by an inspector further up the stack. Each nested
// inspect() call starts with an empty list of seen objects, so Node cannot
// see a cycle that passes through a custom inspector (a var whose default
// holds the var, a Context holding itself): as CPython's repr does with
// Py_ReprEnter, such a value is shown as a marker instead.
const showing = new Set<object>();

/**
 * The options to show a value held by an object being inspected at `depth`
 * levels left: one level less, as Node's docs for util.inspect.custom do it,
 * so a Context nested in a log object stops where a Map would.
 */
export function innerOptions(depth: number | undefined, options: object): object {
  return typeof depth === "number" ? { ...options, depth: depth - 1 } : options;
}

/** Runs body with `value` marked as being shown: a reference back to it shows as [Circular]. */
export function whileShowing<R>(value: object, body: () => R): R {
  if (showing.has(value)) return body();
  showing.add(value);
  try {
    return body();
  } finally {
    showing.delete(value);
  }
}

/**
 * fn's name if it is a string, else "" (as Function#bind and SetFunctionName
 * treat a Symbol, or a class's static name() method). Read once. Internal.
 */
export function functionName(fn: Function): string {
  const name: unknown = fn.name;
  return typeof name === "string" ? name : "";
}

/** Shows a value in an inspector, with Node's inspect when it is given, else String(). */
export function show(value: unknown, inspect: InspectFn | undefined, options?: object): string {
  if (!inspect) return typeof value === "string" ? JSON.stringify(value) : String(value);
  if ((typeof value !== "object" && typeof value !== "function") || value === null) {
    return inspect(value, options);
  }
  if (showing.has(value)) return "[Circular]";
  showing.add(value);
  try {
    return inspect(value, options);
  } finally {
    showing.delete(value);
  }
}
