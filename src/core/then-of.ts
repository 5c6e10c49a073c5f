/** Whether x has a callable `then` (read once, as Promise.resolve reads it). Internal. */
export function thenOf(x: unknown): Function | undefined {
  if (x === null || (typeof x !== "object" && typeof x !== "function")) return undefined;
  const then = (x as { then?: unknown }).then;
  return typeof then === "function" ? then : undefined;
}
