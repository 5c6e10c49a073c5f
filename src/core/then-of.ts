/** Whether x has a callable `then` (read once, as Promise.resolve reads it). Internal. */
export function thenOf(x: unknown): Function | undefined {
  if (x === null || (typeof x !== "object" && typeof x !== "function")) return undefined;
  const then = (x as { then?: unknown }).then;
  return typeof then === "function" ? then : undefined;
}

/**
 * Any value but a promise or other thenable: the result type of a callback
 * that must be synchronous (a web integration's `seed`, a log field), so an
 * `async` one does not compile. Internal.
 */
export type Synchronous =
  // biome-ignore lint/suspicious/noConfusingVoidType: what a function with a block body returns
  | void
  | undefined
  | null
  | string
  | number
  | bigint
  | boolean
  | symbol
  | (object & { then?: never });
