/**
 * Calls fn with `this` undefined, as the proposal's `run` methods do
 * (`Call(func, undefined, args)`); AsyncLocalStorage#run passes null.
 */
export function applyToUndefined(fn: Function, args: unknown[]): unknown {
  return Reflect.apply(fn, undefined, args);
}
