// Token's declarations name Disposable and Symbol.dispose. Kept in them, this gives
// those to a project with no @types/node whose libs stop at ES2022 (a browser
// one), which otherwise fails to compile them unless it skips lib checks.
/// <reference lib="esnext.disposable" preserve="true" />

import { ownClass } from "../errors.ts";
import { NOT_FOUND, type NotFound } from "../map/hamt.ts";
import type { Context, Mapping } from "./context.ts";
import type { ContextVar } from "./context-var.ts";
import { type InspectFn, innerOptions, inspectCustom, show } from "./inspect.ts";
import { MISSING, type Missing } from "./missing.ts";

// Only ContextVar.set makes tokens (Python: "Tokens can only be created by ContextVars").
const constructing = Symbol("contextvars.token");

/** What ContextVar.reset needs to know of a token. Internal. */
export interface TokenState {
  readonly context: Context;
  /** The mapping before the set, and the one the set made: if the second is
   * still current at reset, the first is restored as it was (no new map). */
  readonly before: Mapping;
  readonly after: Mapping;
}

export let tokenState: (token: Token<unknown>) => TokenState;
// What reset reads of a token, from its private fields: a token is an
// ordinary object, and an own `var`, `oldValue` or `used` defined on it would
// shadow the getters (Python's Token has no __dict__ to do that with).
export let tokenVar: (token: Token<unknown>) => ContextVar<unknown>;
/** The old value as the token holds it: NOT_FOUND if the var had none (MISSING is a value a var can hold). */
export let tokenOldValue: (token: Token<unknown>) => unknown;
export let tokenUsed: (token: Token<unknown>) => boolean;
export let markTokenUsed: (token: Token<unknown>) => void;
export let isToken: (value: unknown) => value is Token<unknown>;
export let makeToken: <T>(
  v: ContextVar<T>,
  oldValue: T | NotFound,
  context: Context,
  before: Mapping,
  after: Mapping,
) => Token<T>;

/**
 * What `var.set()` returns: enough to undo that set with `var.reset(token)`,
 * once, in the same Context. `using _ = v.set(x)` undoes it at scope exit.
 *
 * @example
 * const token = user.set("alice");
 * try { work(); } finally { user.reset(token); }
 */
export class Token<T> implements Disposable {
  /** The marker for "the var had no value before the set". */
  static readonly MISSING: Missing = MISSING;

  static {
    ownClass(Token);
    // Read-only at run time too, as Python's Token.MISSING: code compares
    // oldValue against it, and a reassigned marker would misread every token.
    Object.defineProperty(Token, "MISSING", { writable: false, configurable: false });
  }

  // Private with getters: read-only at run time too, as Python's token.var and
  // token.old_value (reset trusts both, so a reassigned one would restore the wrong var).
  readonly #var: ContextVar<T>;
  // NOT_FOUND when the var had no value: a var may hold MISSING itself (Python's
  // tok_oldval is NULL then, not Token.MISSING), and reset must restore that value.
  readonly #oldValue: T | NotFound;
  #used = false;
  readonly #state: TokenState;

  /** @throws {TypeError} always from user code: tokens come only from ContextVar.set(). */
  private constructor(
    guard: typeof constructing,
    v: ContextVar<T>,
    oldValue: T | NotFound,
    state: TokenState,
  ) {
    if (guard !== constructing) {
      throw new TypeError("Tokens can only be created by ContextVar.set(); call var.set(value)");
    }
    this.#var = v;
    this.#oldValue = oldValue;
    this.#state = state;
  }

  static {
    makeToken = (v, oldValue, context, before, after) =>
      new Token(constructing, v, oldValue, { context, before, after });
    tokenState = (token) => token.#state;
    tokenVar = (token) => token.#var;
    tokenOldValue = (token) => token.#oldValue;
    tokenUsed = (token) => token.#used;
    markTokenUsed = (token) => {
      token.#used = true;
    };
    isToken = (value): value is Token<unknown> =>
      typeof value === "object" && value !== null && #state in value;
  }

  /** The var whose set made this token. */
  get var(): ContextVar<T> {
    return this.#var;
  }

  /** The var's value before the set, or Token.MISSING if it had none. */
  get oldValue(): T | Missing {
    const old = this.#oldValue;
    return old === NOT_FOUND ? MISSING : old;
  }

  /** Whether the token has been used to reset its var. */
  get used(): boolean {
    return this.#used;
  }

  /**
   * Resets the var, as `token.var.reset(token)`: `using _ = v.set(x)`.
   * @throws as ContextVar.reset.
   */
  [Symbol.dispose](): void {
    this.#var.reset(this);
  }

  get [Symbol.toStringTag](): string {
    return "Token";
  }

  /** `<Token var=ContextVar("user")>`, or `<Token used var=ContextVar("user")>` once used (as CPython's repr). */
  toString(): string {
    return `<Token${this.#used ? " used" : ""} var=${this.#var.toString()}>`;
  }

  [inspectCustom](depth: number, options: object, inspect?: InspectFn): string {
    if (depth < 0) return `[${this.toString()}]`;
    const inner = innerOptions(depth, options);
    const old = this.#oldValue === NOT_FOUND ? "MISSING" : show(this.#oldValue, inspect, inner);
    return `Token { var: ${this.#var.toString()}, oldValue: ${old}, used: ${this.#used} }`;
  }
}
