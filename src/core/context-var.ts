import { carrier } from "../carrier/select.ts";
import { argumentError, contextError, ownClass } from "../errors.ts";
import { NOT_FOUND } from "../map/hamt.ts";
import { hashKey, nextHash } from "../map/hash.ts";
import { contextWith, type Mapping, mapIdOf, mapOf, setMapOf, taskOf } from "./context.ts";
import { rootContext } from "./current.ts";
import { varCreated } from "./inherit.ts";
import { type InspectFn, innerOptions, inspectCustom, show } from "./inspect.ts";
import { MISSING, type Missing } from "./missing.ts";
import {
  isToken,
  makeToken,
  markTokenUsed,
  type Token,
  tokenOldValue,
  tokenState,
  tokenUsed,
  tokenVar,
} from "./token.ts";

// Module-local aliases for the hot paths: an imported binding is read through
// the exporting module's cell, with a check that it has been initialised, and
// the accessors below are `let`s that context.ts and token.ts assign in
// static blocks (which have run by now: neither imports this module).
const slot = carrier;
const root = rootContext;
const idOf = mapIdOf;
const mapIn = mapOf;
const setMapIn = setMapOf;
const contextOver = contextWith;
const taskIn = taskOf;
const newToken = makeToken;
const tokenLike = isToken;
const markUsed = markTokenUsed;
const stateOf = tokenState;
const varOf = tokenVar;
const oldValueOf = tokenOldValue;
const usedOf = tokenUsed;
const notFound: typeof NOT_FOUND = NOT_FOUND;
const missing: typeof MISSING = MISSING;
// The longest string a var's read cache may hold: ids, tokens and cookies are
// cached; a body read as text is not kept alive by the var after its Context.
const MAX_CACHED_STRING = 4096;

/** Options of a ContextVar. */
export interface ContextVarOptions<T> {
  /** The value `get()` returns where the var has no value and no fallback is given. */
  default?: T;
  /**
   * `false`: a local-only var, which never crosses to or from a worker thread
   * (`contextvars/worker`). Default `true`.
   */
  transfer?: boolean | undefined;
}

/**
 * Whether value is a ContextVar: a brand check, which `instanceof` is not (an
 * `Object.create(ContextVar.prototype)` passes it, then fails at its first
 * use). Internal.
 */
export let isContextVar: (value: unknown) => value is ContextVar<unknown>;

// What a LookupError says to do, for vars this package sets itself: "set it
// first" is wrong advice for requestId, which the integrations set. Read
// only when get() throws, so the hot path never touches it.
const unsetAdvice = new WeakMap<ContextVar<unknown>, string | (() => string)>();

/**
 * Gives `variable`'s LookupError `advice` in place of the generic one; a
 * function is called when the error is made, to advise by what it finds
 * then. Internal.
 */
export function adviseWhenUnset(
  variable: ContextVar<unknown>,
  advice: string | (() => string),
): void {
  unsetAdvice.set(variable, advice);
}

// Out of line: get()'s miss path stays as small as it was, for V8 to inline.
function unsetError(variable: ContextVar<unknown>): Error {
  const advice = unsetAdvice.get(variable);
  return contextError(
    "ERR_CONTEXTVAR_UNSET",
    variable.toString(),
    typeof advice === "function" ? advice() : advice,
  );
}

/**
 * A variable whose value belongs to the current Context: set it once, read
 * it anywhere below, and concurrent work in other Contexts never sees it.
 *
 * @example
 * const requestId = new ContextVar<string>("requestId");
 * requestId.run("r-1", async () => {
 *   await work();
 *   requestId.get(); // "r-1", whatever ran in between
 * });
 */
export class ContextVar<T> {
  /** @internal The hash under which the var is filed in a Context's map. */
  readonly [hashKey]: number = nextHash();
  readonly #name: string;
  // NOT_FOUND when none was given: MISSING itself may be a var's default, as
  // Token.MISSING may be in CPython (whose var_default is NULL for none).
  readonly #default: T | typeof NOT_FOUND;
  // The last read, keyed on the id of the map it was read from: repeated reads
  // of an unchanged Context cost one getStore() and a compare (CPython caches
  // on the context's version the same way). NOT_FOUND is cached too. Only
  // small primitives are cached here: an object, or a long string (a request
  // body read as text), would stay reachable from this long-lived var after
  // its Context is gone (CPython's cache is a borrowed reference; JavaScript
  // has none; test/leaks/var-cache.test.ts). Those are served by the map's own
  // one-entry cache (Hamt#read), which goes with the map.
  // Hits and misses have separate ids, so the hit path compares small integers
  // only and never a value against the NOT_FOUND symbol: with operands of
  // varying types that `!==` compiles to a call of V8's generic StrictEqual
  // (bench/get.bench.ts: 1.8x -> 1.5x of a bare getStore()).
  #hitId = -1;
  #hitValue: unknown;
  #missId = -1;

  static {
    ownClass(ContextVar);
    isContextVar = (value): value is ContextVar<unknown> =>
      typeof value === "object" && value !== null && #name in value;
  }

  /**
   * @param name shown in messages and inspection; need not be unique.
   * @param options `default`: the value when the var has none (`{ default: undefined }` counts);
   *   `transfer: false`: the var never crosses to a worker thread.
   * @throws {TypeError} if name is not a string.
   */
  constructor(name: string, options?: ContextVarOptions<T>) {
    if (typeof name !== "string") throw argumentError("name", "a string", name);
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw argumentError("options", "an object", options);
    }
    // Read once: the value checked is the value used.
    const transfer = options?.transfer;
    if (transfer !== undefined && typeof transfer !== "boolean") {
      throw argumentError("options.transfer", "a boolean", transfer);
    }
    this.#name = name;
    this.#default =
      options !== undefined && "default" in options ? (options.default as T) : notFound;
    varCreated(this as ContextVar<unknown>, transfer !== false);
  }

  /** The name given to the constructor. */
  get name(): string {
    return this.#name;
  }

  /** The default given to the constructor, or MISSING. */
  get defaultValue(): T | Missing {
    const fallback = this.#default;
    return fallback === notFound ? missing : fallback;
  }

  /**
   * The var's value in the current Context; else `fallback` if one is passed;
   * else the var's default.
   * @throws {LookupError} ERR_CONTEXTVAR_UNSET when there is none of the three.
   */
  get(): T;
  get<D>(fallback: D): T | D;
  get<D>(fallback?: D): T | D {
    const context = slot.getStore() ?? root;
    if (idOf(context) === this.#hitId) return this.#hitValue as T;
    // arguments.length, not `fallback !== undefined`: get(undefined) returns undefined, as Python's get(None).
    // biome-ignore lint/complexity/noArguments: the only way to tell get() from get(undefined)
    return this.#lookup(mapIn(context), arguments.length > 0, fallback) as T | D;
  }

  // The slow half of get, out of it so that get stays small enough to inline.
  #lookup(map: Mapping, hasFallback: boolean, fallback: unknown): unknown {
    if (map.id !== this.#missId) {
      const value = map.read(this as ContextVar<unknown>);
      if (value !== notFound) {
        this.#remember(map, value);
        return value;
      }
      this.#missId = map.id;
    }
    if (hasFallback) return fallback;
    if (this.#default !== notFound) return this.#default;
    throw unsetError(this as ContextVar<unknown>);
  }

  /**
   * Gives the var a new value in the current Context (the old mapping is
   * untouched, so copies taken before do not see it).
   * @returns a Token that `reset` takes to restore the previous value.
   */
  set(value: T): Token<T> {
    const context = slot.getStore() ?? root;
    const before = mapIn(context);
    const old =
      before.id === this.#hitId ? this.#hitValue : before.read(this as ContextVar<unknown>);
    const after = before.set(this as ContextVar<unknown>, value);
    setMapIn(context, after);
    this.#remember(after, value);
    return newToken(this, old as T | typeof NOT_FOUND, context, before, after);
  }

  /**
   * Restores the value the var had before the `set` that made `token` (or
   * removes it if it had none).
   * @throws {TokenUsedError} ERR_TOKEN_USED if the token was used already.
   * @throws {TokenMismatchError} ERR_TOKEN_VAR_MISMATCH if another var made it,
   *   ERR_TOKEN_CONTEXT_MISMATCH if it was made in another Context.
   * @throws {TypeError} if token is not a Token.
   */
  reset(token: Token<T>): void {
    if (!tokenLike(token)) throw argumentError("token", "a Token", token, `${this}.reset()`);
    // Checks in CPython's order: used, then var, then context. The token's
    // fields are read through its private state, never its public getters,
    // which an own property on the token could shadow.
    if (usedOf(token)) throw contextError("ERR_TOKEN_USED", token.toString());
    const own = varOf(token);
    if (own !== this) {
      throw contextError(
        "ERR_TOKEN_VAR_MISMATCH",
        token.toString(),
        own.toString(),
        this.toString(),
        JSON.stringify(this.#name),
      );
    }
    const context = slot.getStore() ?? root;
    const state = stateOf(token);
    if (state.context !== context) {
      throw contextError("ERR_TOKEN_CONTEXT_MISMATCH", token.toString());
    }
    markUsed(token);
    // NOT_FOUND if the var had no value; MISSING itself is a value it may have had.
    const oldValue = oldValueOf(token);
    const now = mapIn(context);
    let next: Mapping;
    if (now === state.after) next = state.before;
    else if (oldValue === notFound) next = now.delete(this as ContextVar<unknown>);
    else next = now.set(this as ContextVar<unknown>, oldValue);
    setMapIn(context, next);
    if (oldValue === notFound) this.#missId = next.id;
    else this.#remember(next, oldValue);
  }

  // Caches a small primitive value found in `map`; for an object or a long string, drops the cache.
  #remember(map: Mapping, value: unknown): void {
    if (
      (typeof value === "object" && value !== null) ||
      typeof value === "function" ||
      (typeof value === "string" && value.length > MAX_CACHED_STRING)
    ) {
      if (this.#hitId !== -1) {
        this.#hitId = -1;
        this.#hitValue = undefined;
      }
    } else {
      this.#hitId = map.id;
      this.#hitValue = value;
    }
  }

  /**
   * Calls `fn(...args)` in a copy of the current Context where this var is
   * `value`, for fn and everything it starts; the caller's Context is not changed.
   * @throws {TypeError} if fn is not a function.
   */
  run<A extends unknown[], R>(value: T, fn: (this: void, ...args: A) => R, ...args: A): R;
  run<R>(value: T, fn: (...args: unknown[]) => R): R {
    // assertFunction(…, this, "run") written out: through the call, var.run
    // measured 91–98 ns against 79–83 inline (bench/run.bench.ts, Node 20).
    if (typeof fn !== "function") throw argumentError("fn", "a function", fn, `${this}.run()`);
    const base = slot.getStore() ?? root;
    const context = contextOver(mapIn(base).set(this as ContextVar<unknown>, value), taskIn(base));
    // `arguments`, not a rest parameter: no array when there are no arguments (see Context#run).
    // biome-ignore lint/complexity/noArguments: see above
    if (arguments.length === 2) return slot.run(context, fn);
    // biome-ignore lint/complexity/noArguments: see above
    const args = Array.prototype.slice.call(arguments, 2) as unknown[];
    return slot.run(context, fn, ...args);
  }

  get [Symbol.toStringTag](): string {
    return "ContextVar";
  }

  /** `ContextVar("user")`: how messages name the var. */
  toString(): string {
    return `ContextVar(${JSON.stringify(this.#name)})`;
  }

  [inspectCustom](depth: number, options: object, inspect?: InspectFn): string {
    if (depth < 0) return `[${this.toString()}]`;
    const inner = innerOptions(depth, options);
    const fallback =
      this.#default === notFound ? "" : ` default=${show(this.#default, inspect, inner)}`;
    return `<ContextVar name=${JSON.stringify(this.#name)}${fallback}>`;
  }
}
