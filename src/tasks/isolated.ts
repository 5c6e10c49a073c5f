import { carrier } from "../carrier/select.ts";
import { copyContext } from "../core/current.ts";
import { assertFunction } from "../errors.ts";

function applyIn(fn: Function, self: unknown, args: unknown[]): unknown {
  return Reflect.apply(fn, self, args);
}

/**
 * Wraps fn so that each call runs in a fresh copy of the caller's Context:
 * sets made inside (before and after its awaits) never reach the caller or a
 * sibling call. `this` and the arguments pass through. Also a TypeScript
 * method decorator: `@isolated async handle() {…}`.
 *
 * @example
 * const worker = isolated(async (name: string) => { user.set(name); await sleep(10); return user.get(); });
 * await Promise.all([worker("alice"), worker("bob")]); // ["alice", "bob"]
 * @throws {TypeError} if fn is not a function.
 */
export function isolated<F extends (...args: never[]) => unknown>(
  fn: F,
  _decorator?: ClassMethodDecoratorContext,
): F {
  assertFunction("fn", fn);
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    return carrier.run(copyContext(), applyIn, fn, this, args);
  };
  Object.defineProperty(wrapper, "name", { value: fn.name, configurable: true });
  return wrapper as unknown as F;
}
