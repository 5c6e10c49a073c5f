/**
 * One "abort" listener on each outer signal, however many tasks and groups
 * wait on it. Node warns (MaxListenersExceededWarning, "Possible EventTarget
 * memory leak detected") once an EventTarget has more than 10 listeners for
 * one event: a listener per task would print that for a request whose signal
 * is handed to its eleventh task, as `createTask(fn, { signal:
 * currentTask()?.signal })` does for each child. Internal.
 */

interface Listeners {
  readonly callbacks: Set<() => void>;
  readonly listener: () => void;
}

const bySignal = new WeakMap<AbortSignal, Listeners>();

/**
 * Whether value is an AbortSignal: this realm's, or another realm's, such as
 * a jsdom or happy-dom window's, which fails `instanceof AbortSignal` and
 * which Node's own timers, `events.once` and fetch take. Those are told by
 * what tasks and groups use of a signal, as Node tells them: a boolean
 * `aborted` and the two listener methods (its `reason` may be anything).
 * This realm's pass the first check, so a signal from an AbortController
 * costs one `instanceof`.
 */
export function isAbortSignal(value: unknown): value is AbortSignal {
  if (value instanceof AbortSignal) return true;
  if (typeof value !== "object" || value === null) return false;
  const signal = value as Partial<Record<keyof AbortSignal, unknown>>;
  return (
    typeof signal.aborted === "boolean" &&
    typeof signal.addEventListener === "function" &&
    typeof signal.removeEventListener === "function"
  );
}

/**
 * Calls callback when signal aborts, in the order callbacks were added, once.
 * The signal must not be aborted yet. A callback removed with offAbort before
 * its turn (by one called before it, say) is not called.
 */
export function onAbort(signal: AbortSignal, callback: () => void): void {
  let listeners = bySignal.get(signal);
  if (listeners === undefined) {
    const callbacks = new Set<() => void>();
    // Each callback leaves the set as it is called: one that offAbort
    // removes meanwhile (a task settled by an earlier callback) is skipped,
    // as EventTarget skips a listener removed during its dispatch.
    const listener = () => {
      for (const each of callbacks) {
        callbacks.delete(each);
        try {
          each();
        } catch (error) {
          // As EventTarget reports a listener's throw: the rest still run.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
      if (bySignal.get(signal) === entry) bySignal.delete(signal);
    };
    const entry: Listeners = { callbacks, listener };
    signal.addEventListener("abort", listener, { once: true });
    bySignal.set(signal, entry);
    listeners = entry;
  }
  listeners.callbacks.add(callback);
}

/**
 * Forgets a callback given to onAbort; the signal's listener goes with the
 * last one. May throw what the signal's own removeEventListener throws.
 */
export function offAbort(signal: AbortSignal, callback: () => void): void {
  const listeners = bySignal.get(signal);
  if (listeners === undefined) return;
  listeners.callbacks.delete(callback);
  if (listeners.callbacks.size > 0) return;
  bySignal.delete(signal);
  signal.removeEventListener("abort", listeners.listener);
}
