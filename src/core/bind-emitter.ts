import type { EventEmitter } from "node:events";
import { argumentError } from "../errors.ts";
import { assertContext, bind } from "./bind.ts";
import type { Context } from "./context.ts";
import { copyContext } from "./current.ts";

type Listener = (...args: unknown[]) => unknown;
type Adder = (this: unknown, event: string | symbol, listener: unknown) => unknown;

/** What a listener wrapper carries, as Node's once-wrappers do. */
interface Wrapped extends Listener {
  listener: Listener;
}

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
 * The emitter still reports the listeners it was given: `removeListener`/`off`,
 * `listeners()`, `listenerCount(event, listener)` and the `newListener` and
 * `removeListener` events see the original listener. Returns the emitter.
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
  const target = emitter as unknown as Record<string, Adder | undefined>;
  const on = target.on as Adder;
  const prepend = target.prependListener;

  // Each wrapper carries the original in its `listener` field, as Node's own
  // once-wrappers do: EventEmitter matches that field in removeListener and
  // reports it from listeners(), so no table of wrappers is kept (one would
  // grow with every event name ever used) and event names compare as Node
  // compares them.
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
      return Reflect.apply(add, this, [event, wrapped]);
    };

  target.on = adder(on, false);
  target.addListener = target.on;
  target.once = adder(on, true);
  if (typeof prepend === "function") {
    target.prependListener = adder(prepend, false);
    target.prependOnceListener = adder(prepend, true);
  }
  boundEmitters.add(emitter);
  return emitter;
}
