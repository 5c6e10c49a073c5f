import { inCopies, keepAsync } from "../core/in-copies.ts";
import { functionName } from "../core/inspect.ts";
import { assertFunction } from "../errors.ts";

/**
 * Wraps fn so that each call runs in a fresh copy of the caller's Context:
 * sets made inside (before and after its awaits) never reach the caller or a
 * sibling call. `this` and the arguments pass through. Also a method
 * decorator, in the standard form (TypeScript 5+) and in the legacy one
 * (`experimentalDecorators`, as NestJS and TypeORM projects compile):
 * `@isolated async handle() {…}`; in the legacy form the reflect-metadata
 * that decorators below it recorded on the method (NestJS's `@Get()`) is
 * copied to the wrapper. Of a generator function, only the call
 * that creates the generator runs in the copy: its body runs where `next()`
 * is called, so iterate inside the isolated function.
 *
 * @example
 * const worker = isolated(async (name: string) => { user.set(name); await sleep(10); return user.get(); });
 * await Promise.all([worker("alice"), worker("bob")]); // ["alice", "bob"]
 * @throws {TypeError} if fn is not a function, or if applied as a decorator
 *   to something other than a method (a class, a field, an accessor; a
 *   getter or setter in the legacy form), which it would not wrap.
 */
export function isolated<F extends (...args: never[]) => unknown>(
  target: object,
  key: string | symbol,
  descriptor: TypedPropertyDescriptor<F>,
): TypedPropertyDescriptor<F>;
export function isolated<F extends (...args: never[]) => unknown>(
  fn: F,
  decorator?: ClassMethodDecoratorContext<ThisParameterType<F>>,
): F;
export function isolated(
  fn: unknown,
  decorator?: unknown,
  descriptor?: PropertyDescriptor,
): unknown {
  // A legacy decorator is called with (prototype or class, key, descriptor)
  // and its result replaces the descriptor: the wrapper goes in its value.
  if (typeof decorator === "string" || typeof decorator === "symbol") {
    return legacyMethod(fn, decorator, descriptor);
  }
  if (typeof fn !== "function" || (typeof decorator === "object" && decorator !== null)) {
    // A standard decorator's context, from JavaScript (TypeScript rejects
    // these): anything but a method is refused, as the legacy form refuses
    // it. A class would become a wrapper that cannot be constructed, a
    // getter be wrapped, and a field be told only that `fn` is undefined.
    const kind: unknown = (decorator as { kind?: unknown } | null | undefined)?.kind;
    if (typeof kind === "string" && kind !== "method") {
      throw notAMemberError(kind, (decorator as { name?: unknown }).name);
    }
    assertFunction("fn", fn);
  }
  return wrap(fn);
}

// fn's name and length: createTask reads the length to pass the signal,
// Express to tell an error handler; and its kind, async.js telling an async
// function by its tag. A name that is not a string is "", as
// for bind: used as the method's computed key, a Symbol would make it
// "[description]" and an object would have its toString called.
function wrap(fn: Function): Function {
  return keepAsync(inCopies(functionName(fn), fn.length, fn, undefined), fn);
}

function legacyMethod(
  target: unknown,
  key: string | symbol,
  descriptor: PropertyDescriptor | undefined,
): PropertyDescriptor {
  const value: unknown = descriptor?.value;
  if (typeof value !== "function") {
    throw notAMethodError(target, key, descriptor);
  }
  const wrapper = wrap(value);
  copyMetadata(value, wrapper);
  return { ...descriptor, value: wrapper };
}

type MetadataApi = {
  getOwnMetadataKeys?: (target: object) => unknown[];
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

// Decorators apply bottom up, and NestJS's (@Get(), @UseGuards(),
// @SetMetadata()) record what they declare with reflect-metadata on the
// method's function, in a WeakMap keyed by it: under `@isolated @Get()` it
// sits on the function the wrapper replaces, where Nest never looks, and
// the route is silently missing. Copied to the wrapper, the order of the
// decorators does not matter. reflect-metadata is a global polyfill that the
// project loads, not a dependency of ours: without it there is nothing to copy.
function copyMetadata(from: Function, to: Function): void {
  const api = Reflect as MetadataApi;
  if (
    typeof api.getOwnMetadataKeys !== "function" ||
    typeof api.getOwnMetadata !== "function" ||
    typeof api.defineMetadata !== "function"
  ) {
    return;
  }
  for (const key of api.getOwnMetadataKeys(from)) {
    api.defineMetadata(key, api.getOwnMetadata(key, from), to);
  }
}

// A field's legacy decorator gets no descriptor; an accessor's has get/set.
// The legacy form's target names the member's class too.
function notAMethodError(
  target: unknown,
  key: string | symbol,
  descriptor: PropertyDescriptor | undefined,
): TypeError {
  const isClass = typeof target === "function";
  const owner = isClass ? target : (target as { constructor?: unknown } | null)?.constructor;
  const className = (typeof owner === "function" && functionName(owner)) || "TheClass";
  const member = typeof key === "string" ? `.${key}` : `[${String(key)}]`;
  const kind =
    descriptor === undefined
      ? "field"
      : descriptor.get !== undefined || descriptor.set !== undefined
        ? "accessor"
        : "value";
  return decoratesMethods(`\`${className}${member}\``, kind, key);
}

// A standard decorator's context names the member, not its class (an
// anonymous class's has no name).
function notAMemberError(kind: string, name: unknown): TypeError {
  const member =
    typeof name === "string"
      ? `\`${name}\``
      : typeof name === "symbol"
        ? `\`[${String(name)}]\``
        : "this";
  return decoratesMethods(member, kind, name);
}

// The one message of both forms: what `member` is, and what to do instead.
function decoratesMethods(member: string, kind: string, key: unknown): TypeError {
  const what =
    kind === "field"
      ? `a field: wrap its function where it is made, \`${typeof key === "string" ? key : "field"} = isolated(() => …)\``
      : kind === "class"
        ? "a class: decorate its methods, or wrap the functions it makes"
        : kind === "accessor" || kind === "getter" || kind === "setter"
          ? "an accessor: wrap the function it returns, or decorate a method"
          : kind === "value"
            ? "a value that is not a function"
            : `a ${kind}`;
  return new TypeError(`@isolated decorates methods, and ${member} is ${what}`);
}
