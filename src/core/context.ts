import { carrier } from "../carrier/select.ts";
import { argumentError, assertFunction, contextError, describeValue, ownClass } from "../errors.ts";
import { Hamt, NOT_FOUND } from "../map/hamt.ts";
import { hashKey } from "../map/hash.ts";
import type { ContextVar } from "./context-var.ts";
import { type InspectFn, innerOptions, inspectCustom, show, whileShowing } from "./inspect.ts";

// A module-local alias: an imported binding is read through the exporting
// module's cell, with a check that it has been initialised, on every call.
const slot = carrier;
const assertFn: typeof assertFunction = assertFunction;

/** The mapping a Context holds. Internal. */
export type Mapping = Hamt<ContextVar<unknown>, unknown>;

/** What a task leaves on its Context so `currentTask()` can find it. Internal. */
export interface TaskSlot {
  readonly name: string;
}

let contextIds = 0;
// Numbers given to Contexts when first shown. Kept outside the Context, so
// that copyContext() allocates and sets nothing it does not need.
const shownIds = new WeakMap<Context, number>();
// Lets contextWith use the constructor; user code cannot pass it.
const internal = Symbol("contextvars.internal");
// The constructor as contextWith and copyOf call it. Not an overload: the
// public type (and so the .d.ts, IntelliSense and the errors users see)
// has only `new Context()`.
type InternalConstructor = new (
  guard: typeof internal,
  map: Mapping,
  task: TaskSlot | undefined,
  mapId: number,
) => Context;

// Internal access to a Context's fields for the other core modules (ContextVar,
// copyContext, tasks). Set in the class's static block: private fields stay
// private to users, and these stay out of the package's exports.
export let mapOf: (context: Context) => Mapping;
/** The id of the mapping a Context holds (`mapOf(context).id`, one load nearer). Internal. */
export let mapIdOf: (context: Context) => number;
export let setMapOf: (context: Context, map: Mapping) => void;
export let taskOf: (context: Context) => TaskSlot | undefined;
export let setTaskOf: (context: Context, task: TaskSlot | undefined) => void;
/** A new Context over `map`, remembering `task` (a copy of a Context keeps its task). */
export let contextWith: (map: Mapping, task: TaskSlot | undefined) => Context;
/** A new Context with `context`'s mapping and task: `context.copy()`, without the method call. */
export let copyOf: (context: Context) => Context;
/**
 * Whether value is a Context: a brand check, which `instanceof` is not (an
 * `Object.create(Context.prototype)`, or a Proxy of a Context, passes it and
 * then fails at the first private field, after a caller's side effects). Internal.
 */
export let isContext: (value: unknown) => value is Context;

// Map's own iterator types, whatever the TypeScript lib that reads the
// declarations calls them: MapIterator from TypeScript 5.6, IterableIterator
// before it. Naming MapIterator directly made the shipped .d.ts fail to
// type-check (with skipLibCheck off) on TypeScript 5.5 and older.
type VarMap = Map<ContextVar<unknown>, unknown>;
type EntryIterator = ReturnType<VarMap["entries"]>;
type KeyIterator = ReturnType<VarMap["keys"]>;
type ValueIterator = ReturnType<VarMap["values"]>;

// The mapping of `new Context()`. As CPython's Context(), an argument (a
// mapping, as given to new Map()) is refused, not dropped, which would leave
// the caller an empty Context. Checked here, out of the constructor, which
// every copy goes through: in line, the check made copyContext() 1.16-1.33x
// what it was (bench/copy.bench.ts); so is `arguments.length` out.
function emptyMapping(given: unknown): Mapping {
  if (given !== undefined) {
    throw new TypeError(
      `new Context() takes no arguments, got ${describeValue(given)}; a Context starts empty: set values inside its run, ctx.run(() => v.set(value))`,
    );
  }
  return Hamt.empty();
}

function assertVar(
  key: unknown,
  context: Context,
  method: string,
): asserts key is ContextVar<unknown> {
  if (typeof key !== "object" || key === null || !(hashKey in key)) {
    throw argumentError("var", "a ContextVar", key, `${context}.${method}()`);
  }
}

/**
 * A mapping of ContextVars to their values: a mutable cell over an immutable
 * map. `ctx.run(fn)` makes it current; `copy()` is O(1); reading is Map-like.
 *
 * @example
 * const user = new ContextVar<string>("user");
 * const ctx = new Context();
 * ctx.run(() => user.set("alice"));
 * ctx.get(user); // "alice"
 */
export class Context implements ReadonlyMap<ContextVar<unknown>, unknown> {
  #map: Mapping;
  // #map.id, kept beside it: ContextVar#get's cache compares it, and reading
  // it here saves a dependent load on the hottest path.
  #mapId: number;
  #entered = false;
  #task: TaskSlot | undefined;

  /** An empty Context. @throws {TypeError} if given an argument (a mapping, as to new Map()). */
  constructor();
  // contextWith's path (InternalConstructor): the fields are set once, not initialised and then overwritten.
  constructor(guard?: typeof internal, map?: Mapping, task?: TaskSlot, mapId?: number) {
    if (guard === internal) {
      this.#map = map as Mapping;
      this.#mapId = mapId as number;
      this.#task = task;
    } else {
      this.#map = emptyMapping(guard);
      this.#mapId = this.#map.id;
      this.#task = undefined;
    }
  }

  static {
    ownClass(Context);
    mapOf = (context) => context.#map;
    mapIdOf = (context) => context.#mapId;
    setMapOf = (context, map) => {
      context.#map = map;
      context.#mapId = map.id;
    };
    taskOf = (context) => context.#task;
    setTaskOf = (context, task) => {
      context.#task = task;
    };
    contextWith = (map, task) => new (Context as InternalConstructor)(internal, map, task, map.id);
    // The copied Context's id is read beside its map, not through it.
    copyOf = (context) =>
      new (Context as InternalConstructor)(internal, context.#map, context.#task, context.#mapId);
    isContext = (value): value is Context =>
      typeof value === "object" && value !== null && #map in value;
  }

  /**
   * Calls `fn(...args)` with this Context current, for fn and for every
   * asynchronous continuation it starts; the previous Context is current
   * again when fn returns or throws. Sets made inside stay in this Context.
   * @throws {ContextEnteredError} ERR_CONTEXT_ENTERED if a run of this Context is already in progress (recursion).
   * @throws {TypeError} if fn is not a function.
   */
  run<A extends unknown[], R>(fn: (this: void, ...args: A) => R, ...args: A): R;
  run<R>(fn: (...args: unknown[]) => R): R {
    // Entered means "a synchronous run of it is in progress" (recursion), as the
    // contract fixes it. An async continuation that already runs in this
    // Context may run it again: it only makes current what already is.
    // Checked before fn, in CPython's order (context_run): a missing fn, then
    // an entered Context, and only then a fn that cannot be called.
    if (this.#entered) {
      // biome-ignore lint/complexity/noArguments: ctx.run() and ctx.run(undefined) differ here
      if (arguments.length === 0) assertFn("fn", fn, this, "run");
      throw contextError("ERR_CONTEXT_ENTERED", this.toString());
    }
    assertFn("fn", fn, this, "run");
    this.#entered = true;
    try {
      // `arguments`, not a rest parameter: without arguments (the usual case)
      // no array is made here, only the carrier's own.
      // biome-ignore lint/complexity/noArguments: see above
      if (arguments.length === 1) return slot.run(this, fn);
      // biome-ignore lint/complexity/noArguments: see above
      const args = Array.prototype.slice.call(arguments, 1) as unknown[];
      return slot.run(this, fn, ...args);
    } finally {
      this.#entered = false;
    }
  }

  #shownId(): number {
    let id = shownIds.get(this);
    if (id === undefined) {
      id = ++contextIds;
      shownIds.set(this, id);
    }
    return id;
  }

  /** A new Context with the same values, in O(1): later sets in either are not seen by the other. */
  copy(): Context {
    return copyOf(this);
  }

  /**
   * The var's value in this Context, else `fallback` (or undefined).
   * @throws {TypeError} if v is not a ContextVar.
   */
  get<T>(v: ContextVar<T>): T | undefined;
  get<T, D>(v: ContextVar<T>, fallback: D): T | D;
  get<T, D>(v: ContextVar<T>, fallback?: D): T | D | undefined {
    assertVar(v, this, "get");
    const value = this.#map.get(v as ContextVar<unknown>);
    return value === NOT_FOUND ? fallback : (value as T);
  }

  /**
   * Whether the var has a value in this Context (its default does not count).
   * @throws {TypeError} if v is not a ContextVar.
   */
  has(v: ContextVar<unknown>): boolean {
    assertVar(v, this, "has");
    return this.#map.has(v);
  }

  /** How many vars have a value in this Context. */
  get size(): number {
    return this.#map.size;
  }

  /** [var, value] pairs, in a stable order that depends only on which vars are set. */
  entries(): EntryIterator {
    return this.#map.toArray()[Symbol.iterator]() as EntryIterator;
  }

  /** The vars that have a value here. */
  keys(): KeyIterator {
    return this.#map
      .toArray()
      .map(([key]) => key)
      [Symbol.iterator]() as KeyIterator;
  }

  /** The values, in the same order as keys(). */
  values(): ValueIterator {
    return this.#map
      .toArray()
      .map(([, value]) => value)
      [Symbol.iterator]() as ValueIterator;
  }

  /** Calls fn(value, var, this) for every var that has a value, as Map#forEach. */
  forEach(
    fn: (value: unknown, key: ContextVar<unknown>, context: Context) => void,
    thisArg?: unknown,
  ): void {
    assertFn("fn", fn, this, "forEach");
    // Called as Map#forEach calls it, not through fn.call, which fn may have replaced.
    this.#map.forEach((value, key) => {
      Reflect.apply(fn, thisArg, [value, key, this]);
    });
  }

  [Symbol.iterator](): EntryIterator {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Context";
  }

  /** `<Context #3 size=2>`: an id that tells Contexts apart in messages and logs. */
  toString(): string {
    return `<Context #${this.#shownId()} size=${this.#map.size}>`;
  }

  [inspectCustom](depth: number, options: object, inspect?: InspectFn): string {
    const label = `Context #${this.#shownId()}`;
    if (depth < 0) return `[${label}]`;
    const inner = innerOptions(depth, options);
    const fields = whileShowing(this, () =>
      this.#map
        .toArray()
        .map(([v, value]) => `${keyOf(v.name, inspect)}: ${show(value, inspect, inner)}`),
    );
    return fields.length === 0 ? `${label} {}` : `${label} { ${fields.join(", ")} }`;
  }
}

// A var's name as an object key is written: bare when it is an identifier,
// else quoted and escaped, so that no name can make the output ambiguous.
function keyOf(name: string, inspect: InspectFn | undefined): string {
  if (/^[A-Za-z_$][\w$]*$/.test(name)) return name;
  return inspect === undefined ? JSON.stringify(name) : inspect(name);
}
