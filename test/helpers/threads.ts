/**
 * Starting real worker threads from tests. Tests run TypeScript through tsx
 * (`node --conditions=contextvars-source --import tsx --test`), so a worker
 * must load the same source: the `contextvars-source` condition makes
 * `import "contextvars"` resolve to src/ (the same modules the test uses), and
 * tsx must be registered inside the worker. On Node 20 `--import tsx` alone
 * does not do that for worker threads, hence the extra preload. Workers
 * started inside these workers inherit this execArgv (Node's default).
 *
 * Deno runs TypeScript itself and starts a worker with the process's own
 * flags, `--conditions` among them; its Worker refuses `--import` in
 * execArgv, so there the list is empty.
 */
import { fileURLToPath } from "node:url";
import type { Worker as NodeWorker } from "node:worker_threads";

export const workerExecArgv: string[] =
  (globalThis as { Deno?: unknown }).Deno !== undefined
    ? []
    : [
        "--conditions=contextvars-source",
        "--import",
        "tsx",
        "--import",
        fileURLToPath(new URL("./tsx-in-workers.mjs", import.meta.url)),
      ];

/** The URL of a file in test/threads/fixtures/. */
export function fixture(name: string): URL {
  return new URL(`../threads/fixtures/${name}`, import.meta.url);
}

/** The first message the worker posts; rejects on an error or an exit before it. */
export function firstMessage<T>(worker: NodeWorker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once("message", (message: T) => {
      resolve(message);
      void worker.terminate();
    });
    worker.once("error", reject);
    worker.once("exit", (code) =>
      reject(new Error(`worker exited with code ${code} before posting`)),
    );
  });
}
