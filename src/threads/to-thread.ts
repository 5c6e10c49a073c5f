import { copyContext } from "../core/current.ts";
import { argumentError } from "../errors.ts";
import { asFilename, ContextPool, isContextPool, poolEntry, runCall } from "./pool.ts";

// The pool given to useThreadPool, and the default pool, kept apart: the
// default pool is made once per thread and kept, so giving a pool while it
// is being made, or going back to it later, never leaves a pool with live
// threads that nothing can reach or close.
let chosen: ContextPool | undefined;
let defaultPool: Promise<ContextPool> | undefined;

function theDefaultPool(): Promise<ContextPool> {
  if (defaultPool === undefined) {
    const creating: Promise<ContextPool> = createDefaultPool().catch((error: unknown) => {
      // Made again at the next call (piscina may be installed by then).
      if (defaultPool === creating) defaultPool = undefined;
      throw error;
    });
    defaultPool = creating;
  }
  return defaultPool;
}

async function createDefaultPool(): Promise<ContextPool> {
  let Piscina: typeof import("piscina").Piscina;
  try {
    ({ Piscina } = await import("piscina"));
  } catch (error) {
    throw new Error(
      "toThread needs the optional peer dependency piscina (npm install piscina), or a pool given to useThreadPool()",
      { cause: error },
    );
  }
  return new ContextPool(new Piscina({ filename: poolEntry }));
}

/**
 * Makes `toThread` run its calls on `pool` from now on; `undefined` goes back
 * to the default pool: a piscina pool with piscina's default options, made
 * at the first call that needs it and kept for the thread's life. A pool
 * given here is not closed when it is replaced; calls already started finish
 * on the pool they started on.
 *
 * @example
 * useThreadPool(contextPool(new Piscina({ maxThreads: 4 })));
 * @throws {TypeError} if pool is not a ContextPool.
 */
export function useThreadPool(pool: ContextPool | undefined): void {
  if (pool !== undefined && !isContextPool(pool)) {
    throw argumentError("pool", "a ContextPool (from contextPool(piscina))", pool);
  }
  chosen = pool;
}

/**
 * Python's `asyncio.to_thread`: calls the export `exportName` of the module
 * at `moduleUrl` with `args` on a pool thread, in a copy of the caller's
 * Context (taken now, before anything is awaited), and resolves with what
 * it returns. The arguments and the result cross by structured clone.
 * Runs on the pool given to `useThreadPool`, else on a default piscina pool.
 *
 * @example
 * const digest = await toThread(new URL("./hash.js", import.meta.url), "sha256", bytes);
 * @throws {TransferError} (as a rejection) ERR_CONTEXTVAR_UNCLONEABLE or ERR_CONTEXTVAR_NAME_CLASH.
 * @throws {TypeError} (as a rejection) if moduleUrl is neither a file: URL nor an absolute
 *   path, or exportName is not a string.
 * @throws {Error} (as a rejection) if no pool was given and piscina is not installed.
 */
export async function toThread<R = unknown, A extends unknown[] = unknown[]>(
  moduleUrl: string | URL,
  exportName: string,
  ...args: A
): Promise<Awaited<R>> {
  const filename = asFilename(moduleUrl, "moduleUrl");
  if (typeof exportName !== "string") throw argumentError("exportName", "a string", exportName);
  // The Context as it is now; its values are taken once the pool, and so its
  // onUncloneable, is known.
  const snapshot = copyContext();
  const pool = chosen ?? (await theDefaultPool());
  return (await runCall(pool, filename, exportName, args, snapshot)) as Awaited<R>;
}
