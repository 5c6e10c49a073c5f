// TaskGroup's declarations name AsyncDisposable and Symbol.asyncDispose.
// Kept in them, this gives those to a project with no @types/node whose libs
// stop at ES2022 (a browser one), which otherwise fails to compile them
// unless it skips lib checks.
/// <reference lib="esnext.disposable" preserve="true" />

import { carrier } from "../carrier/select.ts";
import type { Context } from "../core/context.ts";
import { currentContext } from "../core/current.ts";
import { type InspectFn, inspectCustom } from "../core/inspect.ts";
import { NativePromise } from "../core/native-promise.ts";
import { argumentError, assertFunction, contextError, isErrorOfAnyRealm } from "../errors.ts";
import { isAbortSignal, offAbort, onAbort } from "./abort-listeners.ts";
import {
  createTask,
  failureAfterCancelOf,
  finishedOf,
  type Task,
  type TaskFunction,
  type TaskOptions,
  taskFunctionError,
} from "./task.ts";

/** Options of a TaskGroup. */
export interface TaskGroupOptions {
  /** Shown in messages; default `TaskGroup-<n>`. */
  name?: string | undefined;
  /**
   * An outer signal: when it aborts, every child is cancelled with its reason,
   * and wait() rejects with that reason unless a child failed.
   */
  signal?: AbortSignal | undefined;
}

type State = "open" | "aborting" | "closed";

// The TaskGroupClosedErrors each group threw from createTask while shutting
// down, with the group and the reason it shut down for. Its body or a
// cancelled child that runs into one has met the shutdown where asyncio
// would have cancelled it at its last await, whose CancelledError is no
// failure; here neither can be stopped mid-way, and createTask is where a
// crawler's loop goes next, so the refusal is its cancellation, not an error
// of the group's. So is the refusal of a group that the same cancellation
// shut down: one given the child's signal, or the body's group.signal
// (new TaskGroup({ signal }), as a nested crawler passes it down).
const shutdownRefusals = new WeakMap<object, { group: TaskGroup; reason: unknown }>();

/**
 * Whether error is a cancellation, not a failure, of code that `group`
 * cancelled through `signal`: signal's reason, a refusal of group's, or one
 * of a group that signal's abort shut down.
 */
function cancelledBy(error: unknown, signal: AbortSignal, group: TaskGroup): boolean {
  if (causedBy(signal, error)) return true;
  const refusal = shutdownRefusals.get(error as object);
  return refusal !== undefined && (refusal.group === group || causedBy(signal, refusal.reason));
}
let groupCount = 0;

/** Records a failure of the body of `taskGroup` and cancels the children. Internal. */
export let failGroup: (group: TaskGroup, error: unknown) => void;

/**
 * Structured concurrency, as asyncio's TaskGroup: every child runs as a task
 * in its own copy of the Context current when it is created; `wait()` settles
 * only when every child's function has settled; the first failure cancels the
 * others; the group rejects with an AggregateError of the failures (not of
 * the cancellations it caused). `await using tg = new TaskGroup()` waits at
 * scope exit, but is not told of a throw from the block, as asyncio's
 * `async with` is: that throw cancels no child and goes on once they have
 * finished. Where the block can throw, use taskGroup(body), which cancels
 * them.
 *
 * @example
 * await using tg = new TaskGroup();
 * tg.createTask(() => fetchUser(1));
 * tg.createTask(() => fetchUser(2));
 */
export class TaskGroup implements AsyncDisposable {
  readonly name: string;
  readonly #tasks = new Set<Task<unknown>>();
  readonly #failures: unknown[] = [];
  #state: State = "open";
  #pending = 0;
  #idle: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #waiting: Promise<void> | undefined;
  #controller: AbortController | undefined;
  // Whether, and why, the group began shutting down: for a signal first read afterwards.
  #aborted = false;
  #abortReason: unknown;
  // Whether the outer signal shut the group down (not a failure): wait() then rejects with its reason.
  #cancelled = false;
  #detach: (() => void) | undefined;
  // Where group.signal's listeners run (see #abort).
  readonly #home: Context = currentContext();

  /** @throws {TypeError} if an option has the wrong type. */
  constructor(options?: TaskGroupOptions) {
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw argumentError("options", "an object", options);
    }
    // Each option read once: the name checked is the name kept.
    const name = options?.name;
    if (name !== undefined && typeof name !== "string") {
      throw argumentError("options.name", "a string", name);
    }
    const signal = options?.signal;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw argumentError("options.signal", "an AbortSignal", signal);
    }
    this.name = name ?? `TaskGroup-${++groupCount}`;
    if (signal !== undefined) {
      const abortGroup = () => this.#abort(signal.reason, true);
      // Aborted already: shutting down from the start, with no child to cancel.
      if (signal.aborted) abortGroup();
      else {
        // One listener on the signal for all the groups and tasks that share it.
        onAbort(signal, abortGroup);
        // Kept until the group closes: children may be added until wait() settles.
        this.#detach = () => offAbort(signal, abortGroup);
      }
    }
  }

  static {
    failGroup = (group, error) => {
      // The body may rethrow a child's failure it awaited: record each error once.
      if (!group.#failures.includes(error)) group.#failures.push(error);
      group.#abort();
    };
  }

  /**
   * Starts fn as a child task (see createTask) that the group waits for.
   * @throws {TaskGroupClosedError} ERR_TASK_GROUP_CLOSED once the group is shutting down or
   *   finished (wait() found no child left).
   * @throws {TypeError} as createTask.
   */
  createTask<T>(fn: TaskFunction<T>, options?: TaskOptions): Task<T> {
    if (typeof fn !== "function") {
      throw taskFunctionError(fn, "group.createTask(() => work())", "fn", `${this}.createTask()`);
    }
    // Finished from the moment wait() has been called and no child is left,
    // not only once wait()'s own continuation has run: a child accepted in
    // between would be neither waited for nor have its failure reported.
    const finished = this.#waiting !== undefined && this.#pending === 0;
    if (this.#state === "closed" || finished) {
      throw contextError(
        "ERR_TASK_GROUP_CLOSED",
        this.toString(),
        "finished",
        "create tasks before wait() settles",
      );
    }
    if (this.#state !== "open") {
      const refusal = contextError(
        "ERR_TASK_GROUP_CLOSED",
        this.toString(),
        "shutting down after a failure or cancel",
        "check group.signal.aborted before creating a task, and stop when it is; wait() reports the failures",
      );
      shutdownRefusals.set(refusal, { group: this, reason: this.#abortReason });
      throw refusal;
    }
    // Counted before fn starts: a child whose synchronous start calls wait()
    // must find itself there, or wait() would settle while it runs.
    this.#pending++;
    let task: Task<T>;
    try {
      task = createTask(fn, options);
    } catch (error) {
      this.#childDone();
      throw error;
    }
    this.#tasks.add(task);
    task.then(undefined, (error: unknown) => {
      // A cancelled child (by the group, its own signal or the user) is not a
      // failure; what its function does afterwards is looked at below.
      if (task.cancelled) return;
      this.#failures.push(error);
      this.#abort();
    });
    finishedOf(task).then(() => {
      this.#tasks.delete(task);
      // A cancelled child whose function then fails with anything but its
      // cancellation (a throw in its cleanup, say) failed: asyncio's
      // TaskGroup reports what a cancelled child raises, and nothing else
      // would ever see this error.
      const late = failureAfterCancelOf(task);
      if (late !== undefined && !cancelledBy(late.error, task.signal, this)) {
        if (!this.#failures.includes(late.error)) this.#failures.push(late.error);
        this.#abort();
      }
      this.#childDone();
    });
    // fn's synchronous start may have shut the group down (it aborted the
    // outer signal) before the child was in #tasks, so #abort missed it.
    if (this.#state !== "open") task.cancel(this.#abortReason);
    return task;
  }

  #childDone(): void {
    if (--this.#pending === 0) {
      const wake = this.#wake;
      this.#idle = this.#wake = undefined;
      wake?.();
    }
  }

  /**
   * Waits until every child's function has settled (children created while it
   * waits included). From the moment it finds no child left the group is
   * finished: createTask throws. Calling it again returns the same promise.
   * @throws {AggregateError} (rejects) with the children's failures, if any failed.
   * @throws {unknown} (rejects) the outer signal's reason, if it aborted and no child failed.
   */
  wait(): Promise<void> {
    this.#waiting ??= this.#waitForAll().then(() => {
      this.#state = "closed";
      try {
        this.#detach?.();
      } catch {
        // Only a signal whose own removeEventListener throws gets here (one
        // from another realm, or a look-alike): the group's outcome stands,
        // and the listener it kept aborts a group that is over.
      }
      this.#detach = undefined;
      if (this.#failures.length > 0) {
        const count = this.#failures.length;
        throw new AggregateError(
          this.#failures,
          `${this.toString()} failed: ${count} unhandled error${count === 1 ? "" : "s"}`,
        );
      }
      // Cancelled from outside, as fetch is by its signal: the code after
      // wait() must not run on as if the children had done their work
      // (asyncio's async with raises the parent's CancelledError).
      if (this.#cancelled) throw this.#abortReason;
    });
    return this.#waiting;
  }

  /** Same as wait(): `await using tg = new TaskGroup()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.wait();
  }

  get [Symbol.toStringTag](): string {
    return "TaskGroup";
  }

  /** `TaskGroup("fetches")` */
  toString(): string {
    return `TaskGroup(${JSON.stringify(this.name)})`;
  }

  [inspectCustom](_depth: number, _options: object, _inspect?: InspectFn): string {
    return `<TaskGroup name=${JSON.stringify(this.name)} ${this.#state} tasks=${this.#pending}>`;
  }

  /** Aborted when the group starts shutting down (a failure, or the outer signal): for the body to heed. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      // Made on demand: read only after the group began shutting down, it is aborted already.
      if (this.#aborted) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  async #waitForAll(): Promise<void> {
    while (this.#pending > 0) {
      this.#idle ??= new NativePromise<void>((resolve) => {
        this.#wake = resolve;
      });
      await this.#idle;
    }
  }

  #abort(reason?: unknown, outer = false): void {
    if (this.#state !== "open") return;
    this.#cancelled = outer;
    // One reason for the group's signal and every child it cancels, as
    // AbortController.abort() would make it: a body that awaits a child the
    // group cancelled rethrows this very reason, which taskGroup then knows
    // for a cancellation the group caused, not a failure.
    const why =
      reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
    this.#state = "aborting";
    this.#aborted = true;
    this.#abortReason = why;
    // In the Context where the group was made, as Task#cancel aborts in the
    // task's: #abort is reached from an outer signal's abort (a SIGINT
    // listener, in whatever Context Node runs it) or from a failing child's
    // rejection (in the Context of whoever called createTask for it, maybe
    // another child), and a listener added in the body would otherwise log
    // with those values, not the body's.
    const controller = this.#controller;
    if (controller !== undefined) carrier.run(this.#home, () => controller.abort(why));
    for (const task of this.#tasks) task.cancel(why);
  }
}

/**
 * Whether error is signal's abort: its reason, or an AbortError caused by it
 * (timers/promises, events.once). An exotic error that throws when looked at
 * (a Proxy whose getPrototypeOf trap throws, a name or cause getter that
 * throws) is none: a failure, and what waits for it still goes on. Node's
 * AbortErrors are another realm's under jest (isErrorOfAnyRealm).
 */
function causedBy(signal: AbortSignal, error: unknown): boolean {
  if (!signal.aborted) return false;
  if (error === signal.reason) return true;
  try {
    return isErrorOfAnyRealm(error) && error.name === "AbortError" && error.cause === signal.reason;
  } catch {
    return false;
  }
}

/**
 * Runs body with a new TaskGroup and waits for all its children; resolves
 * with body's result. A throw from body cancels the children and joins the
 * AggregateError (as in asyncio). `options` are the group's: with a
 * `signal`, aborting it cancels the children and rejects with its reason
 * (unless one failed), as TaskGroup's wait() does.
 *
 * @example
 * const users = await taskGroup(async (tg) => {
 *   const a = tg.createTask(() => fetchUser(1));
 *   const b = tg.createTask(() => fetchUser(2));
 *   return [await a, await b];
 * }, { signal: AbortSignal.timeout(5_000) });
 * @throws {TypeError} (rejects) if body is not a function or an option has the wrong type.
 */
export async function taskGroup<R>(
  body: (this: void, group: TaskGroup) => R | PromiseLike<R>,
  options?: TaskGroupOptions,
): Promise<R> {
  assertFunction("body", body);
  const group = new TaskGroup(options);
  let result: R | undefined;
  try {
    result = await body(group);
  } catch (error) {
    // The body heeding group.signal after a failure, or running into the
    // group's refusal of a new child, is a cancellation the group caused,
    // not a failure (asyncio drops that CancelledError too).
    if (!cancelledBy(error, group.signal, group)) failGroup(group, error);
  }
  await group.wait();
  return result as R;
}
