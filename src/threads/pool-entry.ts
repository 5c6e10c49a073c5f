/**
 * The file that piscina loads in each worker thread in place of the user's
 * file (`pool.ts` names it as the filename of every task it runs).
 *
 * Piscina loads a task file with `require()` first. Under a loader that
 * compiles ES modules to CommonJS on `require` (tsx does), that would give
 * this file, and everything it imports, a CommonJS copy of the package
 * beside the ES module copy that the user's module imports: two root
 * Contexts, two carriers, and jobs that see nothing. So this file imports
 * nothing itself and reaches the runner with `import()`, which always gives
 * the ES module instance that the user's modules share.
 */
import type { JobPayload } from "./pool-job.ts";

let job: typeof import("./pool-job.ts") | undefined;

/** Runs one job (see pool-job.ts). */
export default function runJob(payload: JobPayload): unknown {
  if (job !== undefined) return job.runJob(payload);
  return import("./pool-job.ts").then((loaded) => {
    job = loaded;
    return loaded.runJob(payload);
  });
}
