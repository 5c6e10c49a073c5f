/**
 * Gates that hold concurrent callers until enough have arrived, so a test
 * sets the interleaving it asserts on instead of waiting for timers.
 */

/** A promise and its resolve. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** `arrive()` resolves, for every caller, once `count` callers have arrived. */
export function latch(count: number): () => Promise<void> {
  let arrived = 0;
  const all = signal();
  return () => {
    if (++arrived === count) all.resolve();
    return all.promise;
  };
}

/** Every `arrive(key)` resolves once `count` calls have arrived with that key. */
export function barriers(count: number): { arrive(key: string): Promise<void> } {
  const gates = new Map<string, () => Promise<void>>();
  return {
    arrive(key) {
      let gate = gates.get(key);
      if (gate === undefined) {
        gate = latch(count);
        gates.set(key, gate);
      }
      return gate();
    },
  };
}
