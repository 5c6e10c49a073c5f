import { carrier } from "../carrier/select.ts";
import { currentContext } from "../core/current.ts";
import { NativePromise } from "../core/native-promise.ts";
import { thenOf } from "../core/then-of.ts";
import { argumentError } from "../errors.ts";
import { createObservedTask, type TaskFunction } from "./task.ts";

/** What gather takes: a function (run as a task) or a PromiseLike (awaited as it is). */
export type GatherItem = TaskFunction<unknown> | PromiseLike<unknown>;

/** The result of one gather item: what the function returns, or what the PromiseLike gives, awaited. */
export type Gathered<I> = I extends (...args: never[]) => infer R ? Awaited<R> : Awaited<I>;

/**
 * Runs every function as a task in its own copy of the current Context and
 * awaits every PromiseLike as it is; resolves with all results, in order
 * (asyncio.gather). The first rejection rejects gather with that reason and
 * the other tasks go on running, as with Promise.all; for "first failure
 * cancels the rest", use a TaskGroup. Each PromiseLike's `then` is read once,
 * as Promise.all reads it; one whose getter throws rejects gather.
 *
 * @example
 * const [a, b] = await gather(() => worker("alice"), () => worker("bob"));
 * @throws {TypeError} (synchronously, before anything starts) if an item is neither.
 */
export function gather<const T extends readonly GatherItem[]>(
  ...items: T
): Promise<{ -readonly [K in keyof T]: Gathered<T[K]> }> {
  const count = items.length;
  // Each PromiseLike's `then`, read once, as Promise.all reads it once: a
  // getter runs once, and one that throws rejects gather instead of throwing.
  let thens: unknown[] | undefined;
  for (let i = 0; i < count; i++) {
    const item = items[i];
    if (typeof item === "function") continue;
    let then: unknown;
    try {
      then = thenOf(item);
    } catch (error) {
      then = new ThenThrew(error);
    }
    if (then === undefined) {
      // gather([a, b]), as Promise.all is called: say what to do, not only what it got.
      const expected = Array.isArray(item)
        ? "a function or a PromiseLike, not an array (gather takes its items as arguments: spread an array, gather(...items))"
        : "a function or a PromiseLike";
      throw argumentError(`items[${i}]`, expected, item);
    }
    thens ??= new Array<unknown>(count);
    thens[i] = then;
  }
  type Result = { -readonly [K in keyof T]: Gathered<T[K]> };
  const caller = currentContext();
  const results = new Array<unknown>(count);
  let left = count;
  let resolve!: (value: Result) => void;
  let reject!: (reason: unknown) => void;
  const all = new NativePromise<Result>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  let failed = false;
  let starting = true;
  // What Promise.all does, without a promise and a reaction per task: each
  // task tells its outcome to an observer, which also marks its failure
  // handled (Promise.all's reaction does the same for the promises it takes).
  const settle = (i: number, ok: boolean, value: unknown): void => {
    if (failed) return;
    if (!ok) {
      if (starting) {
        // A function that threw synchronously is told here before gather has
        // returned: it fails as one returning Promise.reject() would, a turn
        // later, after an item before it that was rejected already (the
        // first rejection, as Promise.all and asyncio.gather find it).
        NativePromise.reject(value).then(undefined, (error: unknown) => settle(i, false, error));
        return;
      }
      failed = true;
      // In the caller's Context, as Promise.all's reaction would reject it.
      carrier.run(caller, reject, value);
      return;
    }
    results[i] = value;
    if (--left === 0) resolve(results as Result);
  };
  for (let i = 0; i < count; i++) {
    const item = items[i];
    if (typeof item === "function") {
      createObservedTask(item as TaskFunction<unknown>, settle, i);
    } else {
      awaitItem(
        item,
        (thens as unknown[])[i],
        (value) => settle(i, true, value),
        (error) => settle(i, false, error),
      );
    }
  }
  starting = false;
  if (count === 0) resolve(results as Result);
  return all;
}

// What reading a PromiseLike's `then` threw.
class ThenThrew {
  constructor(readonly error: unknown) {}
}

const promiseThen = NativePromise.prototype.then;

// Awaits a PromiseLike with the `then` read from it before, in as many
// microtask turns as Promise.all's Promise.resolve(item).then(...) takes.
function awaitItem(
  item: unknown,
  then: unknown,
  onFulfilled: (value: unknown) => void,
  onRejected: (error: unknown) => void,
): void {
  if (then instanceof ThenThrew) {
    NativePromise.reject(then.error).then(undefined, onRejected);
    return;
  }
  let itself: boolean;
  try {
    itself =
      then === promiseThen && item instanceof NativePromise && item.constructor === NativePromise;
  } catch (error) {
    // Only an exotic item throws here (a `constructor` getter, a Proxy's
    // trap). Promise.resolve would throw too, and Promise.all rejects.
    NativePromise.reject(error).then(undefined, onRejected);
    return;
  }
  if (itself) {
    // Promise.resolve(item) is item itself.
    Reflect.apply(promiseThen, item, [onFulfilled, onRejected]);
  } else {
    // Resolving with this thenable calls `then` in a job, as resolving with item would.
    const call = then as Function;
    const once: PromiseLike<unknown> = {
      // biome-ignore lint/suspicious/noThenProperty: stands for item's then, read once
      then: (resolve, reject) => Reflect.apply(call, item, [resolve, reject]),
    };
    NativePromise.resolve(once).then(onFulfilled, onRejected);
  }
}
