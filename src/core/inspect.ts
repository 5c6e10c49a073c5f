/**
 * Node's `util.inspect.custom` symbol, taken from the global registry so the
 * core does not import `node:util` (Bun and Deno honour the same symbol;
 * browsers simply ignore it).
 */
export const inspectCustom: unique symbol = Symbol.for("nodejs.util.inspect.custom") as never;

/** The `inspect` function Node passes as the third argument of a custom inspector. */
export type InspectFn = (value: unknown, options?: object) => string;

/** Shows a value in an inspector, with Node's inspect when it is given, else String(). */
export function show(value: unknown, inspect: InspectFn | undefined, options?: object): string {
  if (inspect) return inspect(value, options);
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
