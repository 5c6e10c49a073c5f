/**
 * The wrappers of docs/threads.md ("Other pools") as a user copies them:
 * a tinypool pool and a workerpool pool as the PiscinaLike that contextPool
 * takes. test/threads/tinypool.test.ts, workerpool.test.ts and
 * process-pools.test.ts wrap their pools with these.
 */
import type { PiscinaLike } from "contextvars/worker";
import TinypoolClass from "tinypool";
import { JOB } from "./pool-checks.ts";
import { workerExecArgv } from "./threads.ts";

type Tinypool = TinypoolClass;

import type workerpool from "workerpool";

/** A tinypool pool as contextPool takes it (tinypool has no close(); destroy() ends running jobs). */
export function fromTinypool(pool: Tinypool): PiscinaLike {
  return {
    options: pool.options,
    run: (task, options) => pool.run(task, options),
    close: () => pool.destroy(),
    destroy: () => pool.destroy(),
  };
}

export type WorkerPool = ReturnType<typeof workerpool.pool>;

/** A workerpool pool whose worker script registers `run` (fixtures/workerpool-worker.ts). */
export function fromWorkerpool(pool: WorkerPool, filename: string): PiscinaLike {
  return {
    options: { filename, name: "default" },
    // Promise.resolve: workerpool's own Promise calls then() callbacks in the wrong Context.
    run: (task, { filename, name, transferList }) =>
      Promise.resolve(pool.exec("run", [filename, name, task], { transfer: transferList })),
    close: () => Promise.resolve(pool.terminate()),
    destroy: () => Promise.resolve(pool.terminate(true)),
  };
}

/**
 * The tinypool both tinypool test files run their checks on: two workers
 * (threads, or child processes with `runtime: "child_process"`) of the job
 * fixture, three jobs at a time on each.
 */
export function jobTinypool(runtime?: "child_process"): Tinypool {
  return new TinypoolClass({
    ...(runtime === undefined ? {} : { runtime }),
    filename: JOB,
    execArgv: workerExecArgv,
    minThreads: 2,
    maxThreads: 2,
    concurrentTasksPerWorker: 3,
  });
}
