/**
 * `ContextManager.bind(context, emitter)` for `ContextVarsContextManager`.
 * Internal: `contextvars/otel` does not export this file.
 *
 * OpenTelemetry's contract for a bound EventEmitter (the one its
 * `AbstractAsyncHooksContextManager` keeps) differs from the core's
 * `bindEmitter` in three ways, so the core's cannot serve:
 * - only the OpenTelemetry context is pinned, not the whole Context: a
 *   listener still sees the caller's ContextVars;
 * - two managers may bind the same emitter, each pinning its own context
 *   (the core keeps the first binding and ignores later ones);
 * - `removeAllListeners` forgets the wrappers too.
 * `once` is wrapped once: EventEmitter's own `once` adds its wrapper
 * through `this.on`, which passes that one through while `once` is adding.
 */
import type { EventEmitter } from "node:events";

type Listener = (...args: unknown[]) => unknown;
type Method = (this: unknown, ...args: unknown[]) => unknown;
type ByListener = WeakMap<Listener, Listener>;

const ADDERS = ["addListener", "on", "once", "prependListener", "prependOnceListener"] as const;
const REMOVERS = ["removeListener", "off"] as const;

/**
 * The method a patched one calls through. An own method is kept as it is; an
 * inherited one is looked up on the prototype at each call, because the
 * prototype may change after the bind: instrumentation-http binds `req` and
 * `res` before the listener runs, then Express swaps their prototypes for its
 * app's, whose methods contextvars/express patches to run listeners in the
 * request's Context. A method kept from bind time would skip both.
 */
function underlying(target: Record<string, Method | undefined>, name: string): Method | undefined {
  const method = target[name];
  if (typeof method !== "function") return undefined;
  if (Object.hasOwn(target, name)) return method;
  return function (this: unknown, ...args: unknown[]): unknown {
    const current = (Object.getPrototypeOf(this) as Record<string, Method | undefined>)[name];
    return Reflect.apply(current ?? method, this, args);
  };
}

// Each wrapper's listener, kept on the wrapper: a wrapper filed under a
// listener that it does not wrap (filed under the `.listener` of the one it
// does) is not reused for it. Not a WeakMap: one entry per listener added,
// most of them on a request's req and res, cost about as much as the rest of
// binding the emitter (entries die young, and each collection walks them).
const WRAPS = Symbol("contextvars.otel.wraps");
type Wrapper = Listener & { [WRAPS]?: Listener };

/**
 * An event name as EventEmitter files it, a property key (`1` and `"1"` are
 * one event), so that listeners are found by any name it takes as the same.
 */
function keyOf(event: unknown): string | symbol {
  return typeof event === "symbol" ? event : String(event);
}

/** One manager's record of the emitters it bound: per emitter, per event, listener → wrapper. */
export class EmitterBindings {
  readonly #patched = new WeakMap<EventEmitter, Map<string | symbol, ByListener>>();
  // The wrapper a patched adder is adding. EventEmitter's own `once` adds it again
  // through `this.on`, inside a once-wrapper whose `.listener` it is, which must
  // not be wrapped twice; any other listener added meanwhile (by a `newListener`
  // listener) is wrapped as usual.
  #adding: Listener | undefined = undefined;

  #isBeingAdded(listener: Listener): boolean {
    const adding = this.#adding;
    if (adding === undefined) return false;
    if (listener === adding) return true;
    // Through another manager's wrappers, when two have bound the emitter.
    let inner = (listener as { listener?: unknown }).listener;
    while (typeof inner === "function") {
      if (inner === adding) return true;
      inner = (inner as Wrapper)[WRAPS];
    }
    return false;
  }

  /**
   * Patches `emitter` so that every listener added from now on runs through
   * `wrap(listener)`. Binding the same emitter twice keeps the first wrap.
   */
  bind<E extends EventEmitter>(emitter: E, wrap: (listener: Listener) => Listener): E {
    if (this.#patched.has(emitter)) return emitter;
    this.#patched.set(emitter, new Map());
    const target = emitter as unknown as Record<string, Method | undefined>;
    for (const name of ADDERS) {
      const original = underlying(target, name);
      if (original !== undefined) target[name] = this.#adder(emitter, original, wrap);
    }
    for (const name of REMOVERS) {
      const original = underlying(target, name);
      if (original !== undefined) target[name] = this.#remover(emitter, original);
    }
    const removeAll = underlying(target, "removeAllListeners");
    if (removeAll !== undefined) {
      target.removeAllListeners = this.#removeAll(emitter, removeAll);
    }
    return emitter;
  }

  #adder(emitter: EventEmitter, original: Method, wrap: (l: Listener) => Listener): Method {
    const bindings = this;
    return function (this: unknown, event: unknown, listener: unknown): unknown {
      if (typeof listener !== "function" || bindings.#isBeingAdded(listener as Listener)) {
        return Reflect.apply(original, this, [event, listener]);
      }
      const events = bindings.#patched.get(emitter);
      const key = keyOf(event);
      let byListener = events?.get(key);
      if (byListener === undefined) {
        byListener = new WeakMap();
        events?.set(key, byListener);
      }
      // A listener added again gets the wrapper it already has: the emitter then
      // holds it twice, and each removal takes one, as it would take the listener.
      // A new wrapper would replace the one kept here, and the first could never go.
      const known = byListener.get(listener as Listener);
      const wrapped =
        known !== undefined && (known as Wrapper)[WRAPS] === listener
          ? known
          : wrap(listener as Listener);
      (wrapped as Wrapper)[WRAPS] = listener as Listener;
      byListener.set(listener as Listener, wrapped);
      // A wrapper that carries its original as `.listener` (Node's convention, which
      // contextvars/http's request binding follows when it adds through this method)
      // must go when that original is removed: Node's own check looks one level deep,
      // at this wrapper, and would not find it.
      const inner = (listener as { listener?: unknown }).listener;
      if (typeof inner === "function") byListener.set(inner as Listener, wrapped);
      const outer = bindings.#adding;
      bindings.#adding = wrapped;
      try {
        return Reflect.apply(original, this, [event, wrapped]);
      } finally {
        bindings.#adding = outer;
      }
    };
  }

  #remover(emitter: EventEmitter, original: Method): Method {
    const bindings = this;
    return function (this: unknown, event: unknown, listener: unknown): unknown {
      const byListener = bindings.#patched.get(emitter)?.get(keyOf(event));
      const wrapped = byListener?.get(listener as Listener);
      // A wrapper also filed under the `.listener` of the one it wraps (the
      // adder's note) goes from there too when that one is removed, as a
      // once-wrapper removes itself: a later removal of the original would
      // otherwise name this wrapper, gone already, and remove nothing.
      const inner = (listener as { listener?: unknown } | null)?.listener;
      if (
        wrapped !== undefined &&
        typeof inner === "function" &&
        byListener?.get(inner as Listener) === wrapped
      ) {
        byListener?.delete(inner as Listener);
      }
      return Reflect.apply(original, this, [event, wrapped ?? listener]);
    };
  }

  #removeAll(emitter: EventEmitter, original: Method): Method {
    const bindings = this;
    return function (this: unknown, ...args: unknown[]): unknown {
      const events = bindings.#patched.get(emitter);
      if (args.length === 0) events?.clear();
      else events?.delete(keyOf(args[0]));
      return Reflect.apply(original, this, args);
    };
  }
}
