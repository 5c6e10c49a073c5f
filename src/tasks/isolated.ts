import { inCopies } from "../core/in-copies.ts";
import { functionName } from "../core/inspect.ts";
import { assertFunction } from "../errors.ts";

/**
 * Wraps fn so that each call runs in a fresh copy of the caller's Context:
 * sets made inside (before and after its awaits) never reach the caller or a
 * sibling call. `this` and the arguments pass through. Also a method
 * decorator, in the standard form (TypeScript 5+, not under
 * `experimentalDecorators`): `@isolated async handle() {…}`. Of a generator
 * function, only the call that creates the generator runs in the copy: its
 * body runs where `next()` is called, so iterate inside the isolated
 * function.
 *
 * @example
 * const worker = isolated(async (name: string) => { user.set(name); await sleep(10); return user.get(); });
 * await Promise.all([worker("alice"), worker("bob")]); // ["alice", "bob"]
 * @throws {TypeError} if fn is not a function.
 */
export function isolated<F extends (...args: never[]) => unknown>(
  fn: F,
  _decorator?: ClassMethodDecoratorContext<ThisParameterType<F>>,
): F {
  assertFunction("fn", fn);
  // fn's name and length: createTask reads the length to pass the signal,
  // Express to tell an error handler. A name that is not a string is "", as
  // for bind: used as the method's computed key, a Symbol would make it
  // "[description]" and an object would have its toString called.
  return inCopies(functionName(fn), fn.length, fn, undefined) as F;
}
