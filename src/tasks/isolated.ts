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
 * @throws {TypeError} if fn is not a function, or if applied as a legacy
 *   (experimentalDecorators) decorator, which would not wrap the method.
 */
export function isolated<F extends (...args: never[]) => unknown>(
  fn: F,
  _decorator?: ClassMethodDecoratorContext<ThisParameterType<F>>,
): F {
  // A legacy decorator is called with (prototype or class, key, descriptor):
  // the prototype fails the check below with no word of why, and a class
  // passes it, and its wrapper is then taken as a descriptor and dropped.
  if (typeof _decorator === "string" || typeof _decorator === "symbol") {
    throw legacyDecoratorError(fn, _decorator);
  }
  assertFunction("fn", fn);
  // fn's name and length: createTask reads the length to pass the signal,
  // Express to tell an error handler. A name that is not a string is "", as
  // for bind: used as the method's computed key, a Symbol would make it
  // "[description]" and an object would have its toString called.
  return inCopies(functionName(fn), fn.length, fn, undefined) as F;
}

function legacyDecoratorError(target: unknown, key: string | symbol): TypeError {
  const isClass = typeof target === "function";
  const owner = isClass ? target : (target as { constructor?: unknown } | null)?.constructor;
  const className = (typeof owner === "function" && functionName(owner)) || "TheClass";
  const member = typeof key === "string" ? `.${key}` : `[${String(key)}]`;
  const method = `${className}${isClass ? "" : ".prototype"}${member}`;
  return new TypeError(
    `isolated is a standard decorator and was applied as a legacy one (experimentalDecorators) to \`${className}${member}\`: compile without experimentalDecorators, or wrap the method after the class: ${method} = isolated(${method})`,
  );
}
