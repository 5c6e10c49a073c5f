import { carrier } from "../carrier/select.ts";
import { setTaskOf } from "../core/context.ts";
import { copyContext } from "../core/current.ts";
import { functionName } from "../core/inspect.ts";
import { argumentError } from "../errors.ts";
import { taskFunctionError } from "./task.ts";

/** A scheduled callback (asyncio's Handle). */
export interface CallHandle {
  /** Stops the callback from running, if it has not run yet. */
  cancel(): void;
  /** Whether cancel() was called before the callback ran. */
  readonly cancelled: boolean;
}

// setTimeout's largest delay; beyond it Node fires after 1 ms with a warning.
const MAX_DELAY = 2 ** 31 - 1;

// A handle lets go of its callback once it has run or been cancelled, as
// asyncio's Handle.cancel drops its callback: a handle kept (in a map of
// pending timers, say) then keeps no closure, and what it captured, alive.
// Only the name stays, for toString.
class Handle implements CallHandle {
  #cancelled = false;
  #clear: (() => void) | undefined;
  #fn: Function | undefined;
  #name: string | undefined;

  constructor(
    readonly kind: string,
    fn: Function,
  ) {
    this.#fn = fn;
  }

  arm(clear: () => void): this {
    this.#clear = clear;
    return this;
  }

  cancel(): void {
    if (this.#clear === undefined) return;
    this.#cancelled = true;
    this.#clear();
    this.#done();
  }

  ran(): void {
    this.#done();
  }

  #done(): void {
    this.#clear = undefined;
    this.#name = this.#nameOf();
    this.#fn = undefined;
  }

  #nameOf(): string {
    return this.#name ?? (this.#fn === undefined ? "" : functionName(this.#fn));
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  get [Symbol.toStringTag](): string {
    return "CallHandle";
  }

  toString(): string {
    const name = this.#nameOf() || "anonymous";
    return `<${this.kind} ${name}${this.#cancelled ? " cancelled" : ""}>`;
  }
}

function scheduled(kind: string, fn: Function, args: unknown[]): [Handle, () => void] {
  if (typeof fn !== "function") {
    throw taskFunctionError(
      fn,
      kind === "callSoon" ? "callSoon(() => work())" : "callLater(ms, () => work())",
    );
  }
  // A copy taken now (asyncio copies at call_soon); the callback runs outside any task.
  const context = copyContext();
  setTaskOf(context, undefined);
  const handle = new Handle(kind, fn);
  return [
    handle,
    () => {
      handle.ran();
      carrier.run(context, () => Reflect.apply(fn, undefined, args));
    },
  ];
}

const soon: (callback: () => void) => () => void =
  typeof setImmediate === "function"
    ? (callback) => {
        const id = setImmediate(callback);
        return () => clearImmediate(id);
      }
    : (callback) => {
        const id = setTimeout(callback, 0);
        return () => clearTimeout(id);
      };

/**
 * Calls fn(...args) on the next turn of the event loop (a macrotask), in a
 * copy of the Context current now (asyncio's loop.call_soon).
 * @throws {TypeError} if fn is not a function.
 */
export function callSoon<A extends unknown[]>(
  fn: (this: void, ...args: A) => unknown,
  ...args: A
): CallHandle {
  const [handle, fire] = scheduled("callSoon", fn, args);
  return handle.arm(soon(fire));
}

/**
 * Calls fn(...args) after delayMs milliseconds, in a copy of the Context
 * current now (asyncio's loop.call_later).
 * @throws {TypeError} if delayMs is not a number from 0 to 2^31-1, or fn is not a function.
 */
export function callLater<A extends unknown[]>(
  delayMs: number,
  fn: (this: void, ...args: A) => unknown,
  ...args: A
): CallHandle {
  if (typeof delayMs !== "number" || !(delayMs >= 0 && delayMs <= MAX_DELAY)) {
    throw argumentError("delayMs", `a number from 0 to ${MAX_DELAY}`, delayMs);
  }
  const [handle, fire] = scheduled("callLater", fn, args);
  const id = setTimeout(fire, delayMs);
  return handle.arm(() => clearTimeout(id));
}
