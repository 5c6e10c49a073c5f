/**
 * Binds a request's `req` and `res` to the request's Context. Internal.
 *
 * Node emits `data`, `end`, `finish`, `close` and a pipe's `drain` from
 * socket callbacks, which run in the Context of the connection (the
 * server's), not of the request: a body parser's `end` listener would see
 * none of the request's values. After `bindToRequest(req, context)` every
 * listener added to `req` runs in `context` itself.
 *
 * Why not the core's `bindEmitter`
 * --------------------------------
 * `bindEmitter` runs each listener in a fresh *copy* of its Context, which
 * is right for a callback handed to foreign code, but a request's listeners
 * are the request continuing: a parser that calls `next()` from `end` would
 * move the rest of the request into a copy, and sets made after it would
 * never reach the request's `finish` listeners. It also costs 1–2 µs per
 * emitter and 2–4 µs per listener on Node 20 (a WeakSet entry, seven
 * closures, a Map; a `name` defined on every wrapper), twice per request.
 * Here a listener gets one wrapper that carries the original as `.listener`,
 * the convention Node's own `once` uses, so `removeListener(event, original)`
 * and `listeners()` work without patching the removers.
 *
 * Two ways to patch
 * -----------------
 * `bindToRequest`: five own methods, shared by every request, and a record
 * under a symbol: cheap on `req` and `res` as Node makes them.
 * `bindPrototype`: for Express, which has swapped the prototypes of `req`
 * and `res` for the app's `app.request`/`app.response` by the time its
 * middleware runs. V8 then takes a slow path for every property added to the
 * object (about 5 µs each on Node 20) and swapping the prototype again slows
 * Node's own code on the object, both measured with bench/http, so nothing
 * is added to the object: the five methods are installed once on the app's
 * prototype object (Express's documented place to extend `req` and `res`)
 * and find each request's Context through a lookup. A sub-app mounted with
 * `app.use` inherits them (Express chains its prototypes to the parent's on
 * "mount"); one reached through a Router has its own, patched only if the
 * middleware is mounted on it too.
 */
import { EventEmitter } from "node:events";
import { carrier } from "../carrier/select.ts";
import { findRequestBindingsWith, nameOriginal, requestAdders } from "../core/bind-emitter.ts";
import type { Context } from "../core/context.ts";

type Listener = (...args: unknown[]) => unknown;
type Method = (this: unknown, event: string | symbol, listener: Listener) => unknown;

/** What a listener wrapper carries, as Node's once-wrappers do. */
interface Wrapped extends Listener {
  listener: Listener;
}

/** The methods the emitter had before it was bound; new listeners go through them. */
interface Base {
  readonly on: Method;
  readonly prependListener: Method;
}

const adderNames = ["on", "addListener", "prependListener", "once", "prependOnceListener"] as const;
type AdderName = (typeof adderNames)[number];
/** Finds what an emitter is bound to (undefined: not bound). */
export type Lookup<T> = (self: EventEmitter) => T | undefined;

const binding = Symbol("contextvars.requestBinding");

interface OwnBinding extends Base {
  readonly context: Context;
}

interface Bound {
  [binding]?: OwnBinding;
}

// Prototype objects already patched by bindPrototype.
const patchedPrototypes = new WeakSet<object>();
// How each of them finds the Context of an emitter that inherits from it.
const prototypeLookups = new WeakMap<object, Lookup<Context>>();
// The `on` that bindPrototype installs on each of them.
const prototypeAdders = new WeakSet<object>();

function applyIn(fn: Listener, self: unknown, args: unknown[]): unknown {
  return Reflect.apply(fn, self, args);
}

function wrap(context: Context, listener: Listener): Wrapped {
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    return carrier.run(context, applyIn, listener, this, args);
  } as Wrapped;
  wrapped.listener = listener;
  return wrapped;
}

// Once-semantics written here rather than through the native `once`, whose
// wrapper would be wrapped again by `on` and then not be found by removeListener.
function wrapOnce(
  emitter: EventEmitter,
  event: string | symbol,
  context: Context,
  listener: Listener,
): Wrapped {
  let fired = false;
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    if (fired) return undefined;
    fired = true;
    emitter.removeListener(event, wrapped);
    return carrier.run(context, applyIn, listener, this, args);
  } as Wrapped;
  wrapped.listener = listener;
  return wrapped;
}

/** One patched adder: `prepend` and `once` pick which of the five it is. */
function adder(prepend: boolean, once: boolean, baseOf: Lookup<Base>, contextOf: Lookup<Context>) {
  return function (this: EventEmitter, event: string | symbol, listener: Listener): EventEmitter {
    // Not bound (the method reached another emitter): behave as EventEmitter does.
    const base = baseOf(this) ?? EventEmitter.prototype;
    const method = (prepend ? base.prependListener : base.on) as Method;
    const context = contextOf(this);
    // Not a function: let the emitter's own method throw its usual TypeError.
    if (context === undefined || typeof listener !== "function") {
      Reflect.apply(method, this, [event, listener]);
      return this;
    }
    const wrapped = once ? wrapOnce(this, event, context, listener) : wrap(context, listener);
    Reflect.apply(method, this, [event, wrapped]);
    return this;
  };
}

function install(
  target: Record<AdderName, unknown>,
  baseOf: Lookup<Base>,
  contextOf: Lookup<Context>,
): void {
  const on = adder(false, false, baseOf, contextOf);
  requestAdders.set(on, contextOf as (emitter: object) => Context | undefined);
  target.on = on;
  target.addListener = on;
  target.prependListener = adder(true, false, baseOf, contextOf);
  target.once = adder(false, true, baseOf, contextOf);
  target.prependOnceListener = adder(true, true, baseOf, contextOf);
}

// The "own" strategy's methods, shared by every emitter bound that way.
const ownMethods = {} as Record<AdderName, Method>;
install(
  ownMethods,
  (self) => (self as Bound)[binding],
  (self) => (self as Bound)[binding]?.context,
);

// The methods for an emitter another library bound first, whose own `on`
// wraps what ours pass it again (an OpenTelemetry context manager's, which
// instrumentation-http puts on req and res before the listener runs):
// EventEmitter looks one `.listener` deep, so without the original named on
// that library's wrapper, removeListener(event, listener) would remove
// nothing and events.once would leave its error listener behind. Apart from
// ownMethods so that a request no other library bound pays nothing for it.
const stackedMethods = {} as Record<AdderName, Method>;
for (const name of adderNames) {
  const plain = ownMethods[name];
  const prepended = name.startsWith("prepend");
  stackedMethods[name] = function (this: unknown, event, listener) {
    Reflect.apply(plain, this, [event, listener]);
    if (typeof listener === "function") {
      nameOriginal(this as EventEmitter, event, prepended, listener as Listener);
    }
    return this;
  };
}
requestAdders.set(stackedMethods.on, (self) => (self as Bound)[binding]?.context);

/**
 * Makes every listener added to `emitter` from now on run in `context`
 * (the Context itself, not a copy). Binding twice keeps the first Context.
 */
export function bindToRequest(emitter: EventEmitter, context: Context): void {
  const target = emitter as EventEmitter & Bound;
  if (target[binding] !== undefined) return;
  target[binding] = {
    context,
    on: target.on as unknown as Method,
    prependListener: target.prependListener as unknown as Method,
  };
  const chosen = Object.hasOwn(target, "on") ? stackedMethods : ownMethods;
  const methods = target as unknown as Record<AdderName, Method>;
  methods.on = chosen.on;
  methods.addListener = chosen.addListener;
  methods.prependListener = chosen.prependListener;
  methods.once = chosen.once;
  methods.prependOnceListener = chosen.prependOnceListener;
}

/**
 * Makes the listeners `emitter` already had for `event` when it was bound
 * run in its Context too, as those added later do; their order is kept. For
 * a framework that adds its own before the request's Context exists
 * (Fastify's response listeners). Call it after `bindToRequest`.
 */
export function bindEarlierListeners(emitter: EventEmitter, event: string): void {
  const earlier = emitter.rawListeners(event) as Listener[];
  if (earlier.length === 0) return;
  emitter.removeAllListeners(event);
  for (const listener of earlier) {
    // A native once-wrapper: added again as the once-listener it wraps, so
    // that removeListener(event, original) still finds it.
    const original = (listener as Partial<Wrapped>).listener;
    if (typeof original === "function") emitter.once(event, original);
    else emitter.on(event, listener);
  }
}

/** The Context `bindToRequest` bound `emitter` to, if it did. */
export function boundContextOf(emitter: object): Context | undefined {
  return (emitter as Bound)[binding]?.context;
}

// For bindEmitter, on an emitter whose `on` is another library's, over ours:
// bound itself, or through a prototype patched by bindPrototype (on the
// chain, as an Express sub-app's prototypes are chained to the app's).
findRequestBindingsWith((emitter) => {
  const own = boundContextOf(emitter);
  if (own !== undefined) return own;
  for (let p = Object.getPrototypeOf(emitter); p !== null; p = Object.getPrototypeOf(p)) {
    const contextOf = prototypeLookups.get(p);
    if (contextOf !== undefined) return contextOf(emitter as EventEmitter);
  }
  return undefined;
});

/**
 * Patches a prototype object once (later calls with it do nothing): every
 * emitter that inherits from it runs the listeners added to it from then on
 * in `contextOf(emitter)`, or, where that is undefined, as before. A
 * prototype that inherits the methods of one patched already is left as it
 * is: those bind its emitters, through that prototype's `contextOf`. One
 * that is no emitter's (has no `on`) is not patched.
 */
export function bindPrototype(prototype: object, contextOf: Lookup<Context>): void {
  if (patchedPrototypes.has(prototype)) return;
  const base = prototype as Base;
  // No emitter's (Express's middleware given a Fastify hook's request and
  // reply): listener methods installed there would call an `on` that is not
  // there, on every request of that framework.
  if (typeof base.on !== "function") return;
  patchedPrototypes.add(prototype);
  prototypeLookups.set(prototype, contextOf);
  // An Express sub-app's prototypes, chained to its parent's on mount: methods
  // installed over the parent's would wrap each listener twice, and
  // removeListener(event, original) (a pipe's unpipe) would no longer find it.
  if (prototypeAdders.has(base.on)) return;
  const methods: Base = { on: base.on, prependListener: base.prependListener };
  // An emitter bound itself too (bindToRequest over another library's own
  // methods, which call these when that library bound it after Express swapped
  // its prototype: cls-hooked's bindEmitter, or an OpenTelemetry manager's bind,
  // in a middleware mounted before contextMiddleware) reaches here with the
  // listener wrapped already: wrapped again, it would sit past EventEmitter's
  // one-level `.listener` check, and removeListener(event, listener) would
  // remove nothing. One property read per listener added.
  const unlessBoundItself: Lookup<Context> = (self) =>
    (self as Bound)[binding] === undefined ? contextOf(self) : undefined;
  install(prototype as Record<AdderName, unknown>, () => methods, unlessBoundItself);
  prototypeAdders.add(base.on); // the adder just installed
}
