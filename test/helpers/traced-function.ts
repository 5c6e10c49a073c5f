/**
 * A function behind a Proxy that records, in `seen`, each own-property
 * lookup and each property read made on it: for tests that pin the order in
 * which a wrapper reads `length` and `name` (Function#bind,
 * CopyNameAndLength).
 */
export function tracedFunction<F extends (...args: never[]) => unknown>(seen: string[], fn: F): F {
  return new Proxy(fn, {
    getOwnPropertyDescriptor(target, key) {
      seen.push(`has own ${String(key)}`);
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    get(target, key, receiver) {
      seen.push(`get ${String(key)}`);
      return Reflect.get(target, key, receiver);
    },
  });
}
