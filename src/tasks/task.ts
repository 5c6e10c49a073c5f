import { carrier } from "../carrier/select.ts";
import { assertContext } from "../core/bind.ts";
import { type Context, copyOf, setTaskOf, taskOf } from "../core/context.ts";
import { currentContext } from "../core/current.ts";
import { type InspectFn, inspectCustom } from "../core/inspect.ts";
import { NativePromise as EnginePromise } from "../core/native-promise.ts";
import { thenOf } from "../core/then-of.ts";
import { argumentError } from "../errors.ts";
import { isAbortSignal, offAbort, onAbort } from "./abort-listeners.ts";

// Module-local aliases for task creation's hot path: an imported binding is
// read through the exporting module's cell, with a check that it has been
// initialised (the accessors are lets that context.ts assigns in a static
// block, which has run by now: the core imports nothing from tasks).
const slot = carrier;
const current = currentContext;
const copyContextOf = copyOf;
const taskIn = taskOf;
const setTaskIn = setTaskOf;
const NativePromise = EnginePromise;

/** Options of createTask. */
export interface TaskOptions {
  /** Shown in messages and inspection; default `Task-<n>`. */
  name?: string | undefined;
  /** The Context to run in (shared, not copied); default a copy of the current Context. */
  context?: Context | undefined;
  /** An outer signal: when it aborts, the task is cancelled with its reason. */
  signal?: AbortSignal | undefined;
}

/** What a task runs: it receives the task's AbortSignal. */
export type TaskFunction<T> = (this: void, signal: AbortSignal) => T | PromiseLike<T>;

const constructing = Symbol("contextvars.task");
let taskCount = 0;

// The options come read, each once (see createTask).
let createTaskImpl: <T>(
  fn: TaskFunction<T>,
  name: string | undefined,
  context: Context | undefined,
  outer: AbortSignal | undefined,
  observer: Observer | undefined,
  tag: number,
) => Task<T>;
// Called by `start` when the function settles.
let fnSettled: <T>(task: Task<T>, ok: boolean, value: unknown) => void;

/** The task's own promise (skips a `then` hop in gather). Internal. */
export let promiseOf: <T>(task: Task<T>) => Promise<T>;
/** Settles when the task's function has settled, which after a cancel can be later than the task. Internal. */
export let finishedOf: (task: Task<unknown>) => Promise<void>;
/**
 * What a cancelled task's function failed with, once it has (TaskGroup counts
 * it as asyncio does a cancelled child that raises); undefined if the task was
 * not cancelled, or its function has not failed. Internal.
 */
export let failureAfterCancelOf: (task: Task<unknown>) => { error: unknown } | undefined;

/**
 * A unit of concurrent work running in its own Context: a copy of the Context
 * current when it was created (or the `context` option). Awaitable like a
 * Promise; cancellable through its AbortSignal.
 */
export class Task<T> implements PromiseLike<T> {
  // A task carries only what every task needs; the rest waits in #extras until
  // something asks for it. gather keeps all its tasks alive until the last one
  // settles, so their size is paid in garbage collection: in a scratch gather
  // of 10,000 by hand, an 18-field object per function cost 1.56-1.61x
  // Promise.all of als.run, an 8-field one 1.22-1.36x, and none 1.04-1.13x.
  // The task's name: a number until first read, when `Task-<n>` is built
  // (formatting the number cost as much as the rest of the constructor).
  #name: string | number;
  /** The Context the task runs in; its sets land here. */
  readonly context: Context;
  // PENDING, FULFILLED or REJECTED in the low bits, with the FN_SETTLED,
  // CANCELLED and FN_FAILED_AFTER_CANCEL flags: one field where four would do
  // the same work.
  #state = PENDING;
  #value: unknown;
  // Told synchronously when the task settles, with #tag; its presence makes a
  // rejection handled.
  readonly #observer: Observer | undefined;
  readonly #tag: number;
  // Where the task was created: its promise is rejected there (see #settle).
  readonly #creator: Context;
  #extras: Extras | undefined = undefined;

  /** @throws {TypeError} from user code: tasks come from createTask(). */
  private constructor(
    guard: typeof constructing,
    fn: TaskFunction<T>,
    name: string | undefined,
    given: Context | undefined,
    outer: AbortSignal | undefined,
    observer: Observer | undefined,
    tag: number,
  ) {
    if (guard !== constructing) throw new TypeError("Tasks can only be created by createTask(fn)");
    const creator = current();
    this.#creator = creator;
    this.#name = name ?? ++taskCount;
    this.context = given ?? copyContextOf(creator);
    this.#observer = observer;
    this.#tag = tag;
    if (outer !== undefined) {
      if (outer.aborted) {
        // Cancelled before it started: the function never runs (asyncio does the same).
        this.#state |= FN_SETTLED;
        this.cancel(outer.reason);
        return;
      }
      const extras = this.#more();
      const onOuterAbort = () => this.cancel(outer.reason);
      extras.outer = outer;
      extras.onOuterAbort = onOuterAbort;
      // One listener on the signal for all the tasks that share it (see abort-listeners.ts).
      onAbort(outer, onOuterAbort);
    }
    if (given !== undefined) {
      // A Context given by the caller may be shared with other tasks: keep
      // them in start order, to hand the slot back, when this task's function
      // settles, to the last one started that still runs (asyncio tracks the
      // running task in the loop instead; JavaScript cannot see it).
      const context = this.context;
      let sharers = sharing.get(context);
      if (sharers === undefined) {
        sharers = new Set();
        sharing.set(context, sharers);
      }
      const holder = taskIn(context) as Task<unknown> | undefined;
      if (holder !== undefined) sharers.add(holder); // its own Context's task, say
      sharers.add(this);
      this.#more().release = () => {
        sharers.delete(this);
        if (taskIn(context) !== this) return;
        let next: Task<unknown> | undefined;
        // Still runs: its function has not settled. A cancelled task is done
        // at once, but its function goes on until it heeds the signal.
        for (const task of sharers) {
          if ((task.#state & FN_SETTLED) !== 0) sharers.delete(task);
          else next = task;
        }
        setTaskIn(context, next);
      };
    }
    setTaskIn(this.context, this);
    start(this, fn);
  }

  static {
    promiseOf = (task) => task.#promiseOf();
    finishedOf = (task) =>
      (task.#state & FN_SETTLED) !== 0
        ? NativePromise.resolve()
        : new NativePromise<void>((resolve) => {
            const extras = task.#more();
            const previous = extras.onFnSettled;
            extras.onFnSettled =
              previous === undefined
                ? resolve
                : () => {
                    previous();
                    resolve();
                  };
          });
    failureAfterCancelOf = (task) =>
      (task.#state & FN_FAILED_AFTER_CANCEL) !== 0
        ? { error: (task.#extras as Extras).fnError }
        : undefined;
    createTaskImpl = (fn, name, context, outer, observer, tag) =>
      new Task(constructing, fn, name, context, outer, observer, tag);
    fnSettled = (task, ok, value) => {
      if ((task.#state & FN_SETTLED) === 0) {
        task.#state |= FN_SETTLED;
        // The task settled at its cancel, so this failure reaches no promise;
        // kept for a TaskGroup, which must not lose it (asyncio's does not).
        if (!ok && (task.#state & CANCELLED) !== 0) {
          task.#state |= FN_FAILED_AFTER_CANCEL;
          task.#more().fnError = value;
        }
        const extras = task.#extras;
        if (extras !== undefined) {
          extras.release?.();
          const callback = extras.onFnSettled;
          extras.onFnSettled = undefined;
          callback?.();
        }
      }
      task.#settle(ok, value);
    };
  }

  /** The task's name. */
  get name(): string {
    if (typeof this.#name === "number") this.#name = `Task-${this.#name}`;
    return this.#name;
  }

  /** The task's signal: aborted when the task is cancelled. */
  get signal(): AbortSignal {
    return this.#controller().signal;
  }

  /** Whether the task has settled (fulfilled, rejected or cancelled). */
  get done(): boolean {
    return (this.#state & OUTCOME) !== PENDING;
  }

  /** Whether the task was cancelled (asyncio's Task.cancelled()). */
  get cancelled(): boolean {
    return (this.#state & CANCELLED) !== 0;
  }

  /**
   * Aborts the task's signal (listeners run in the task's Context) and settles
   * the task rejected with `reason` (default: the signal's AbortError). The
   * function goes on until it heeds the signal. A rejection caused by cancel
   * is never reported as unhandled.
   * @returns false if the task was already done.
   */
  cancel(reason?: unknown): boolean {
    if ((this.#state & OUTCOME) !== PENDING) return false;
    this.#state |= CANCELLED;
    const controller = this.#controller();
    slot.run(this.context, () => controller.abort(reason));
    this.#extras?.promise?.catch(ignore);
    this.#settle(false, controller.signal.reason);
    return true;
  }

  // biome-ignore lint/suspicious/noThenProperty: a Task is a PromiseLike by design
  then<R1 = T, R2 = never>(
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#promiseOf().then(onFulfilled, onRejected);
  }

  catch<R = never>(onRejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#promiseOf().catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<T> {
    return this.#promiseOf().finally(onFinally);
  }

  get [Symbol.toStringTag](): string {
    return "Task";
  }

  /** `Task("fetch-user")` */
  toString(): string {
    return `Task(${JSON.stringify(this.name)})`;
  }

  [inspectCustom](_depth: number, _options: object, _inspect?: InspectFn): string {
    const state = this.cancelled ? "cancelled" : this.done ? "done" : "pending";
    return `<Task name=${JSON.stringify(this.name)} ${state} context=${this.context.toString()}>`;
  }

  #more(): Extras {
    this.#extras ??= newExtras();
    return this.#extras;
  }

  // Made on demand: `new AbortController().signal` costs microseconds on Node 20,
  // more than all the rest of a task.
  #controller(): AbortController {
    const extras = this.#more();
    extras.controller ??= new AbortController();
    return extras.controller;
  }

  // The task's own promise, made when first asked for (then, catch, finally,
  // run, gather of a settled task) or when a rejection nobody observes must be
  // reported: most tasks are awaited by gather or a group, which observe them
  // through #observer, and a promise plus its reaction is most of what a task
  // would otherwise cost.
  #promiseOf(): Promise<T> {
    const extras = this.#more();
    if (extras.promise !== undefined) return extras.promise as Promise<T>;
    const outcome = this.#state & OUTCOME;
    if (outcome === PENDING) {
      // One shared executor, not a closure per task; the module slots are
      // cleared at once so they never keep a settled task's promise alive.
      extras.promise = new NativePromise<T>(captureResolvers);
      extras.resolve = capturedResolve;
      extras.reject = capturedReject;
      capturedResolve = undefined;
      capturedReject = undefined;
    } else if (outcome === FULFILLED) {
      extras.promise = NativePromise.resolve(this.#value as T);
    } else {
      // Only an observed or cancelled task gets here: anything else made its
      // promise when it failed. A cancel is never reported as unhandled (see
      // cancel): run() hands this promise out as it is, and a main that
      // cancelled itself before returning got here with no reaction on it.
      extras.promise = slot.run(this.#creator, rejected, this.#value);
      if ((this.#state & CANCELLED) !== 0) extras.promise.catch(ignore);
    }
    return extras.promise as Promise<T>;
  }

  #settle(ok: boolean, value: unknown): void {
    if ((this.#state & OUTCOME) !== PENDING) return;
    this.#state |= ok ? FULFILLED : REJECTED;
    this.#value = value;
    const extras = this.#extras;
    if (extras?.onOuterAbort !== undefined) {
      const outer = extras.outer;
      const onOuterAbort = extras.onOuterAbort;
      extras.outer = undefined;
      extras.onOuterAbort = undefined;
      try {
        if (outer !== undefined) offAbort(outer, onOuterAbort);
      } catch {
        // Only a signal whose own removeEventListener throws gets here: the
        // task settles all the same (else an await of it, or its TaskGroup,
        // would never hear of it); the listener it kept only cancels a task
        // that is done already.
      }
    }
    this.#observer?.(this.#tag, ok, value);
    const resolve = extras?.resolve;
    const reject = extras?.reject;
    if (extras !== undefined) extras.resolve = extras.reject = undefined;
    if (ok) resolve?.(value);
    // Rejected in the creator's Context, where the promise was made: an
    // 'unhandledRejection' handler sees the Context a promise was created in
    // under async_hooks (Node 20, 22) but the one it was rejected in under
    // AsyncContextFrame (Node 24+); this makes both the creator's.
    else if (reject !== undefined) slot.run(this.#creator, reject, value);
    // A failure nobody observes must still be reported, as a promise's would.
    else if (this.#observer === undefined && (this.#state & CANCELLED) === 0) {
      this.#more().promise = slot.run(this.#creator, rejected, value);
    }
  }
}

// What only some tasks use: their own promise (then, catch, finally, run),
// their signal's controller, an outer signal's listener, a shared Context's
// hand-back, those waiting for the function to settle (TaskGroup,
// timeout), and what the function failed with after a cancel. Every field is
// written in newExtras, so all have one shape.
interface Extras {
  promise: Promise<unknown> | undefined;
  resolve: ((value: unknown) => void) | undefined;
  reject: ((reason: unknown) => void) | undefined;
  controller: AbortController | undefined;
  onFnSettled: (() => void) | undefined;
  outer: AbortSignal | undefined;
  onOuterAbort: (() => void) | undefined;
  release: (() => void) | undefined;
  fnError: unknown;
}

function newExtras(): Extras {
  return {
    promise: undefined,
    resolve: undefined,
    reject: undefined,
    controller: undefined,
    onFnSettled: undefined,
    outer: undefined,
    onOuterAbort: undefined,
    release: undefined,
    fnError: undefined,
  };
}

function ignore(): void {}

function rejected(reason: unknown): Promise<never> {
  return NativePromise.reject(reason);
}

// Task#state: the outcome in the low two bits, and two flags.
const PENDING = 0;
const FULFILLED = 1;
const REJECTED = 2;
const OUTCOME = 3;
// The task's function has settled (after a cancel this can be later than the task).
const FN_SETTLED = 4;
const CANCELLED = 8;
// The function failed after the task was cancelled (its error is in Extras.fnError).
const FN_FAILED_AFTER_CANCEL = 16;

/** Told, synchronously, how a task settled, with the tag it was given. Internal (gather). */
export type Observer = (tag: number, ok: boolean, value: unknown) => void;

let capturedResolve: ((value: unknown) => void) | undefined;
let capturedReject: ((reason: unknown) => void) | undefined;
// Any Promise<T>'s executor: `never` accepts every T's resolve function.
function captureResolvers(
  resolve: (value: never) => void,
  reject: (reason?: unknown) => void,
): void {
  capturedResolve = resolve as (value: unknown) => void;
  capturedReject = reject;
}

// The tasks started in each Context given with options.context, in start
// order, while their functions run (and the task the Context had before, if any).
const sharing = new WeakMap<Context, Set<Task<unknown>>>();

// then as Promise.prototype has it: a promise whose then is another is followed as a thenable.
const promiseThen = NativePromise.prototype.then;

// Whether each task function declares a parameter: reading `length` goes
// through an accessor that costs a third of a whole task, and tasks started in
// a loop mostly run the same function. Weak, so a function is never kept
// alive by having been a task's (a plain "last function" slot would keep the
// last one, and all it closes over, until the next task).
const takesSignal = new WeakMap<Function, boolean>();

// Calls fn in the task's Context and follows what it returns. A function that
// declares no parameter is called without one, so a task that never looks at
// its signal never pays for it. Only fn runs inside the Context: a native
// promise's `then` runs no user code, so the reaction is attached out here,
// and the run takes no arguments array.
function start<T>(task: Task<T>, fn: TaskFunction<T>): void {
  let result: T | PromiseLike<T>;
  try {
    let withSignal = takesSignal.get(fn);
    if (withSignal === undefined) {
      withSignal = fn.length > 0;
      takesSignal.set(fn, withSignal);
    }
    result = withSignal
      ? slot.run(task.context, fn, task.signal)
      : slot.run(task.context, fn as () => T | PromiseLike<T>);
  } catch (error) {
    fnSettled(task, false, error);
    return;
  }
  let native = false;
  try {
    native = result instanceof NativePromise && result.then === promiseThen;
  } catch {
    // Only an exotic object throws here: a Proxy whose getPrototypeOf trap
    // throws, or a promise with a `then` getter that throws. follow reads
    // `then` again, in the task's Context, and settles the task as
    // Promise.resolve would, rather than let createTask throw after the
    // task was made (gather would then leave the tasks before it running).
  }
  if (native) {
    // A native promise has adopted any thenable already, and its then cannot
    // throw. A subclass that overrides then (p-lazy starts its work there)
    // goes through follow like any thenable. The extra compare costs nothing
    // measurable (bench/tasks.bench.ts, two runs each way).
    (result as Promise<T>).then(
      (value: unknown) => fnSettled(task, true, value),
      (error: unknown) => fnSettled(task, false, error),
    );
  } else if (result === null || (typeof result !== "object" && typeof result !== "function")) {
    fnSettled(task, true, result);
  } else {
    // Reading `then` and calling it may run user code: in the task's Context.
    slot.run(task.context, follow, task, result);
  }
}

function follow<T>(task: Task<T>, result: unknown): void {
  if (result === task) {
    // A function that returns its own task (`createTask(() => currentTask())`)
    // would wait for itself forever: a promise resolved with itself rejects.
    fnSettled(task, false, new TypeError(`Chaining cycle detected for ${task}`));
    return;
  }
  let then: Function | undefined;
  try {
    then = thenOf(result);
  } catch (error) {
    fnSettled(task, false, error);
    return;
  }
  if (then === undefined) {
    fnSettled(task, true, result);
    return;
  }
  // then is called now, as an eager task starts now; a Promise around the call
  // gives the task a Promise's rules for what then does: the first call of
  // resolve or reject wins, a throw after it is ignored, and a thenable it
  // resolves with is adopted (test/tasks/task.test.ts checks each against
  // Promise.resolve(thenable)).
  const call = then;
  new NativePromise<unknown>((resolve, reject) => {
    Reflect.apply(call, result, [resolve, reject]);
  }).then(
    (value: unknown) => fnSettled(task, true, value),
    (error: unknown) => fnSettled(task, false, error),
  );
}

/**
 * Starts `fn` now, as a task in a copy of the current Context (or in
 * `options.context`): its sets stay in the task, and the caller's later sets
 * are not seen by it (asyncio.create_task). `fn` receives the task's
 * AbortSignal if it declares a parameter.
 *
 * @example
 * const task = createTask(async (signal) => fetch(url, { signal }), { name: "fetch" });
 * task.cancel();
 * @throws {TypeError} if fn is not a function or an option has the wrong type.
 */
export function createTask<T>(fn: TaskFunction<T>, options?: TaskOptions): Task<T> {
  if (typeof fn !== "function") throw taskFunctionError(fn, "createTask(() => work())");
  if (options === undefined)
    return createTaskImpl(fn, undefined, undefined, undefined, undefined, 0);
  if (typeof options !== "object" || options === null) {
    throw argumentError("options", "an object", options);
  }
  // Each option read once, in this order, and the value checked is the value
  // used: a getter read again could hand the task something unchecked, or
  // throw after the task had begun listening to its signal.
  const { name, context, signal } = options;
  if (name !== undefined && typeof name !== "string") {
    throw argumentError("options.name", "a string", name);
  }
  assertContext("options.context", context);
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw argumentError("options.signal", "an AbortSignal", signal);
  }
  return createTaskImpl(fn, name, context, signal, undefined, 0);
}

/**
 * The TypeError for a task's fn that is not a function. A promise is what
 * asyncio.create_task(work()) would give, and its work has begun in the
 * caller's Context, which a task exists to keep it out of: the message says
 * to pass the function instead, as `advice` shows it; `where` names the
 * method's owner, as argumentError's does. Internal.
 */
export function taskFunctionError(
  fn: unknown,
  advice: string,
  name = "fn",
  where?: string,
): TypeError {
  let promise = false;
  try {
    promise = thenOf(fn) !== undefined;
  } catch {
    // A `then` getter that throws: not told apart, as no function either.
  }
  const expected = promise
    ? `a function that starts the work, not a promise, which has started it in the caller's Context already: ${advice}`
    : "a function";
  return argumentError(name, expected, fn, where);
}

/**
 * createTask for gather: `observer(tag, ok, value)` hears how the task
 * settles, and handles its failure. Internal.
 */
export function createObservedTask<T>(
  fn: TaskFunction<T>,
  observer: Observer,
  tag: number,
): Task<T> {
  return createTaskImpl(fn, undefined, undefined, undefined, observer, tag);
}

/**
 * The task whose Context the calling code runs in (through awaits, timers and
 * copies of that Context), or undefined outside any task.
 */
export function currentTask(): Task<unknown> | undefined {
  return taskIn(current()) as Task<unknown> | undefined;
}
