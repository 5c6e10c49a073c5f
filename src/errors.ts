/**
 * Every error the package throws for misuse, in one table: class, stable
 * `code`, and the message, side by side (as Node's `E('ERR_…', msg, Class)`).
 * Messages name the var, context or task involved and say what to do.
 */

import { functionName } from "./core/inspect.ts";

/** Base class of every error this package throws for misuse; `code` is stable. */
export class ContextError extends Error {
  readonly code: string;

  // `{ cause }` written out, not lib.es2022's ErrorOptions: the declarations
  // then compile in a project whose lib is older (ES2020, ES2021).
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  static {
    named(ContextError, "ContextError");
  }
}

// `name` as a writable prototype property, as Error.prototype.name is: spelled
// out, not taken from constructor.name, which a minifier renames.
function named(Class: { prototype: Error }, name: string): void {
  Object.defineProperty(Class.prototype, "name", {
    value: name,
    writable: true,
    configurable: true,
  });
}

/** `get()` of a var with no value, no fallback and no default (Python's LookupError). */
export class LookupError extends ContextError {
  declare readonly code: "ERR_CONTEXTVAR_UNSET";

  constructor(code: LookupError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(LookupError, "LookupError");
  }
}

/** A token reset a second time (Python's RuntimeError). */
export class TokenUsedError extends ContextError {
  declare readonly code: "ERR_TOKEN_USED";

  constructor(code: TokenUsedError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(TokenUsedError, "TokenUsedError");
  }
}

/** A token reset through another var, or in another Context (Python's ValueError). */
export class TokenMismatchError extends ContextError {
  declare readonly code: "ERR_TOKEN_VAR_MISMATCH" | "ERR_TOKEN_CONTEXT_MISMATCH";

  constructor(code: TokenMismatchError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(TokenMismatchError, "TokenMismatchError");
  }
}

/** `ctx.run` while ctx is already entered (Python's RuntimeError). */
export class ContextEnteredError extends ContextError {
  declare readonly code: "ERR_CONTEXT_ENTERED";

  constructor(code: ContextEnteredError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(ContextEnteredError, "ContextEnteredError");
  }
}

/** A task added to a TaskGroup that is finished or shutting down (asyncio's RuntimeError). */
export class TaskGroupClosedError extends ContextError {
  declare readonly code: "ERR_TASK_GROUP_CLOSED";

  constructor(code: TaskGroupClosedError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(TaskGroupClosedError, "TaskGroupClosedError");
  }
}

/** A `timeout()` task that ran out of time (asyncio's TimeoutError). */
export class TimeoutError extends ContextError {
  declare readonly code: "ERR_TASK_TIMEOUT";

  constructor(code: TimeoutError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(TimeoutError, "TimeoutError");
  }
}

/** A var whose value cannot cross to a worker thread, or two vars that would cross under one name. */
export class TransferError extends ContextError {
  declare readonly code: "ERR_CONTEXTVAR_UNCLONEABLE" | "ERR_CONTEXTVAR_NAME_CLASH";

  constructor(code: TransferError["code"], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }

  static {
    named(TransferError, "TransferError");
  }
}

// Each class's constructor takes only its own codes (a LookupError made with
// another code would say one code in its type and another at runtime): the
// table checks the classes with `never`, contextError calls them with its code.
type ErrorClass = new (code: never, message: string, options?: { cause?: unknown }) => ContextError;
type AnyCodeErrorClass = new (
  code: ErrorCode,
  message: string,
  options?: { cause?: unknown },
) => ContextError;

const table = {
  ERR_CONTEXTVAR_UNSET: [
    LookupError,
    (v: string, advice?: string) =>
      advice === undefined
        ? `${v} has no value in the current Context and no default; set it first, pass a fallback to get(), or give the var a default`
        : `${v} has no value in the current Context; ${advice}`,
  ],
  ERR_TOKEN_USED: [
    TokenUsedError,
    (t: string) => `${t} has already been used once; a token resets its var only once`,
  ],
  ERR_TOKEN_VAR_MISMATCH: [
    TokenMismatchError,
    // Names need not be unique, and a var is shown by its name only (CPython's
    // repr adds an address): two vars of one name would read "through x, not x".
    (t: string, own: string, v: string, name: string) =>
      own === v
        ? `${t} was created by another ContextVar also named ${name}; reset it through token.var, the var that set it`
        : `${t} was created by a different ContextVar; reset it through ${own}, not ${v}`,
  ],
  ERR_TOKEN_CONTEXT_MISMATCH: [
    TokenMismatchError,
    (t: string) =>
      `${t} was created in a different Context; reset it where it was set: in the same run or task, or outside any run if it was set there`,
  ],
  ERR_CONTEXT_ENTERED: [
    ContextEnteredError,
    (c: string) =>
      `cannot enter ${c}: it is already entered; run a copy instead (ctx.copy().run(fn))`,
  ],
  ERR_TASK_GROUP_CLOSED: [
    TaskGroupClosedError,
    (g: string, why: string, advice: string) => `${g} is ${why}; ${advice}`,
  ],
  ERR_TASK_TIMEOUT: [TimeoutError, (t: string, ms: string) => `${t} timed out after ${ms} ms`],
  ERR_CONTEXTVAR_UNCLONEABLE: [
    TransferError,
    (v: string, what: string) =>
      `${v} cannot cross to a worker thread: ${what}; give it a structured-cloneable value, create it with { transfer: false }, or pass onUncloneable: "skip" to new Worker or contextPool (for toThread, the pool given to useThreadPool)`,
  ],
  ERR_CONTEXTVAR_NAME_CLASH: [
    TransferError,
    (name: string, c: string) =>
      `two ContextVars named ${name} have values in ${c}; a worker thread finds vars by name, so rename one or create it with { transfer: false }`,
  ],
} as const satisfies Record<string, readonly [ErrorClass, (...args: string[]) => string]>;

export type ErrorCode = keyof typeof table;

/** Builds the error of `code` with its class and message. */
export function contextError<C extends ErrorCode>(
  code: C,
  ...args: Parameters<(typeof table)[C][1]>
): InstanceType<(typeof table)[C][0]> {
  const [ErrorType, message] = table[code] as unknown as readonly [
    AnyCodeErrorClass,
    (...a: Array<string | undefined>) => string,
  ];
  return new ErrorType(code, message(...args)) as InstanceType<(typeof table)[C][0]>;
}

/**
 * A short, safe description of any value for a TypeError message: `42` (number).
 * It never throws and never dumps: what a revoked Proxy, a Proxy's trap or a
 * Symbol.toStringTag getter throws while it is read leaves a plain
 * `[object]` or `[Function]`, and what reads long (a tag, a Symbol's
 * description, a BigInt) is cut at 40 characters, as a string is.
 */
export function describeValue(value: unknown): string {
  let shown: string;
  if (typeof value === "string") shown = JSON.stringify(shorten(value));
  else if (typeof value === "function") {
    // The name as Function#bind takes it: a Symbol or a static name() method
    // is no name (a template literal throws on the one, prints the other's source).
    let name = "";
    try {
      name = functionName(value);
    } catch {
      // A Proxy whose trap throws, or a revoked one: shown without its name.
    }
    shown = name ? `[Function ${shorten(name)}]` : "[Function]";
  } else if (value === null || typeof value !== "object") shown = shorten(String(value));
  else {
    try {
      shown = shorten(Object.prototype.toString.call(value));
    } catch {
      shown = "[object]";
    }
  }
  return `\`${shown}\` (${value === null ? "null" : typeof value})`;
}

/** text, or its first `length` UTF-16 units (never half an emoji) and an ellipsis. Internal. */
export function shorten(text: string, length = 40): string {
  return text.length > length ? `${cut(text, length)}…` : text;
}

/** The first `length` UTF-16 units of text, one fewer rather than half an emoji. */
function cut(text: string, length: number): string {
  const last = text.charCodeAt(length - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? length - 1 : length);
}

/**
 * ``Expected `fn` to be a function, got `42` (number)``, as p-map writes them;
 * `where` (the var or Context whose method was called) is added after it:
 * ``…, in ContextVar("user").run()``.
 */
export function argumentError(
  name: string,
  expected: string,
  value: unknown,
  where?: string,
): TypeError {
  const at = where === undefined ? "" : `, in ${where}`;
  return new TypeError(
    `Expected \`${name}\` to be ${expected}, got ${describeValue(value)}${at}${fromAnotherCopy(expected, value)}`,
  );
}

// This copy's Context, ContextVar and Token, which register themselves: an
// object of one of them that fails its brand check was forged here
// (Object.create(ContextVar.prototype)), not made by another copy.
const ownClasses = new Set<unknown>();

/** Registers one of this copy's branded classes (see fromAnotherCopy). Internal. */
export function ownClass(made: Function): void {
  ownClasses.add(made);
}

/**
 * The hint for a value of the very class expected, made by another copy of
 * this package (two versions installed, a bundle beside an import, jest's
 * per-file module registry): its brand is not this copy's, so it is refused,
 * and `got [object Context]` alone reads as a Context refused for being one.
 */
function fromAnotherCopy(expected: string, value: unknown): string {
  if (typeof value !== "object" || value === null) return "";
  const type = expected.replace(/^an? /, "");
  try {
    const made = (value as { constructor?: { name?: unknown } }).constructor;
    if (
      Object.prototype.toString.call(value) !== `[object ${type}]` ||
      made?.name !== type ||
      // This copy's own class: an object made from its prototype by hand.
      ownClasses.has(made)
    ) {
      return "";
    }
  } catch {
    return "";
  }
  return `; it is a ${type} from another copy of contextvars: the package is loaded twice in this process (two versions installed, a bundler that bundles it into more than one bundle, such as Next.js without serverExternalPackages, or a test runner that loads modules per test file), and each copy knows only its own ${type}s and its own current Context`;
}

/**
 * Throws argumentError unless value is a function. `owner` and `method`, when
 * given, name the call in the message (``…, in ContextVar("user").run()``);
 * they are formatted only when it throws, so a hot path can pass them.
 */
export function assertFunction(
  name: string,
  value: unknown,
  owner?: object,
  method?: string,
): asserts value is Function {
  if (typeof value !== "function") {
    const where = owner === undefined ? undefined : `${owner}.${method}()`;
    throw argumentError(name, "a function", value, where);
  }
}

/**
 * Whether value is an Error of any realm, as Koa's own onerror tells one: by
 * its brand, then instanceof. Under jest (and Vitest's vm pools) this package
 * runs in a vm context, and the errors Node throws (AbortErrors from
 * timers/promises and events.once) are the outer realm's. Internal.
 */
export function isErrorOfAnyRealm(value: unknown): value is Error {
  return Object.prototype.toString.call(value) === "[object Error]" || value instanceof Error;
}
