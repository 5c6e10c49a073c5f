import { argumentError } from "../errors.ts";
import { createTask, promiseOf, type TaskFunction, thenOf } from "./task.ts";

/** What gather takes: a function (run as a task) or a PromiseLike (awaited as it is). */
export type GatherItem = TaskFunction<unknown> | PromiseLike<unknown>;

/** The result of one gather item: what the function returns, or what the PromiseLike gives, awaited. */
export type Gathered<I> = I extends (...args: never[]) => infer R ? Awaited<R> : Awaited<I>;

/**
 * Runs every function as a task in its own copy of the current Context and
 * awaits every PromiseLike as it is; resolves with all results, in order
 * (asyncio.gather). The first rejection rejects gather with that reason and
 * the other tasks go on running, as with Promise.all; for "first failure
 * cancels the rest", use a TaskGroup.
 *
 * @example
 * const [a, b] = await gather(() => worker("alice"), () => worker("bob"));
 * @throws {TypeError} (synchronously, before anything starts) if an item is neither.
 */
export function gather<const T extends readonly GatherItem[]>(
  ...items: T
): Promise<{ -readonly [K in keyof T]: Gathered<T[K]> }> {
  items.forEach((item, i) => {
    if (typeof item !== "function" && thenOf(item) === undefined) {
      throw argumentError(`items[${i}]`, "a function or a PromiseLike", item);
    }
  });
  const promises = items.map((item) =>
    typeof item === "function" ? promiseOf(createTask(item as TaskFunction<unknown>)) : item,
  );
  return Promise.all(promises) as Promise<{ -readonly [K in keyof T]: Gathered<T[K]> }>;
}
