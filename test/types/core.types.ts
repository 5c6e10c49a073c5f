/**
 * Type tests for the core of `contextvars`: ContextVar (get/get(fallback),
 * the `default` option, set/reset, run's argument inference), Token
 * (oldValue with MISSING, `using`), Context as a ReadonlyMap and its run,
 * copyContext, bind (parameters, return and `this` kept), bindEmitter, and
 * the error classes' literal `code`s and constructors. Only typechecked (`npm run typecheck`):
 * nothing here is called.
 */
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import {
  bind,
  bindEmitter,
  Context,
  ContextEnteredError,
  ContextError,
  ContextVar,
  type ContextVarOptions,
  copyContext,
  type ErrorCode,
  LookupError,
  MISSING,
  type Missing,
  TaskGroupClosedError,
  TimeoutError,
  Token,
  TokenMismatchError,
  TokenUsedError,
  TransferError,
} from "contextvars";
import { type Equal, type Extends, expectFalse, expectType, type IsAny } from "./expect.ts";

export function contextVarGet(): void {
  const count = new ContextVar<number>("count");
  expectType<Equal<typeof count.name, string>>();

  const value = count.get();
  expectType<Equal<typeof value, number>>();

  // get(fallback): the var's type or the fallback's.
  const orNull = count.get(null);
  expectType<Equal<typeof orNull, number | null>>();
  const orUndefined = count.get(undefined);
  expectType<Equal<typeof orUndefined, number | undefined>>();
  // The fallback's literal type is kept, as with any `T | D` return.
  const orText = count.get("none");
  expectType<Equal<typeof orText, number | "none">>();
  const orLabel = count.get(String(1));
  expectType<Equal<typeof orLabel, number | string>>();
  const orNumber = count.get(0);
  expectType<Equal<typeof orNumber, number>>();

  // `default` gives T when no type argument is written.
  const retries = new ContextVar("retries", { default: 3 });
  expectType<Equal<typeof retries, ContextVar<number>>>();
  const user = new ContextVar<{ id: string } | null>("user", { default: null });
  const current = user.get();
  expectType<Equal<typeof current, { id: string } | null>>();
  const label = new ContextVar("label", { default: "none" });
  expectType<Equal<typeof label, ContextVar<string>>>();
  const list = new ContextVar("list", { default: [1, 2] });
  expectType<Equal<typeof list, ContextVar<number[]>>>();
  const mode = new ContextVar("mode", { default: "fast" as "fast" | "safe" });
  expectType<Equal<typeof mode, ContextVar<"fast" | "safe">>>();
  // A null default alone infers ContextVar<null>: write T for a nullable var.
  const nothing = new ContextVar("nothing", { default: null });
  expectType<Equal<typeof nothing, ContextVar<null>>>();
  const untyped = new ContextVar("untyped");
  expectType<Equal<typeof untyped, ContextVar<unknown>>>();
  const local = new ContextVar<string>("local", { transfer: false });
  expectType<Equal<typeof local.defaultValue, string | Missing>>();

  const options: ContextVarOptions<string> = { default: "x", transfer: true };
  new ContextVar("withOptions", options);

  // @ts-expect-error the default must be a T
  new ContextVar<string>("bad", { default: 1 });
  // @ts-expect-error transfer is a boolean
  new ContextVar<string>("bad", { transfer: "no" });
  // @ts-expect-error the name is required
  new ContextVar<string>();
  // @ts-expect-error the name is a string
  new ContextVar<string>(Symbol("name"));
  // @ts-expect-error name is read-only
  count.name = "other";
}

export function contextVarSetReset(): void {
  const count = new ContextVar<number>("count");
  const label = new ContextVar<string>("label");

  const token = count.set(1);
  expectType<Equal<typeof token, Token<number>>>();
  expectType<Equal<typeof token.var, ContextVar<number>>>();
  expectType<Equal<typeof token.oldValue, number | typeof MISSING>>();
  expectType<Equal<typeof token.used, boolean>>();
  expectType<Equal<typeof Token.MISSING, typeof MISSING>>();
  expectType<Equal<Missing, typeof MISSING>>();
  count.reset(token);
  token.var.reset(token);

  // MISSING is a unique symbol: comparing against it narrows oldValue to T.
  const old = token.oldValue;
  if (old !== MISSING) expectType<Equal<typeof old, number>>();
  else expectType<Equal<typeof old, Missing>>();
  if (old !== Token.MISSING) expectType<Equal<typeof old, number>>();

  // @ts-expect-error set takes a T
  count.set("1");
  // @ts-expect-error set takes a value
  count.set();
  // @ts-expect-error a token of another var's type
  count.reset(label.set("x"));
  // @ts-expect-error reset takes a Token, not the value
  count.reset(1);
  // @ts-expect-error reset takes a Token, not a look-alike
  count.reset({ var: count, oldValue: 1, used: false });
  // @ts-expect-error tokens come only from set()
  new Token();
  // @ts-expect-error used is read-only
  token.used = true;
}

export function tokensWithUsing(): void {
  const count = new ContextVar<number>("count");
  {
    using token = count.set(1);
    expectType<Equal<typeof token, Token<number>>>();
    expectType<Extends<Token<number>, Disposable>>();
  }
  {
    using _ = count.set(2);
  }
}

export async function contextVarRun(): Promise<void> {
  const count = new ContextVar<number>("count");

  const sum = count.run(1, (a: number, b: string) => a + b.length, 2, "x");
  expectType<Equal<typeof sum, number>>();
  const none = count.run(1, () => "done");
  expectType<Equal<typeof none, string>>();
  const later = count.run(1, async () => count.get());
  expectType<Equal<typeof later, Promise<number>>>();
  expectType<Equal<Awaited<typeof later>, number>>();

  // @ts-expect-error the value must be a T
  count.run("1", () => {});
  // @ts-expect-error run needs a function
  count.run(1, 42);
  // @ts-expect-error fn's arguments must follow it
  count.run(1, (a: number) => a);
  // @ts-expect-error an argument of the wrong type
  count.run(1, (a: number) => a, "a");
  // @ts-expect-error one argument too many
  count.run(1, (a: number) => a, 1, 2);
  // @ts-expect-error fn is called without a `this`: one it declares would be undefined
  count.run(1, function (this: { base: number }) {
    return this.base;
  });
}

export function contextMapLike(): void {
  const count = new ContextVar<number>("count");
  const ctx = new Context();

  const value = ctx.get(count);
  expectType<Equal<typeof value, number | undefined>>();
  // A var's default is not a value in the Context: get gives T | undefined.
  const withDefault = ctx.get(new ContextVar("retries", { default: 3 }));
  expectType<Equal<typeof withDefault, number | undefined>>();
  const orZero = ctx.get(count, 0);
  expectType<Equal<typeof orZero, number>>();
  const orNull = ctx.get(count, null);
  expectType<Equal<typeof orNull, number | null>>();
  expectType<Equal<ReturnType<typeof ctx.has>, boolean>>();
  expectType<Equal<typeof ctx.size, number>>();
  ctx.has(count);

  const keys = [...ctx.keys()];
  expectType<Equal<typeof keys, ContextVar<unknown>[]>>();
  const values = [...ctx.values()];
  expectType<Equal<typeof values, unknown[]>>();
  const entries = [...ctx.entries()];
  expectType<Equal<typeof entries, [ContextVar<unknown>, unknown][]>>();
  for (const [key, entry] of ctx) {
    expectType<Equal<typeof key, ContextVar<unknown>>>();
    expectType<Equal<typeof entry, unknown>>();
  }
  ctx.forEach((entry, key, map) => {
    expectType<Equal<typeof entry, unknown>>();
    expectType<Equal<typeof key, ContextVar<unknown>>>();
    // The Context itself, as Map#forEach gives its Map: its own methods are there.
    expectType<Equal<typeof map, Context>>();
    map.copy();
  });
  // A callback written for any ReadonlyMap still fits.
  ctx.forEach(
    (
      _entry: unknown,
      _key: ContextVar<unknown>,
      _map: ReadonlyMap<ContextVar<unknown>, unknown>,
    ) => {},
  );
  const asMap: ReadonlyMap<ContextVar<unknown>, unknown> = ctx;
  new Map(ctx);
  Object.fromEntries([...ctx].map(([key, entry]) => [key.name, entry]));
  expectType<Equal<ReturnType<typeof ctx.copy>, Context>>();
  expectType<Equal<ReturnType<typeof copyContext>, Context>>();
  expectType<Equal<ReturnType<typeof ctx.toString>, string>>();

  // @ts-expect-error a Context is read-only: no set
  ctx.set(count, 1);
  // @ts-expect-error a Context is not a (mutable) Map
  const mutable: Map<ContextVar<unknown>, unknown> = ctx;
  // @ts-expect-error get takes a ContextVar, not its name
  ctx.get("count");
  // @ts-expect-error has takes a ContextVar
  ctx.has("count");
  // @ts-expect-error size is read-only
  ctx.size = 0;
  // @ts-expect-error the constructor takes no mapping
  new Context(new Map());
  expectType<Equal<ConstructorParameters<typeof Context>, []>>();
  // It has that one construct signature: none of the package's own shows
  // in the declarations (a second would be inferred as A1 here).
  type LastTwo<C> = C extends {
    new (...args: infer A1): unknown;
    new (...args: infer A2): unknown;
  }
    ? [A1, A2]
    : never;
  expectType<Equal<LastTwo<typeof Context>, [[], []]>>();
  expectType<Equal<InstanceType<typeof Context>, Context>>();
  void asMap;
  void mutable;
}

export async function contextRun(): Promise<void> {
  const ctx = copyContext();

  const joined = ctx.run((a: number, b: string) => `${a}${b}`, 1, "x");
  expectType<Equal<typeof joined, string>>();
  const nothing = ctx.run(() => {});
  expectType<Equal<typeof nothing, void>>();
  const later = ctx.run(async (n: number) => n, 1);
  expectType<Equal<typeof later, Promise<number>>>();
  const rest = ctx.run((...names: string[]) => names.length, "a", "b", "c");
  expectType<Equal<typeof rest, number>>();
  const optional = ctx.run((a: number, b?: string) => b ?? a, 1);
  expectType<Equal<typeof optional, string | number>>();

  // @ts-expect-error run needs a function
  ctx.run(42);
  // @ts-expect-error run needs a function
  ctx.run();
  // @ts-expect-error a missing argument
  ctx.run((a: number) => a);
  // @ts-expect-error an argument of the wrong type
  ctx.run((a: number) => a, "1");
  // @ts-expect-error one argument too many
  ctx.run(() => 1, 2);

  // fn is called without a `this`: a function that declares one (and so a
  // bind() of it, which keeps it) is refused; a method that uses none is not.
  function describe(this: Connection, prefix: string): string {
    return `${prefix}${this.id}`;
  }
  // @ts-expect-error `this` would be undefined
  ctx.run(describe, "#");
  // @ts-expect-error `this` would be undefined
  ctx.run(bind(describe), "#");
  const counter = {
    count(n: number): number {
      return n + 1;
    },
  };
  const counted = ctx.run(counter.count, 1);
  expectType<Equal<typeof counted, number>>();
}

interface Connection {
  readonly id: number;
}

export function bindKeepsTheSignature(): void {
  const ctx = new Context();

  const handler = bind((conn: Connection, retries?: number) => conn.id + (retries ?? 0));
  expectType<Equal<typeof handler, (conn: Connection, retries?: number) => number>>();
  expectType<Equal<Parameters<typeof handler>, [conn: Connection, retries?: number]>>();

  const asyncHandler = bind(async (name: string) => name.length, ctx);
  expectType<Equal<ReturnType<typeof asyncHandler>, Promise<number>>>();

  // `this` passes through.
  function describe(this: Connection, prefix: string): string {
    return `${prefix}${this.id}`;
  }
  const bound = bind(describe);
  expectType<Equal<typeof bound, typeof describe>>();
  expectType<Equal<ThisParameterType<typeof bound>, Connection>>();
  const conn = { id: 1, describe: bound };
  expectType<Equal<ReturnType<typeof conn.describe>, string>>();
  // @ts-expect-error the bound function keeps its `this` type
  bound("x");

  // A generic function stays generic.
  const identity = bind(<T>(value: T): T => value);
  const same = identity(42 as const);
  expectType<Equal<typeof same, 42>>();

  // An overloaded function keeps every overload.
  function parse(text: string): number;
  function parse(bytes: Uint8Array): bigint;
  function parse(input: string | Uint8Array): number | bigint {
    return typeof input === "string" ? Number(input) : BigInt(input.length);
  }
  const boundParse = bind(parse);
  const fromText = boundParse("1");
  expectType<Equal<typeof fromText, number>>();
  const fromBytes = boundParse(new Uint8Array());
  expectType<Equal<typeof fromBytes, bigint>>();

  // @ts-expect-error bind needs a function
  bind(42);
  // @ts-expect-error the context must be a Context
  bind(() => {}, {});
  // @ts-expect-error the result takes fn's arguments
  handler("not a connection");
}

/** An emitter with node:events' listener methods and no more (as a browser's `events` package may be). */
type EmitterMethods = Pick<
  EventEmitter,
  | "on"
  | "addListener"
  | "once"
  | "prependListener"
  | "prependOnceListener"
  | "removeListener"
  | "off"
  | "removeAllListeners"
  | "emit"
  | "listeners"
  | "rawListeners"
  | "listenerCount"
>;

export function bindEmitterKeepsTheEmitter(req: IncomingMessage, methods: EmitterMethods): void {
  const emitter = bindEmitter(new EventEmitter());
  expectType<Equal<typeof emitter, EventEmitter>>();
  const bound = bindEmitter(req, copyContext());
  expectType<Equal<typeof bound, IncomingMessage>>();
  bindEmitter(req).on("end", () => {});
  // bindEmitter's type names no Node type (its declarations compile without
  // @types/node): an emitter need only have the listener methods.
  const plain = bindEmitter(methods);
  expectType<Equal<typeof plain, EmitterMethods>>();

  // @ts-expect-error not an EventEmitter
  bindEmitter({ on() {} });
  // @ts-expect-error the context must be a Context
  bindEmitter(req, {});
}

export function errorCodes(error: unknown): void {
  expectType<Extends<LookupError, ContextError>>();
  expectType<Extends<ContextError, Error>>();
  expectType<Equal<ContextError["code"], string>>();
  expectType<Equal<LookupError["code"], "ERR_CONTEXTVAR_UNSET">>();
  expectType<Equal<TokenUsedError["code"], "ERR_TOKEN_USED">>();
  expectType<
    Equal<TokenMismatchError["code"], "ERR_TOKEN_VAR_MISMATCH" | "ERR_TOKEN_CONTEXT_MISMATCH">
  >();
  expectType<Equal<ContextEnteredError["code"], "ERR_CONTEXT_ENTERED">>();
  expectType<Equal<TaskGroupClosedError["code"], "ERR_TASK_GROUP_CLOSED">>();
  expectType<Equal<TimeoutError["code"], "ERR_TASK_TIMEOUT">>();
  expectType<
    Equal<TransferError["code"], "ERR_CONTEXTVAR_UNCLONEABLE" | "ERR_CONTEXTVAR_NAME_CLASH">
  >();
  expectType<
    Equal<
      ErrorCode,
      | "ERR_CONTEXTVAR_UNSET"
      | "ERR_TOKEN_USED"
      | "ERR_TOKEN_VAR_MISMATCH"
      | "ERR_TOKEN_CONTEXT_MISMATCH"
      | "ERR_CONTEXT_ENTERED"
      | "ERR_TASK_GROUP_CLOSED"
      | "ERR_TASK_TIMEOUT"
      | "ERR_CONTEXTVAR_UNCLONEABLE"
      | "ERR_CONTEXTVAR_NAME_CLASH"
    >
  >();
  // Each class's codes are ErrorCodes, and the classes are told apart by them.
  expectType<Extends<TokenMismatchError["code"] | TransferError["code"], ErrorCode>>();
  expectFalse<Extends<TokenUsedError, LookupError>>();
  expectFalse<Extends<ContextError, LookupError>>();

  if (error instanceof TokenMismatchError) {
    expectType<Equal<typeof error, TokenMismatchError>>();
    expectFalse<IsAny<typeof error.code>>();
    switch (error.code) {
      case "ERR_TOKEN_VAR_MISMATCH":
      case "ERR_TOKEN_CONTEXT_MISMATCH":
        break;
      default:
        expectType<Equal<typeof error.code, never>>();
    }
    // @ts-expect-error not a code a TokenMismatchError has
    if (error.code === "ERR_TOKEN_USED") return;
  }
  if (error instanceof ContextError) {
    expectType<Equal<typeof error.name, string>>();
    expectType<Equal<typeof error.message, string>>();
    // @ts-expect-error code is read-only
    error.code = "ERR_TOKEN_USED";
  }
}

export function errorConstructors(): void {
  // An error made by hand (a test double, a rethrow) takes only its class's
  // codes: the code its type says is the one it has.
  const lookup = new LookupError("ERR_CONTEXTVAR_UNSET", "user has no value");
  expectType<Equal<typeof lookup.code, "ERR_CONTEXTVAR_UNSET">>();
  new TokenMismatchError("ERR_TOKEN_CONTEXT_MISMATCH", "made elsewhere", { cause: lookup });
  new TransferError("ERR_CONTEXTVAR_NAME_CLASH", "two vars named user");
  new TimeoutError("ERR_TASK_TIMEOUT", "late");
  new ContextError("ERR_APP_SPECIFIC", "the base class takes any code");
  expectType<Equal<ConstructorParameters<typeof LookupError>[0], "ERR_CONTEXTVAR_UNSET">>();
  expectType<
    Equal<
      ConstructorParameters<typeof TokenMismatchError>[0],
      "ERR_TOKEN_VAR_MISMATCH" | "ERR_TOKEN_CONTEXT_MISMATCH"
    >
  >();

  // @ts-expect-error a LookupError's code is ERR_CONTEXTVAR_UNSET
  new LookupError("ERR_TOKEN_USED", "m");
  // @ts-expect-error not a code of this package
  new TokenUsedError("whatever", "m");
  // @ts-expect-error a TransferError's codes are its own two
  new TransferError("ERR_TASK_TIMEOUT", "m");
  // @ts-expect-error the message is required
  new ContextEnteredError("ERR_CONTEXT_ENTERED");
  // @ts-expect-error a TaskGroupClosedError's code is ERR_TASK_GROUP_CLOSED
  new TaskGroupClosedError("ERR_TASK_TIMEOUT", "m");
}
