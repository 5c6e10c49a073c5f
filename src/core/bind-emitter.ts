import { argumentError } from "../errors.ts";
import { assertContext, bind } from "./bind.ts";
import type { Context } from "./context.ts";
import { copyContext } from "./current.ts";

type Listener = (...args: unknown[]) => unknown;

/**
 * What bindEmitter takes: an EventEmitter of `node:events` (or one with its
 * methods, such as the `events` package's in a browser). Written out rather
 * than imported from `node:events`, so that the core's declarations compile
 * in a project without Node's types.
 */
export interface EventEmitterLike {
  on(eventName: string | symbol, listener: Listener): unknown;
  addListener(eventName: string | symbol, listener: Listener): unknown;
  once(eventName: string | symbol, listener: Listener): unknown;
  prependListener(eventName: string | symbol, listener: Listener): unknown;
  prependOnceListener(eventName: string | symbol, listener: Listener): unknown;
  removeListener(eventName: string | symbol, listener: Listener): unknown;
  off(eventName: string | symbol, listener: Listener): unknown;
  removeAllListeners(eventName?: string | symbol): unknown;
  emit(eventName: string | symbol, ...args: unknown[]): boolean;
  listeners(eventName: string | symbol): Function[];
  rawListeners(eventName: string | symbol): Function[];
  listenerCount(eventName: string | symbol): number;
}

type Adder = (this: unknown, event: string | symbol, listener: unknown) => unknown;

/** What a listener wrapper carries, as Node's once-wrappers do. */
interface Wrapped extends Listener {
  listener: Listener;
}

/**
 * Gives the wrapper just added for `event` (first if `prepended`), when it is
 * another library's with no `.listener` (ours always carry one), the
 * original as `.listener`, Node's convention: EventEmitter looks one level
 * deep, so removeListener(event, original), listeners() and
 * listenerCount(event, original) would otherwise not see past it, and the
 * listener could never be removed (nor could events.once's error listener).
 * Its own removeListener still finds it when our once-wrapper removes
 * itself. Internal (contextvars/http's request binding uses it too).
 */
export function nameOriginal(
  emitter: Pick<EventEmitterLike, "rawListeners">,
  event: string | symbol,
  prepended: boolean,
  original: Listener,
): void {
  const held = emitter.rawListeners(event);
  const added = (prepended ? held[0] : held[held.length - 1]) as
    | (Function & { listener?: Listener })
    | undefined;
  if (typeof added === "function" && added.listener === undefined) added.listener = original;
}

// Emitters already bound: binding again keeps the first Context (as OpenTelemetry's managers do).
const boundEmitters = new WeakSet<object>();

/**
 * The `on` methods of this package's other emitter binding (the
 * integrations' binding of req and res), each with how it finds the Context
 * an emitter is bound to. Internal. An emitter bound there already counts
 * as bound: wrapped again, a listener would sit two wrappers deep, past
 * where EventEmitter's one-level `.listener` check finds it, and
 * removeListener(event, listener) would remove nothing.
 */
export const requestAdders = new WeakMap<Function, (emitter: object) => Context | undefined>();

/**
 * The same question for an emitter whose own `on` is none of those: another
 * library's, put on it over the integration's methods, which it calls
 * (cls-hooked's bindEmitter, or an OpenTelemetry manager's bind, on a `req`
 * Express's contextMiddleware bound). Set by the integrations' binding when
 * loaded; asked only by bindEmitter, so a plain emitter pays one hasOwn.
 */
let requestBindingOf: (emitter: object) => Context | undefined = () => undefined;

/** Sets how bindEmitter finds the request an integration bound an emitter to. Internal. */
export function findRequestBindingsWith(lookup: (emitter: object) => Context | undefined): void {
  requestBindingOf = lookup;
}
// The wrappers of listeners added with on/prependListener: where a plain emitter
// holds the listener itself, and so reports it, these stand in for it.
const standIns = new WeakSet<Function>();

/**
 * Makes every listener added to `emitter` from now on run as
 * `bind(listener, context)` would: in a fresh copy of `context` (default: the
 * Context current now), not in the Context of the code that calls `emit`.
 *
 * A plain EventEmitter calls its listeners synchronously inside `emit`, so they
 * see the emitter's Context: a `req.on("end")` listener sees whatever Context
 * the stream's I/O callback runs in, which is how body parsers lose context.
 * The emitter still reports the listeners it was given: `removeListener`/`off`,
 * `listeners()`, `listenerCount(event, listener)` and the `newListener` and
 * `removeListener` events (from `removeAllListeners` too) see the original
 * listener, as a plain emitter's would (which, for a `once` listener among
 * others removed by `removeAllListeners`, is Node's once-wrapper, whose
 * `.listener` is the original). Returns the emitter. Binding again keeps the
 * first Context, and a `req` or `res` an integration has bound to its
 * request is bound already.
 *
 * @example
 * bindEmitter(req).on("end", () => log(requestId.get()));
 * @throws {TypeError} if emitter is not an EventEmitter or context is not a Context.
 */
export function bindEmitter<E extends EventEmitterLike>(emitter: E, context?: Context): E {
  if (typeof emitter !== "object" || emitter === null || typeof emitter.on !== "function") {
    throw argumentError("emitter", "an EventEmitter", emitter);
  }
  assertContext("context", context);
  if (boundEmitters.has(emitter)) return emitter;
  // An emitter whose on() is its own was bound before by another library (an
  // OpenTelemetry context manager's bind, as instrumentation-http does to req
  // and res): what we add through it is wrapped again, in a wrapper of its own.
  const ownOn = Object.hasOwn(emitter, "on");
  const requestAdder = requestAdders.get(emitter.on);
  const request =
    requestAdder !== undefined
      ? requestAdder(emitter)
      : ownOn
        ? requestBindingOf(emitter)
        : undefined;
  if (request !== undefined) return emitter;
  const snapshot = context ?? copyContext();
  const target = emitter as unknown as Record<string, Adder | undefined>;
  const on = target.on as Adder;
  const prepend = target.prependListener;
  const { removeAllListeners: removeAll, rawListeners } = emitter as Partial<EventEmitterLike>;
  const stacked = ownOn && typeof rawListeners === "function";

  // Each wrapper carries the original in its `listener` field, as Node's own
  // once-wrappers do: EventEmitter matches that field in removeListener and
  // reports it from listeners(), so no table from listeners to wrappers is
  // kept (one would grow with every event name ever used) and event names
  // compare as Node compares them.
  const adder = (add: Adder, once: boolean): Adder =>
    function (this: unknown, event: string | symbol, listener: unknown): unknown {
      if (typeof listener !== "function") return Reflect.apply(add, this, [event, listener]);
      const original = listener as Listener;
      const bound = bind(original, snapshot);
      // Once-semantics written here rather than through the native once,
      // whose wrapper would go through the patched on() and be wrapped again.
      let fired = false;
      const wrapped = (
        once
          ? function (this: unknown, ...args: unknown[]): unknown {
              if (fired) return undefined;
              fired = true;
              emitter.removeListener(event, wrapped);
              return Reflect.apply(bound, this, args);
            }
          : bound
      ) as Wrapped;
      wrapped.listener = original;
      if (!once) standIns.add(wrapped);
      const result = Reflect.apply(add, this, [event, wrapped]);
      if (stacked) nameOriginal(emitter, event, add === prepend, original);
      return result;
    };

  target.on = adder(on, false);
  target.addListener = target.on;
  target.once = adder(on, true);
  if (typeof prepend === "function") {
    target.prependListener = adder(prepend, false);
    target.prependOnceListener = adder(prepend, true);
  }
  // removeAllListeners(event), when something listens for "removeListener", calls
  // removeListener with each listener as the emitter holds it, and a listener
  // held among others is reported as passed: ours would be reported as their
  // wrappers. Each is removed here as a plain emitter would remove it, last
  // first, through the listener it was given. (With no event, Node calls this
  // once per event name.)
  if (typeof removeAll === "function" && typeof rawListeners === "function") {
    emitter.removeAllListeners = function (this: E, ...event: [(string | symbol)?]): E {
      if (event.length === 0 || this.listenerCount("removeListener") === 0) {
        return Reflect.apply(removeAll, this, event) as E;
      }
      const name = event[0] as string | symbol;
      const held = this.rawListeners(name);
      for (let i = held.length - 1; i >= 0; i--) {
        const listener = held[i] as Wrapped;
        this.removeListener(name, standIns.has(listener) ? listener.listener : listener);
      }
      return this;
    };
  }
  boundEmitters.add(emitter);
  return emitter;
}
