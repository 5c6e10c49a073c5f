/**
 * The sending side: which values of a Context may cross to a worker thread,
 * checked before anything is posted so the error names the var.
 *
 * Structured clone throws on functions and symbols, but silently turns a
 * class instance into a plain object (its methods and prototype are lost),
 * so a plain clone would hand the worker a value that only looks right.
 * `problemIn` walks the value instead: plain objects, arrays, Maps and Sets
 * are entered, the built-ins that structured clone keeps (Date, RegExp,
 * buffers, typed arrays, Errors, boxed primitives) pass, another realm's as
 * well as this one's, and any other prototype is cloned once to see whether
 * it survives (Node's Blob does; a user's class does not).
 */
import type { Context } from "../core/context.ts";
import { type CrossingValues, isLocalOnly, unclaimedValues } from "../core/inherit.ts";
import {
  argumentError,
  contextError,
  describeValue,
  shorten,
  type TransferError,
} from "../errors.ts";

/** What to do with a var whose value cannot cross: throw a TransferError (default), or leave it behind. */
export type OnUncloneable = "throw" | "skip";

const typedArrays = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];
// Prototypes that structured clone recreates as they are, with nothing inside to check.
const KEPT = new Set<object>([
  Date.prototype,
  RegExp.prototype,
  ArrayBuffer.prototype,
  SharedArrayBuffer.prototype,
  DataView.prototype,
  Boolean.prototype,
  Number.prototype,
  String.prototype,
  BigInt.prototype,
  Error.prototype,
  EvalError.prototype,
  RangeError.prototype,
  ReferenceError.prototype,
  SyntaxError.prototype,
  TypeError.prototype,
  URIError.prototype,
  ...typedArrays.map((T) => T.prototype),
]);
// Their names: another realm's built-ins of these kinds are kept as well (see builtInName).
const KEPT_NAMES = new Set([...KEPT].map(nameOf));

/**
 * Checks the onUncloneable option, named `options.onUncloneable` in the message.
 * @throws {TypeError} if it is not "throw", "skip" or undefined.
 */
export function assertOnUncloneable(value: unknown): asserts value is OnUncloneable | undefined {
  if (value !== undefined && value !== "throw" && value !== "skip") {
    throw argumentError("options.onUncloneable", '"throw" or "skip"', value);
  }
}

/**
 * Why `value` would not arrive intact in another thread, or undefined if it
 * would; the reason names the place inside the value (`value.user.socket`).
 * `exact` also clones every object once, which catches what a walk cannot
 * see (a Proxy); Worker uses it, pools rely on the post failing instead.
 */
export function problemIn(value: unknown, exact = false): string | undefined {
  if (typeof value !== "object" && typeof value !== "function" && typeof value !== "symbol") {
    return undefined; // the common case, a string or a number: nothing to walk
  }
  let problem: string | undefined;
  try {
    problem = walk(value, "value", new Set());
  } catch (error) {
    // Reading it throws (a getter, a revoked Proxy): a clone would throw the same.
    return failed("value", error);
  }
  if (problem !== undefined || !exact || typeof value !== "object" || value === null) {
    return problem;
  }
  return cloneFailure(value, "value");
}

function walk(value: unknown, path: string, seen: Set<object>): string | undefined {
  if (typeof value === "function") return `${path} is a function`;
  if (typeof value === "symbol") return `${path} is a symbol`;
  if (typeof value !== "object" || value === null || seen.has(value)) return undefined;
  seen.add(value);
  const proto: object | null = Object.getPrototypeOf(value);
  if (proto !== null && KEPT.has(proto)) return undefined;
  const kind = kindOf(proto);
  if (kind !== undefined && KEPT_NAMES.has(kind)) return undefined;
  if (kind === "Map") {
    for (const [key, item] of value as Map<unknown, unknown>) {
      const problem = walk(key, `${path} (a Map key)`, seen) ?? walk(item, `${path}.get(…)`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (kind === "Set") {
    for (const item of value as Set<unknown>) {
      const problem = walk(item, `${path} (a Set item)`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (kind === "Object" || kind === "Array") {
    const isArray = Array.isArray(value);
    for (const key of Object.keys(value)) {
      const item: unknown = (value as Record<string, unknown>)[key];
      // A primitive has nothing to check: skip building the path a walk of
      // it would be given (for an array of 100,000 numbers, that path cost
      // twice the clone itself).
      if (typeof item !== "object" && typeof item !== "function" && typeof item !== "symbol") {
        continue;
      }
      const problem = walk(item, isArray ? `${path}[${key}]` : `${path}.${key}`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  return cloneProblem(value, path);
}

// What a walk enters value as: this realm's plain prototypes by identity (the
// common case), any other by builtInName.
function kindOf(proto: object | null): string | undefined {
  if (proto === null || proto === Object.prototype) return "Object";
  if (proto === Array.prototype) return "Array";
  if (proto === Map.prototype) return "Map";
  if (proto === Set.prototype) return "Set";
  return builtInName(proto);
}

// The name of the built-in whose prototype this is, of this realm or of
// another (a node:vm context's, a test runner's sandbox); undefined for any
// other prototype. Structured clone makes this realm's built-in of the same
// kind of another realm's, so its plain objects, arrays, Maps and Sets are
// entered as this realm's, and its Dates or typed arrays pass as they do,
// rather than being reported as losing their prototype.
function builtInName(proto: object): string | undefined {
  const ctor: unknown = (proto as { constructor?: unknown }).constructor;
  if (typeof ctor !== "function" || ctor.prototype !== proto) return undefined;
  if (!/\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(ctor))) {
    return undefined;
  }
  if (ctor.name === "Object" && Object.getPrototypeOf(proto) !== null) return undefined;
  if (ctor.name === "Array" && !Array.isArray(proto)) return undefined;
  return ctor.name;
}

// What was thrown, shown in the var's TransferError: an Error by its message,
// any other value as String() shows it, cut at 200 characters; a value that
// String() or a message getter throws on (an object with no prototype, a
// revoked Proxy) as describeValue shows it, so the TransferError still comes.
function failed(path: string, error: unknown): string {
  let reason: string;
  try {
    reason = error instanceof Error ? String(error.message) : String(error);
  } catch {
    reason = describeValue(error);
  }
  return `${path} cannot be cloned (${shorten(reason, 200)})`;
}

function cloneFailure(value: object, path: string): string | undefined {
  try {
    structuredClone(value);
    return undefined;
  } catch (error) {
    return failed(path, error);
  }
}

// An object of another prototype: fine if a clone keeps the prototype (Node's
// Blob), or has it in its chain (Node's SocketAddress and BlockList arrive as
// an internal subclass of theirs, with every method).
function cloneProblem(value: object, path: string): string | undefined {
  let copy: unknown;
  try {
    copy = structuredClone(value);
  } catch (error) {
    return failed(path, error);
  }
  const proto: object | null = Object.getPrototypeOf(value);
  const arrives: unknown = Object.getPrototypeOf(copy);
  if (
    arrives === proto ||
    (proto !== null && Object.prototype.isPrototypeOf.call(proto, copy as object))
  ) {
    return undefined;
  }
  const name = nameOf(proto) ?? "object";
  const article = startsWithVowelSound(name) ? "an" : "a";
  const plain = arrives === Object.prototype ? "object" : (nameOf(arrives) ?? "object");
  return `${path} is ${article} ${name}, which would arrive as a plain ${plain} without its prototype`;
}

// "an Error", "an Update", but "a User", "a Uint8Array", "a URL": a U read
// as "you" (before a consonant and a vowel, before an i, or in capitals).
function startsWithVowelSound(name: string): boolean {
  if (/^U(?:[A-Z]|[b-df-hj-np-tv-z][aeiouy]|i)/.test(name)) return false;
  return /^[aeiou]/i.test(name);
}

function nameOf(proto: unknown): string | undefined {
  return (proto as { constructor?: { name?: string } } | null)?.constructor?.name || undefined;
}

/** The options of `collectValues`. */
export interface CollectOptions {
  onUncloneable?: OnUncloneable | undefined;
  /** Also send what this thread received for names no var here has taken (nested workers). */
  passThrough: boolean;
  /** Clone every object value once to be sure (see problemIn). */
  exact: boolean;
}

/**
 * The `[name, value]` pairs of `context` that cross to a worker thread:
 * local-only vars are left out, an uncloneable value throws (or is left out).
 * @throws {TransferError} ERR_CONTEXTVAR_UNCLONEABLE, ERR_CONTEXTVAR_NAME_CLASH.
 */
export function collectValues(context: Context, options: CollectOptions): [string, unknown][] {
  const values: [string, unknown][] = [];
  const seen = new Map<string, unknown>();
  for (const [v, value] of context) {
    if (isLocalOnly(v)) continue;
    if (seen.has(v.name)) {
      // Two vars of one name holding the same value are not ambiguous (in a
      // worker, every var of an arrived name holds that value): send it once.
      if (Object.is(seen.get(v.name), value)) continue;
      throw contextError("ERR_CONTEXTVAR_NAME_CLASH", JSON.stringify(v.name), context.toString());
    }
    seen.set(v.name, value);
    const problem = problemIn(value, options.exact);
    if (problem !== undefined) {
      if (options.onUncloneable === "skip") continue;
      throw contextError("ERR_CONTEXTVAR_UNCLONEABLE", v.toString(), problem);
    }
    values.push([v.name, value]);
  }
  if (options.passThrough) {
    for (const [name, value] of unclaimedValues()) if (!seen.has(name)) values.push([name, value]);
  }
  return values;
}

/**
 * After a post failed to clone: the TransferError for the first value that
 * cannot be cloned, or undefined if every value can (the task was at fault).
 */
export function diagnose(values: CrossingValues): TransferError | undefined {
  for (const [name, value] of values) {
    if (typeof value !== "object" || value === null) continue;
    const problem = cloneFailure(value, "value");
    if (problem !== undefined) {
      return contextError(
        "ERR_CONTEXTVAR_UNCLONEABLE",
        `ContextVar(${JSON.stringify(name)})`,
        problem,
      );
    }
  }
  return undefined;
}
