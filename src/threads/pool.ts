import { fileURLToPath } from "node:url";
import type { TransferListItem } from "node:worker_threads";
import type { Context } from "../core/context.ts";
import { currentContext } from "../core/current.ts";
import { inspectCustom } from "../core/inspect.ts";
import { NativePromise } from "../core/native-promise.ts";
import { argumentError } from "../errors.ts";
import { offAbort, onAbort } from "../tasks/abort-listeners.ts";
import type { JobPayload } from "./pool-job.ts";
import {
  assertOnUncloneable,
  collectValues,
  diagnose,
  type OnUncloneable,
  problemIn,
} from "./transfer.ts";

// The worker-side entry that piscina loads in place of the user's file: the
// source file under tsx (tests), the built one from dist.
const ENTRY = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "./pool-entry.ts" : "./pool-entry.js", import.meta.url),
);
// piscina's Transferable interface: global symbols, so they are seen without importing piscina.
const kTransferable = Symbol.for("Piscina.transferable");
const kValue = Symbol.for("Piscina.valueOf");

// Whether task came from Piscina.move(): piscina moves only such a task, and
// clones any other whole, a Transferable too. move() marks it with a symbol
// of piscina's own (not a global one, the same in piscina 4 and 5), found
// here by its description.
function isMoved(task: unknown): task is Record<symbol, unknown> {
  if (typeof task !== "object" || task === null || !(kTransferable in task && kValue in task)) {
    return false;
  }
  const marks = Object.getOwnPropertySymbols(task);
  return marks.some(
    (mark) => mark.description === "Piscina.kMovable" && Reflect.get(task, mark) === true,
  );
}

/**
 * toThread's way in: a job whose task is the argument list, with the values
 * of `context` (a copy taken when toThread was called), collected under the
 * pool's onUncloneable. Internal.
 * @throws {TransferError} as collectValues.
 */
export let runCall: (
  pool: ContextPool,
  filename: string,
  name: string,
  args: unknown[],
  context: Context,
) => Promise<unknown>;

/** The options of one job, as piscina's `run` options; `filename` may also be a URL. */
export interface ContextRunOptions {
  filename?: string | URL | null | undefined;
  name?: string | null | undefined;
  transferList?: TransferListItem[] | undefined;
  signal?: AbortSignal | null | undefined;
}

/** What ContextPool needs of a piscina pool (piscina 5's `Piscina` has it). */
export interface PiscinaLike {
  run(
    task: unknown,
    options: {
      filename: string;
      name: string;
      transferList?: TransferListItem[];
      signal?: AbortSignal | null;
    },
  ): Promise<unknown>;
  readonly options: { readonly filename: string | null; readonly name: string };
  close(options?: { force?: boolean }): Promise<void>;
  destroy(): Promise<void>;
}

/** The options of `contextPool`. */
export interface ContextPoolOptions {
  /** A value that cannot be structured-cloned: `"throw"` a TransferError (default) or `"skip"` the var. */
  onUncloneable?: OnUncloneable | undefined;
}

/** A module named by URL or absolute path, as piscina takes it. Internal. */
export function asFilename(value: unknown, name: string): string {
  if (value instanceof URL) {
    if (value.protocol === "file:") return value.href;
    // The thread imports it as a path: a URL of another scheme fails there, far from the call.
    throw argumentError(
      name,
      `a file: URL or an absolute path, not a URL with scheme ${value.protocol}`,
      value,
    );
  }
  if (typeof value === "string" && (value.startsWith("file:") || value.startsWith("/"))) {
    return value;
  }
  if (typeof value === "string" && /^[a-zA-Z]:[\\/]/.test(value)) return value;
  throw argumentError(name, "a file: URL or an absolute path", value);
}

// How postMessage fails on a value: a DataCloneError, or a RangeError when
// the value is nested deeper than the serializer's stack allows (the walk
// does not enter an Error's cause, and may itself get deeper than the
// serializer once V8 has optimised it). By name, not instanceof: under jest
// this package runs in a vm context, and postMessage throws from Node's realm.
function isCloneFailure(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  try {
    const { name } = error as { name?: unknown };
    return name === "RangeError" || name === "DataCloneError";
  } catch {
    return false;
  }
}

function holdsObject([, value]: readonly [string, unknown]): boolean {
  return typeof value === "object" && value !== null;
}

/** Posts a job; a clone failure in the values becomes a TransferError (or the values are dropped). */
async function post(
  piscina: PiscinaLike,
  payload: JobPayload,
  run: ContextRunOptions,
  onUncloneable: OnUncloneable | undefined,
): Promise<unknown> {
  const options = { filename: ENTRY, name: "default", ...pick(run) };
  // piscina adds an abort listener per job, and Node warns past ten on one
  // signal: a request's, handed to each job of a fan-out, gets one listener
  // (shared with tasks and groups), which aborts a signal of the job's own
  // with the same reason, so piscina's AbortError is the same.
  const shared = options.signal;
  let detach: (() => void) | undefined;
  if (shared instanceof AbortSignal && !shared.aborted) {
    const own = new AbortController();
    const forward = () => own.abort(shared.reason);
    onAbort(shared, forward);
    detach = () => offAbort(shared, forward);
    options.signal = own.signal;
  }
  // Whether the values were cloned into the job's message: the clone reads
  // an object's own properties in order, getters included (HTML's
  // StructuredSerialize), and stops at the first that fails, so a getter
  // after the values runs only once they were cloned. A RangeError or
  // DataCloneError after that is the job's own, though the values may no
  // longer clone by then (a var's buffer transferred since, by this job's
  // transferList or another's), and must not be taken for the post's: a
  // TransferError, or with "skip" the job run a second time. Only object
  // values can change so; with none (ids, numbers) the message stays plain,
  // as cloning an accessor costs more than cloning a data property.
  let valuesSent = false;
  let message: JobPayload = payload;
  if (payload.values.some(holdsObject)) {
    const marked: JobPayload & { readonly sent: boolean } = {
      filename: payload.filename,
      name: payload.name,
      values: payload.values,
      get sent(): boolean {
        valuesSent = true;
        return true;
      },
      task: payload.task,
      spread: payload.spread,
    };
    message = marked;
  }
  try {
    return await piscina.run(message, options);
  } catch (error) {
    // The walk in collectValues catches what it can see; what it cannot (a
    // Proxy) fails in piscina's postMessage and is named here.
    if (valuesSent || !isCloneFailure(error)) throw error;
    const transferError = diagnose(payload.values);
    if (transferError === undefined) throw error;
    if (onUncloneable !== "skip") throw transferError;
    const values = payload.values.filter(([, value]) => problemIn(value, true) === undefined);
    return await piscina.run({ ...payload, values }, options);
  } finally {
    try {
      detach?.();
    } catch {
      // Only a signal whose own removeEventListener throws gets here: the
      // job's outcome stands, and the listener it kept aborts a job that is over.
    }
  }
}

// What piscina takes for a signal: an EventTarget, or else an EventEmitter.
function isAbortSignalLike(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const signal = value as { addEventListener?: unknown; once?: unknown };
  return (
    typeof ("addEventListener" in signal ? signal.addEventListener : signal.once) === "function"
  );
}

/** The options piscina is given: only those set, each as piscina's own type. */
type Picked = { transferList?: TransferListItem[]; signal?: AbortSignal };

function pick(run: ContextRunOptions): Picked {
  const picked: Picked = {};
  if (run.transferList !== undefined) picked.transferList = run.transferList;
  if (run.signal != null) picked.signal = run.signal;
  return picked;
}

/**
 * Whether value is a ContextPool: a brand check, which `instanceof` is not
 * (an `Object.create(ContextPool.prototype)` passes it, then fails at every
 * job). Internal.
 */
export let isContextPool: (value: unknown) => value is ContextPool;

/**
 * A piscina pool whose jobs run in a copy of their caller's Context: each
 * `run(task)` takes the current Context's values (by name, structured-cloned,
 * `{ transfer: false }` vars left out) and the job's export is called in a
 * fresh Context of the worker where the vars of the same names hold them.
 * Sets made by the job never come back, and concurrent jobs never see each
 * other's values. The worker needs no code beyond creating its vars at the
 * top level of its module. Made by `contextPool(piscina)`.
 *
 * @example
 * const pool = contextPool(new Piscina({ filename: new URL("./hash.js", import.meta.url).href }));
 * requestId.run("r-1", () => pool.run(data)); // hash.js's default export sees requestId "r-1"
 */
export class ContextPool<T = unknown, R = unknown> implements AsyncDisposable {
  /** The piscina pool that runs the jobs. */
  readonly piscina: PiscinaLike;
  readonly #onUncloneable: OnUncloneable | undefined;

  static {
    isContextPool = (value): value is ContextPool =>
      typeof value === "object" && value !== null && #onUncloneable in value;
  }

  /**
   * @throws {TypeError} if piscina is not a piscina pool (a `run` method and `options`) or is a
   *   ContextPool, or onUncloneable is not "throw"/"skip".
   */
  constructor(piscina: PiscinaLike, options?: ContextPoolOptions) {
    if (isContextPool(piscina)) {
      throw argumentError(
        "piscina",
        "a Piscina pool, not one already wrapped (use the ContextPool as it is, or wrap its .piscina)",
        piscina,
      );
    }
    // run() reads the pool's options for each job's default filename and name.
    if (
      typeof piscina !== "object" ||
      piscina === null ||
      typeof piscina.run !== "function" ||
      typeof piscina.options !== "object" ||
      piscina.options === null
    ) {
      throw argumentError("piscina", "a Piscina pool", piscina);
    }
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw argumentError("options", "an object", options);
    }
    // Read once: the value checked is the value kept.
    const onUncloneable = options?.onUncloneable;
    assertOnUncloneable(onUncloneable);
    this.piscina = piscina;
    this.#onUncloneable = onUncloneable;
  }

  /**
   * Runs `task` on a pool thread (piscina's `run`), in a copy of the current
   * Context taken now. `Piscina.move(value)` tasks work as with piscina.
   * @returns the job's result, as piscina's run.
   * @throws {TransferError} (as a rejection) ERR_CONTEXTVAR_UNCLONEABLE or ERR_CONTEXTVAR_NAME_CLASH.
   * @throws {TypeError} (as a rejection) if options is not an object, filename is neither a
   *   file: URL nor an absolute path, name is not a string, transferList is not an array,
   *   or signal is not an AbortSignal.
   * @example
   * const result = await pool.run({ n: 40 }, { name: "fib" });
   */
  run(task: T, options: ContextRunOptions = {}): Promise<R> {
    try {
      if (typeof options !== "object" || options === null) {
        throw argumentError("options", "an object", options);
      }
      // Each option read once: the value checked is the value used.
      const run = { ...options };
      const name = run.name ?? this.piscina.options.name ?? "default";
      if (typeof name !== "string") throw argumentError("options.name", "a string", name);
      // Named where it came from: the run's options, or the Piscina's own.
      const filename =
        run.filename != null
          ? asFilename(run.filename, "options.filename")
          : asFilename(this.piscina.options.filename, "piscina.options.filename");
      // Checked here, not left to piscina: a Piscina.move task spreads the
      // list, and piscina calls what it takes for a signal.
      if (run.transferList !== undefined && !Array.isArray(run.transferList)) {
        throw argumentError("options.transferList", "an array", run.transferList);
      }
      if (run.signal != null && !isAbortSignalLike(run.signal)) {
        throw argumentError("options.signal", "an AbortSignal", run.signal);
      }
      const values = collectValues(currentContext(), {
        onUncloneable: this.#onUncloneable,
        passThrough: true,
        exact: false,
      });
      let job: unknown = task;
      if (isMoved(task)) {
        // One transferable or a list of them (piscina's Transferable interface): concat, as piscina does.
        const items = task[kTransferable] as TransferListItem | TransferListItem[];
        run.transferList = (run.transferList ?? []).concat(items);
        job = task[kValue];
      }
      const payload: JobPayload = {
        filename,
        name,
        values,
        task: job,
        spread: false,
      };
      return post(this.piscina, payload, run, this.#onUncloneable) as Promise<R>;
    } catch (error) {
      return NativePromise.reject(error);
    }
  }

  static {
    runCall = (pool, filename, name, args, context) => {
      const onUncloneable = pool.#onUncloneable;
      const values = collectValues(context, { onUncloneable, passThrough: true, exact: false });
      return post(
        pool.piscina,
        { filename, name, values, task: args, spread: true },
        {},
        onUncloneable,
      );
    };
  }

  /**
   * Waits for queued jobs, then stops the threads (piscina's close);
   * `{ force: true }` rejects the jobs not started yet with an AbortError.
   * @throws {TypeError} (as a rejection) if options is not an object or force is not a boolean.
   */
  close(options?: { force?: boolean | undefined }): Promise<void> {
    if (options === undefined) return this.piscina.close();
    if (typeof options !== "object" || options === null) {
      return NativePromise.reject(argumentError("options", "an object", options));
    }
    // Read once: the value checked is the value passed on.
    const force = options.force;
    if (force !== undefined && typeof force !== "boolean") {
      return NativePromise.reject(argumentError("options.force", "a boolean", force));
    }
    return this.piscina.close(force === undefined ? {} : { force });
  }

  /** Stops the threads now; queued jobs reject (piscina's destroy). */
  destroy(): Promise<void> {
    return this.piscina.destroy();
  }

  /** `await using pool = contextPool(…)` closes it at scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  get [Symbol.toStringTag](): string {
    return "ContextPool";
  }

  toString(): string {
    return `<ContextPool filename=${JSON.stringify(this.piscina.options.filename)}>`;
  }

  [inspectCustom](): string {
    return this.toString();
  }
}

/**
 * Wraps a piscina pool so that `pool.run(task)` runs each job in a copy of
 * the caller's Context (see ContextPool). The pool's own filename and name
 * are the defaults for each job, as with piscina.
 *
 * @example
 * import { Piscina } from "piscina";
 * const pool = contextPool(new Piscina({ filename: new URL("./resize.js", import.meta.url).href }));
 * await pool.run(image);
 * @throws {TypeError} if piscina is not a pool or onUncloneable is not "throw"/"skip".
 */
export function contextPool<T, R>(
  piscina: PiscinaLike & {
    run(task: T, options: never): PromiseLike<R>;
  } & (0 extends 1 & (T | R) ? never : unknown),
  options?: ContextPoolOptions,
): ContextPool<T, R>;
export function contextPool<T = unknown, R = unknown>(
  piscina: PiscinaLike,
  options?: ContextPoolOptions,
): ContextPool<T, R>;
// The first signature reads T and R from a typed pool (piscina's
// `Piscina<T, R>`); a pool of piscina's default `any`s takes the second, where
// they are written out, come from the type the result is assigned to, or are
// unknown.
export function contextPool(piscina: PiscinaLike, options?: ContextPoolOptions): ContextPool {
  return new ContextPool(piscina, options);
}

export { ENTRY as poolEntry };
