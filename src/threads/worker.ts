import {
  getEnvironmentData,
  Worker as NodeWorker,
  type WorkerOptions as NodeWorkerOptions,
  setEnvironmentData,
} from "node:worker_threads";
import { assertContext } from "../core/bind.ts";
import type { Context } from "../core/context.ts";
import { currentContext } from "../core/current.ts";
import { VALUES_KEY } from "../core/inherit.ts";
import { argumentError } from "../errors.ts";
import { assertOnUncloneable, collectValues, type OnUncloneable } from "./transfer.ts";

/** The options of `node:worker_threads`' Worker, plus the Context the thread starts with. */
export interface WorkerOptions extends NodeWorkerOptions {
  /**
   * Whose values the worker's root Context starts with. Default: a copy of
   * the current Context, taken when the Worker is constructed (values this
   * thread itself received for vars it never created are passed on too).
   */
  context?: Context | undefined;
  /** A value that cannot be structured-cloned: `"throw"` a TransferError (default) or `"skip"` the var. */
  onUncloneable?: OnUncloneable | undefined;
}

/**
 * A `node:worker_threads` Worker whose thread starts with its parent's
 * context: in the worker's root Context, every ContextVar the worker creates
 * holds the value that the var of the same name has in `options.context`
 * (default: the current Context). The worker needs no code for this beyond
 * importing `contextvars`. Values cross by structured clone, so the worker
 * gets copies, and its sets never come back. Vars created with
 * `{ transfer: false }` stay behind. All other options (`workerData`,
 * `execArgv`, `transferList`, …) are passed to Node's Worker unchanged;
 * a Worker started inside the worker inherits the same way.
 *
 * The values travel in Node's `environmentData`, which is cloned into each
 * new thread when its Worker is constructed: they are set just around the
 * `super()` call and the previous entry is put back at once, so other
 * Workers are never affected.
 *
 * @example
 * // main.ts
 * const requestId = new ContextVar<string>("requestId");
 * requestId.run("r-1", () => new Worker(new URL("./job.ts", import.meta.url)));
 * // job.ts: no setup
 * const requestId = new ContextVar<string>("requestId");
 * requestId.get(); // "r-1"
 * @throws {TransferError} ERR_CONTEXTVAR_UNCLONEABLE if a value cannot be cloned
 *   (unless `onUncloneable: "skip"`), ERR_CONTEXTVAR_NAME_CLASH if two vars
 *   with values in the Context share a name.
 * @throws {TypeError} if `context` is not a Context, `onUncloneable` is not
 *   "throw" or "skip", or Node's Worker rejects the other options.
 */
export class Worker extends NodeWorker {
  constructor(filename: string | URL, options?: WorkerOptions) {
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw argumentError("options", "an object", options);
    }
    const { context, onUncloneable, ...nodeOptions } = options ?? {};
    assertContext("options.context", context);
    assertOnUncloneable(onUncloneable);
    const values = collectValues(context ?? currentContext(), {
      onUncloneable,
      passThrough: context === undefined,
      exact: true,
    });
    const previous = getEnvironmentData(VALUES_KEY);
    setEnvironmentData(VALUES_KEY, values.length > 0 ? values : undefined);
    try {
      super(filename, options === undefined ? undefined : nodeOptions);
    } finally {
      setEnvironmentData(VALUES_KEY, previous);
    }
  }

  get [Symbol.toStringTag](): string {
    return "Worker";
  }
}
