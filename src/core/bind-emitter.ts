import type { EventEmitter } from "node:events";
import { argumentError } from "../errors.ts";
import { assertContext, bind } from "./bind.ts";
import type { Context } from "./context.ts";
import { copyContext } from "./current.ts";

type Listener = (...args: unknown[]) => unknown;
const ADDERS = ["on", "addListener", "prependListener", "once", "prependOnceListener"] as const;
const REMOVERS = ["off", "removeListener"] as const;

// Emitters already bound: binding again keeps the first Context (as OpenTelemetry's managers do).
const boundEmitters = new WeakSet<object>();

/**
 * Makes every listener added to `emitter` from now on run as
 * `bind(listener, context)` would: in a fresh copy of `context` (default: the
 * Context current now), not in the Context of the code that calls `emit`.
 *
 * A plain EventEmitter calls its listeners synchronously inside `emit`, so they
 * see the emitter's Context: a `req.on("end")` listener sees whatever Context
 * the stream's I/O callback runs in, which is how body parsers lose context.
 * `removeListener`/`off` accept the original listener. Returns the emitter.
 *
 * @example
 * bindEmitter(req).on("end", () => log(requestId.get()));
 * @throws {TypeError} if emitter is not an EventEmitter or context is not a Context.
 */
export function bindEmitter<E extends EventEmitter>(emitter: E, context?: Context): E {
  if (typeof emitter !== "object" || emitter === null || typeof emitter.on !== "function") {
    throw argumentError("emitter", "an EventEmitter", emitter);
  }
  assertContext("context", context);
  if (boundEmitters.has(emitter)) return emitter;
  const snapshot = context ?? copyContext();
  // One wrapper per (event, listener), so removeListener finds what on() added.
  const wrappers = new Map<string | symbol, WeakMap<Listener, Listener>>();
  const target = emitter as unknown as Record<string, Function>;

  for (const method of ADDERS) {
    const original = target[method];
    if (typeof original !== "function") continue;
    target[method] = function (this: unknown, event: string | symbol, listener: Listener) {
      if (typeof listener !== "function") return Reflect.apply(original, this, [event, listener]);
      let byListener = wrappers.get(event);
      if (byListener === undefined) {
        byListener = new WeakMap();
        wrappers.set(event, byListener);
      }
      let wrapped = byListener.get(listener);
      if (wrapped === undefined) {
        wrapped = bind(listener, snapshot);
        // EventEmitter's once() adds its own wrapper through this.on() and finds
        // it again by its `listener` field: keep that field on ours, so
        // removeListener(original) still matches a once listener.
        const inner = (listener as { listener?: unknown }).listener;
        if (typeof inner === "function") (wrapped as { listener?: unknown }).listener = inner;
        byListener.set(listener, wrapped);
      }
      return Reflect.apply(original, this, [event, wrapped]);
    };
  }
  for (const method of REMOVERS) {
    const original = target[method];
    if (typeof original !== "function") continue;
    target[method] = function (this: unknown, event: string | symbol, listener: Listener) {
      const wrapped = wrappers.get(event)?.get(listener);
      return Reflect.apply(original, this, [event, wrapped ?? listener]);
    };
  }
  boundEmitters.add(emitter);
  return emitter;
}
