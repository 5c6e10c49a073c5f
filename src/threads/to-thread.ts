import { copyContext } from "../core/current.ts";
import { argumentError } from "../errors.ts";
import { asFilename, ContextPool, poolEntry, runCall } from "./pool.ts";

let shared: ContextPool | Promise<ContextPool> | undefined;

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
 * to the default pool, a piscina pool with piscina's default options created
 * at the first call. The pool is not closed when it is replaced.
 *
 * @example
 * useThreadPool(contextPool(new Piscina({ maxThreads: 4 })));
 * @throws {TypeError} if pool is not a ContextPool.
 */
export function useThreadPool(pool: ContextPool | undefined): void {
  if (pool !== undefined && !(pool instanceof ContextPool)) {
    throw argumentError("pool", "a ContextPool (from contextPool(piscina))", pool);
  }
  shared = pool;
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
  let pending = shared;
  if (pending === undefined) {
    const creating: Promise<ContextPool> = createDefaultPool().catch((error: unknown) => {
      if (shared === creating) shared = undefined;
      throw error;
    });
    shared = pending = creating;
  }
  const pool = await pending;
  // Unless useThreadPool gave another pool while this one was being made.
  if (shared === pending) shared = pool;
  return (await runCall(pool, filename, exportName, args, snapshot)) as Awaited<R>;
}
