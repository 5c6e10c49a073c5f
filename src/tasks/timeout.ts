import { argumentError, contextError } from "../errors.ts";
import {
  createTask,
  finishedOf,
  type Task,
  type TaskFunction,
  type TaskOptions,
  taskFunctionError,
} from "./task.ts";

const MAX_DELAY = 2 ** 31 - 1;

/**
 * Runs fn as a task (see createTask) that is cancelled after `ms`
 * milliseconds: its signal aborts and it rejects with a TimeoutError that
 * names it (asyncio.timeout). The timer stops when the task settles first.
 *
 * @example
 * const body = await timeout(5_000, (signal) => fetch(url, { signal }), { name: "fetch-profile" });
 * @throws {TypeError} if ms is not a number from 0 to 2^31-1, or as createTask.
 */
export function timeout<T>(ms: number, fn: TaskFunction<T>, options?: TaskOptions): Task<T> {
  if (typeof ms !== "number" || !(ms >= 0 && ms <= MAX_DELAY)) {
    throw argumentError("ms", `a number from 0 to ${MAX_DELAY}`, ms);
  }
  if (typeof fn !== "function") throw taskFunctionError(fn, "timeout(ms, () => work())");
  const task = createTask(fn, options);
  if (task.done) return task;
  const timer = setTimeout(() => {
    task.cancel(contextError("ERR_TASK_TIMEOUT", task.toString(), String(ms)));
  }, ms);
  // Not task.then(clear, clear): a rejection handler would mark a failed task
  // as handled and hide it from unhandledRejection.
  const clear = () => clearTimeout(timer);
  task.signal.addEventListener("abort", clear, { once: true });
  finishedOf(task).then(clear);
  return task;
}
