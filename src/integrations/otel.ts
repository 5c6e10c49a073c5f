/**
 * `contextvars/otel`: OpenTelemetry on this package's Contexts. An
 * OpenTelemetry `ContextManager` whose active context is a ContextVar, and
 * helpers that carry chosen ContextVars and the trace across services as
 * W3C `baggage` and `traceparent` (re-exported from `./propagation.ts`).
 */
import { EventEmitter } from "node:events";
import {
  type ContextManager,
  context as contextApi,
  createContextKey,
  type Context as OtelContext,
  ROOT_CONTEXT,
} from "@opentelemetry/api";
import { type Context, mapOf, setMapOf } from "../core/context.ts";
import { ContextVar } from "../core/context-var.ts";
import { currentContext, rootContext } from "../core/current.ts";
import { MISSING } from "../core/missing.ts";
import type { Token } from "../core/token.ts";
import { argumentError } from "../errors.ts";
import { EmitterBindings } from "./otel-emitter.ts";
import { provideActivation } from "./propagation.ts";
import { inheritIntoRequests } from "./request-scope.ts";

export {
  type BaggageCodec,
  type BaggageField,
  baggageField,
  type ContextPropagation,
  codecs,
  contextPropagation,
  type ExtractedValues,
  type IncomingHeaders,
  type OutgoingHeaders,
  type PropagatedFields,
  type StringVar,
} from "./propagation.ts";

type Listener = (...args: unknown[]) => unknown;

/**
 * What `attach` returns (OpenTelemetry API 1.10's `ContextManagementToken`,
 * also disposable with `using`): `dispose()` makes active again the context
 * that was active before the attach.
 */
export interface AttachToken {
  /** Puts back the context active before the attach; a second call does nothing. Never throws. */
  dispose(): void;
  /** The same as `dispose()`, for `using`. */
  [Symbol.dispose](): void;
}

// The manager made or enabled last: the one `extractInto` tries first to make
// a trace active in. When it is not the global manager, every manager still
// alive is asked in turn: the global one may never have been enabled, and
// been made after another one.
let latest: WeakRef<ContextVarsContextManager> | undefined;
const everyManager = new Set<WeakRef<ContextVarsContextManager>>();
const collected = new FinalizationRegistry<WeakRef<ContextVarsContextManager>>((ref) => {
  everyManager.delete(ref);
});
let activate: (context: OtelContext) => boolean;
// A manager dropped without disable() takes its var out of the ones requests
// inherit: each would stay there for good, and every request would read it.
const dropped = new FinalizationRegistry<() => void>((forget) => forget());
// Vars disable() has let go of. A token attached before dispose()s after it
// into no var: its reset would put an earlier context back under one that
// nothing reads again, in a Context that may live as long as the process.
const retired = new WeakSet<ContextVar<OtelContext>>();
const PROBE = ROOT_CONTEXT.setValue(createContextKey("contextvars.probe"), true);
// A module-local alias for active(), which tracers and log mixins call on every
// span and line: an imported binding is read through the exporting module's
// cell, with a check that it has been initialised.
const root: OtelContext = ROOT_CONTEXT;
const readActive = (): OtelContext => contextApi.active();

function slotFor(): ContextVar<OtelContext> {
  // Local-only: an OpenTelemetry context holds functions and cannot cross to a worker thread.
  return new ContextVar<OtelContext>("opentelemetry.context", { transfer: false });
}

function callWith(fn: Function, self: unknown, args: unknown[]): unknown {
  return Reflect.apply(fn, self, args);
}

function forgetIn(context: Context, slot: ContextVar<OtelContext>): void {
  setMapOf(context, mapOf(context).delete(slot as ContextVar<unknown>));
}

// A class, not a closure per attach: a method costs nothing per token.
class Attached implements AttachToken {
  readonly #slot: ContextVar<OtelContext>;
  readonly #token: Token<OtelContext>;
  #disposed = false;

  constructor(slot: ContextVar<OtelContext>, token: Token<OtelContext>) {
    this.#slot = slot;
    this.#token = token;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (retired.has(this.#slot)) {
      forgetIn(currentContext(), this.#slot);
      return;
    }
    try {
      this.#slot.reset(this.#token);
    } catch {
      // TokenMismatchError: another Context. reset changes nothing when it throws.
      const previous = this.#token.oldValue;
      this.#slot.set(previous === MISSING ? root : previous);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * An OpenTelemetry `ContextManager` that keeps the active OpenTelemetry
 * context in a ContextVar, so spans follow this package's Contexts: a task
 * (`createTask`, `gather`, `TaskGroup`, `isolated`) gets the span that was
 * active when it was created as its parent, `copyContext()` and `bind()`
 * capture the span with every other var, and the process needs no second
 * AsyncLocalStorage. `with(ctx, fn)` is `ContextVar#run`: fn runs in
 * a copy of the caller's Context where the OpenTelemetry context is `ctx`.
 *
 * The price of carrying the span in the Context is a map insert per
 * `with`: about 2.2-2.5x AsyncLocalStorageContextManager's `with` + `active` on
 * Node 20 and 22, 1.1-1.2x on Node 24 and 26 (AsyncContextFrame), and about
 * 1.1x over a whole `startActiveSpan` (BENCHMARKS.md).
 *
 * Each instance has its own var, so two managers never see each other's
 * contexts. `disable()` forgets every context the manager holds (as
 * AsyncLocalStorage#disable does); the manager keeps working and needs no
 * `enable()` to start.
 *
 * @example
 * import { context, trace } from "@opentelemetry/api";
 * import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
 * import { gather } from "contextvars";
 * import { ContextVarsContextManager } from "contextvars/otel";
 *
 * context.setGlobalContextManager(new ContextVarsContextManager().enable());
 * const tracer = new BasicTracerProvider().getTracer("shop");
 * await tracer.startActiveSpan("checkout", async (span) => {
 *   // Both "price" spans are children of "checkout".
 *   await gather(
 *     () => tracer.startActiveSpan("price", (s) => s.end()),
 *     () => tracer.startActiveSpan("price", (s) => s.end()),
 *   );
 *   span.end();
 * });
 * @throws nothing of its own: `with` rethrows what fn throws.
 */
export class ContextVarsContextManager implements ContextManager {
  #slot: ContextVar<OtelContext> = slotFor();
  // A request opened inside `with` (instrumentation-http's server span) keeps that context.
  #forget = inheritIntoRequests(this.#slot as ContextVar<unknown>);
  readonly #emitters = new EmitterBindings();

  constructor() {
    dropped.register(this, this.#forget, this);
    const ref = new WeakRef(this);
    everyManager.add(ref);
    collected.register(this, ref);
    if (latest?.deref() === undefined) latest = ref;
  }

  /** The active OpenTelemetry context: the one in the current Context, else ROOT_CONTEXT. */
  active(): OtelContext {
    return this.#slot.get(root);
  }

  /**
   * Calls `fn.call(thisArg, ...args)` with `context` active, for fn and every
   * asynchronous continuation it starts, in a copy of the current Context;
   * the caller's active context is back when fn returns or throws.
   * @throws {TypeError} if fn is not a function; else whatever fn throws.
   */
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: OtelContext,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    // Checked here: the slot's run would name itself, ContextVar("opentelemetry.context"),
    // and callWith would fail in Reflect.apply, which names neither fn nor with().
    if (typeof fn !== "function") {
      throw argumentError("fn", "a function", fn, "ContextVarsContextManager.with()");
    }
    // A missing context (a saved one that was never set) is the root, as
    // AsyncLocalStorageContextManager's `getStore() ?? ROOT_CONTEXT` makes it.
    context ??= root;
    if (thisArg == null) {
      // No spread when there are no arguments: each rest array costs as much as the map insert.
      return args.length === 0
        ? this.#slot.run(context, fn as () => ReturnType<F>)
        : this.#slot.run(context, fn, ...args);
    }
    return this.#slot.run(context, callWith, fn, thisArg, args) as ReturnType<F>;
  }

  /**
   * Binds `target` to `context`: a function then runs with `context` active
   * whoever calls it; an EventEmitter runs every listener added from now on
   * with it. Anything else comes back unchanged. Only the OpenTelemetry
   * context is pinned; other ContextVars are the caller's.
   * @throws nothing: a target that is neither is returned as it is.
   */
  bind<T>(context: OtelContext, target: T): T {
    if (target instanceof EventEmitter) {
      return this.#emitters.bind(target, (listener) => this.#bindFunction(context, listener));
    }
    if (typeof target === "function") {
      return this.#bindFunction(context, target as unknown as Listener) as unknown as T;
    }
    return target;
  }

  #bindFunction(context: OtelContext, target: Listener): Listener {
    const manager = this;
    context ??= root; // as in with()
    const bound = function (this: unknown, ...args: unknown[]): unknown {
      return manager.#slot.run(context, callWith, target, this, args);
    };
    Object.defineProperty(bound, "length", { value: target.length, configurable: true });
    return bound;
  }

  /**
   * Makes `context` active for the rest of the current Context, as
   * `ContextVar#set` would (OpenTelemetry API 1.10's `context.attach()` calls
   * it): what runs in this Context from now on sees it, its awaits, timers
   * and promise callbacks included, until the token's `dispose()`. Prefer
   * `with`, which cannot be left undone.
   *
   * It is a `set`, with a set's reach. Inside a request of an integration, a
   * task or a `with`, it stays there. Two timer callbacks of one Context
   * share what either attaches, where AsyncLocalStorageContextManager, which
   * swaps its store for the rest of the current async chain, gives each
   * callback's chain its own: run such chains as tasks. In an async function
   * called directly, it reaches the caller, as it does there before the
   * first `await`.
   *
   * `dispose()` run in the Context that attached resets the set, whatever
   * was attached since (ContextVar#reset). Run in another Context (a task,
   * a copy), it makes the context from before the attach active there, as
   * AsyncLocalStorageContextManager's token does, and leaves the attaching
   * Context as it is. A token from before `disable()` only takes what the
   * manager held out of the Context it runs in; what is active stays.
   * @throws nothing; nor does dispose().
   */
  attach(context: OtelContext): AttachToken {
    const slot = this.#slot;
    // A missing context is the root, as in with().
    return new Attached(slot, slot.set(context ?? root));
  }

  /**
   * Marks this manager as the first one `contextPropagation(...).extractInto`
   * tries to make an incoming trace active in; it does so in whichever
   * manager is the global one, enabled or not. The manager works without
   * it. Returns this.
   * @throws nothing.
   */
  enable(): this {
    latest = new WeakRef(this);
    return this;
  }

  /**
   * Forgets every context this manager holds: `active()` is ROOT_CONTEXT
   * everywhere until the next `with`. A context attached and not disposed
   * in the Context `disable()` is called in, or in the root Context, is let
   * go at once; one in another Context still running (a task, a request),
   * when that Context finishes. Returns this.
   * @throws nothing.
   */
  disable(): this {
    this.#forget();
    // Out of the current Context too, which may outlive everything (the root does):
    // its map would keep an attached context under a var nothing reads again.
    // The root itself as well: it never finishes, wherever disable() is called.
    forgetIn(currentContext(), this.#slot);
    forgetIn(rootContext, this.#slot);
    retired.add(this.#slot);
    this.#slot = slotFor();
    this.#forget = inheritIntoRequests(this.#slot as ContextVar<unknown>);
    dropped.unregister(this);
    dropped.register(this, this.#forget, this);
    if (latest?.deref() === this) latest = undefined;
    return this;
  }

  static {
    // Module-private access for the propagation helpers: makes `context` active for
    // the rest of the current Context in the global manager, if it is one of these
    // (the latest first). Asked through @opentelemetry/api itself: does its
    // `context.active()` reach this manager?
    const isGlobal = (manager: ContextVarsContextManager): boolean =>
      manager.#slot.run(PROBE, readActive) === PROBE;
    activate = (context) => {
      const tried = latest?.deref();
      let manager = tried;
      if (manager === undefined || !isGlobal(manager)) {
        manager = undefined;
        for (const ref of everyManager) {
          const candidate = ref.deref();
          if (candidate !== undefined && candidate !== tried && isGlobal(candidate)) {
            manager = candidate;
            latest = ref;
            break;
          }
        }
        if (manager === undefined) return false;
      }
      manager.#slot.set(context);
      return true;
    };
  }

  get [Symbol.toStringTag](): string {
    return "ContextVarsContextManager";
  }
}

provideActivation(activate);
