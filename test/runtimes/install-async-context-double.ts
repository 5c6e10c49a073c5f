/**
 * Preloaded (`--import` on Node, `--preload` on Bun and Deno) before any test
 * file imports the package: puts the AsyncContext test double on
 * `globalThis`, so `carrier/select.ts` picks the AsyncContext carrier at
 * import. scripts/runtimes/test-matrix.ts runs the core, tasks and
 * async-context files a second time this way.
 */
import { AsyncContextDouble } from "../helpers/async-context-double.ts";

const target = globalThis as { AsyncContext?: unknown };
if (target.AsyncContext !== undefined) {
  throw new Error("globalThis.AsyncContext already exists: the double would hide the real one");
}
target.AsyncContext = AsyncContextDouble;
