/**
 * What the core's thread hook (core/inherit.ts) gets in place of
 * `node:worker_threads` under the `browser` condition (package.json
 * `#worker-threads`): a page is one thread with no environment data, so no
 * var ever receives a parent's value. A Web Worker loads its own copy of the
 * package and starts from an empty root Context.
 */

/** A page (or a Web Worker) is always the main thread of its own copy of the package. */
export const isMainThread: boolean = true;

/** A page is no child process: it files its vars by name only once a pool's job runner loads, which never happens. */
export const hasIpcChannel: boolean = false;

/** Nothing crosses: there is no parent thread that set any. */
export function getEnvironmentData(_key: unknown): unknown {
  return undefined;
}

/** Nothing to hand on: no Worker of `contextvars/worker` runs in a browser. */
export function setEnvironmentData(_key: unknown, _value: unknown): void {}
