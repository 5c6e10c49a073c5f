import { createTask, promiseOf, taskFunctionError } from "./task.ts";

/**
 * Runs main as a task named "main" in a copy of the current Context and
 * resolves with its result (asyncio.run): whatever main sets stays inside.
 *
 * @example
 * await run(async () => { user.set("alice"); await gather(() => a(), () => b()); });
 * @throws {TypeError} if main is not a function.
 */
export function run<T>(main: (this: void) => T | PromiseLike<T>): Promise<T> {
  // run(main()), as asyncio.run(main()) is written, is told to pass main itself.
  if (typeof main !== "function") throw taskFunctionError(main, "run(() => main())", "main");
  return promiseOf(createTask(main, { name: "main" }));
}
