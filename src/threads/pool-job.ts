/**
 * The pool's side of a job, in each worker thread: it imports the user's
 * module, builds the job's Context from the values that came with the task,
 * and calls the user's export in it. Reached from `pool-entry.ts`, the file
 * piscina loads; not exported from the package.
 */
import { pathToFileURL } from "node:url";
import { contextWith, mapOf } from "../core/context.ts";
import { rootContext } from "../core/current.ts";
import { type CrossingValues, fileVarsByName, varsNamed } from "../core/inherit.ts";
import { NativePromise } from "../core/native-promise.ts";

// Jobs find their vars by name, filed from the start in a worker thread and
// in a child process forked with an IPC channel; in any other process, from
// here on (before the job's module is imported).
fileVarsByName();

/** What `ContextPool` posts to piscina for each job. Internal. */
export interface JobPayload {
  /** The user's module: a `file:` URL or an absolute path. */
  readonly filename: string;
  /** The export to call. */
  readonly name: string;
  readonly values: CrossingValues;
  /** The job's argument; with `spread`, the list of its arguments (toThread). */
  readonly task: unknown;
  readonly spread: boolean;
}

type Handler = (...args: unknown[]) => unknown;

// Loaded handlers are called without an await, so a job costs no extra turn of the event loop.
const ready = new Map<string, Handler>();
const loading = new Map<string, Promise<Handler>>();

// "constructor", "toString", "call"…: what every object or function has
// from Object.prototype or Function.prototype is not an export of the module
// (a user's class instance keeps the methods of its own prototype).
function isBuiltIn(exports: object, name: string): boolean {
  if (Object.hasOwn(exports, name)) return false;
  const builtIns: object = typeof exports === "function" ? Function.prototype : Object.prototype;
  return (exports as Record<string, unknown>)[name] === (builtIns as Record<string, unknown>)[name];
}

async function load(filename: string, name: string, spread: boolean): Promise<Handler> {
  const url = filename.startsWith("file:") ? filename : pathToFileURL(filename).href;
  const module = (await import(url)) as Record<string, unknown>;
  let handler = module[name];
  // A CommonJS file's exports arrive as `default`: module.exports[name], or module.exports itself.
  const fallback: unknown = module.default;
  if (
    typeof handler !== "function" &&
    (typeof fallback === "object" || typeof fallback === "function")
  ) {
    handler =
      fallback === null || isBuiltIn(fallback, name)
        ? undefined
        : (fallback as Record<string, unknown>)[name];
  }
  if (typeof handler !== "function") {
    // The name came from toThread's argument, or from the run's options (or the Piscina's).
    const pass = spread
      ? "pass toThread the name of a function it exports, toThread(moduleUrl, exportName)"
      : "pass the name of a function it exports, pool.run(task, { name })";
    throw new TypeError(
      `${filename} has no function export named \`${name}\`; ${pass}, or export one named \`${name}\``,
    );
  }
  return handler as Handler;
}

function loadOnce(key: string, payload: JobPayload): Promise<Handler> {
  let pending = loading.get(key);
  if (pending === undefined) {
    pending = load(payload.filename, payload.name, payload.spread).then(
      (handler) => {
        ready.set(key, handler);
        loading.delete(key);
        return handler;
      },
      (error: unknown) => {
        // A failed import is not kept: the next job tries again, as piscina does.
        loading.delete(key);
        throw error;
      },
    );
    loading.set(key, pending);
  }
  return pending;
}

function runIn(handler: Handler, payload: JobPayload): unknown {
  // The root, not whatever piscina's message handler runs in: every job starts alike.
  let map = mapOf(rootContext);
  for (const [name, value] of payload.values) {
    for (const v of varsNamed(name)) map = map.set(v, value);
  }
  const context = contextWith(map, undefined);
  const args = payload.spread ? (payload.task as unknown[]) : [payload.task];
  let result: unknown;
  try {
    result = context.run(handler, ...args);
  } catch (error) {
    throw error === null ? thrownNull(payload) : error;
  }
  // piscina awaits what the job returns, a thenable that is no Promise (a
  // query builder's) as a Promise: both are read here, once, as await would.
  if (typeof result === "object" && result !== null) {
    return NativePromise.resolve(result).then(undefined, (error: unknown) => {
      throw error === null ? thrownNull(payload) : error;
    });
  }
  return result;
}

// piscina's reply carries `error: null` for a job that succeeded, so a job
// that throws null would resolve with null (piscina 4 and 5): it becomes an
// error that says so.
function thrownNull(payload: JobPayload): TypeError {
  return new TypeError(
    `\`${payload.name}\` of ${payload.filename} threw null, which piscina would resolve the job with; throw an Error instead`,
  );
}

/**
 * Runs one job: the user's export, called with the task in a copy of this
 * thread's root Context where every var named in the job's values holds
 * its value. The user's module is imported first, so the vars it creates
 * at its top level exist when the Context is built. Returns what the export
 * returns (piscina awaits it).
 */
export function runJob(payload: JobPayload): unknown {
  const key = `${payload.filename}#${payload.name}`;
  const handler = ready.get(key);
  if (handler !== undefined) return runIn(handler, payload);
  return loadOnce(key, payload).then((loaded) => runIn(loaded, payload));
}
