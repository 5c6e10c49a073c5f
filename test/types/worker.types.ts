/**
 * Type tests for `contextvars/worker`: Worker (node's options plus
 * `context` and `onUncloneable`), toThread<R, A> (result and argument
 * inference), contextPool's generics over a real piscina pool (read from it), ContextPool's
 * run/close/`await using`, useThreadPool, and the re-exported TransferError.
 * Only typechecked: nothing is called.
 */
import type { Worker as NodeWorker } from "node:worker_threads";
import {
  type ContextError,
  type TransferError as CoreTransferError,
  copyContext,
} from "contextvars";
import {
  ContextPool,
  type ContextPoolOptions,
  type ContextRunOptions,
  contextPool,
  type OnUncloneable,
  type PiscinaLike,
  TransferError,
  toThread,
  useThreadPool,
  Worker,
  type WorkerOptions,
} from "contextvars/worker";
import { Piscina } from "piscina";
import { type Equal, type Extends, expectType } from "./expect.ts";

const moduleUrl = new URL("./hash.js", import.meta.url);

export function workers(): void {
  const worker = new Worker(moduleUrl, {
    context: copyContext(),
    onUncloneable: "skip",
    workerData: { n: 1 },
    execArgv: [],
  });
  expectType<Extends<Worker, NodeWorker>>();
  worker.postMessage({ n: 2 });
  worker.on("message", (message) => void message);
  new Worker("/abs/path/job.js");
  const options: WorkerOptions = { context: copyContext(), env: {} };
  new Worker(moduleUrl, options);
  expectType<Equal<OnUncloneable, "throw" | "skip">>();

  // @ts-expect-error onUncloneable is "throw" or "skip"
  new Worker(moduleUrl, { onUncloneable: "ignore" });
  // @ts-expect-error the context must be a Context
  new Worker(moduleUrl, { context: {} });
  // @ts-expect-error a filename is required
  new Worker();
}

export async function toThreadInference(bytes: Uint8Array): Promise<void> {
  const unknownResult = await toThread(moduleUrl, "sha256", bytes);
  expectType<Equal<typeof unknownResult, unknown>>();
  const digest = await toThread<string>(moduleUrl, "sha256", bytes);
  expectType<Equal<typeof digest, string>>();
  const awaited = await toThread<Promise<number>>("/abs/fib.js", "fib", 40);
  expectType<Equal<typeof awaited, number>>();
  const pending = toThread<number, [number, number]>(moduleUrl, "add", 1, 2);
  expectType<Equal<typeof pending, Promise<number>>>();
  await toThread(moduleUrl, "noArgs");

  // @ts-expect-error the arguments must fit A
  toThread<number, [number, number]>(moduleUrl, "add", 1, "2");
  // @ts-expect-error the module is a string or URL
  toThread(42, "fn");
  // @ts-expect-error the export's name is a string
  toThread(moduleUrl, Symbol("fn"));
}

interface FibTask {
  readonly n: number;
}

export async function pools(): Promise<void> {
  const piscina = new Piscina<FibTask, number>({ filename: moduleUrl.href });
  expectType<Extends<typeof piscina, PiscinaLike>>();
  expectType<Extends<Piscina, PiscinaLike>>();

  // T and R are written out: the task and result types of the pool.
  const typed = contextPool<FibTask, number>(piscina, { onUncloneable: "skip" });
  expectType<Equal<typeof typed, ContextPool<FibTask, number>>>();
  const result = typed.run({ n: 40 }, { name: "fib" });
  expectType<Equal<typeof result, Promise<number>>>();
  const runOptions: ContextRunOptions = {
    filename: moduleUrl,
    name: "fib",
    signal: AbortSignal.timeout(10),
    transferList: [],
  };
  await typed.run({ n: 1 }, runOptions);
  expectType<Equal<typeof typed.piscina, PiscinaLike>>();
  expectType<Equal<ReturnType<typeof typed.close>, Promise<void>>>();
  await typed.close({ force: true });
  expectType<Equal<ReturnType<typeof typed.destroy>, Promise<void>>>();

  // Inferred from a typed Piscina's own T and R.
  const fromTyped = contextPool(piscina);
  expectType<Equal<typeof fromTyped, ContextPool<FibTask, number>>>();
  const fromTypedResult = await fromTyped.run({ n: 3 });
  expectType<Equal<typeof fromTypedResult, number>>();
  // A pool typed only by its task: piscina's `any` result stays unknown.
  const taskOnly = contextPool(new Piscina<FibTask>());
  expectType<Equal<typeof taskOnly, ContextPool<unknown, unknown>>>();
  // A pool of piscina's default `any`s takes T and R from the type it is
  // assigned to, or from written type arguments.
  const assigned: ContextPool<FibTask, number> = contextPool(new Piscina());
  void assigned;
  const written = contextPool<FibTask, string>(new Piscina());
  expectType<Equal<typeof written, ContextPool<FibTask, string>>>();
  // A PiscinaLike (say, a test double) gives unknown.
  const double = contextPool(piscina as PiscinaLike);
  expectType<Equal<typeof double, ContextPool<unknown, unknown>>>();
  // @ts-expect-error the pool runs FibTasks
  fromTyped.run({ n: "3" });
  // @ts-expect-error the pool's result is a number
  const notText: Promise<string> = fromTyped.run({ n: 1 });
  void notText;

  // Without type arguments: unknown in, unknown out (never `any`).
  const loose = contextPool(new Piscina());
  expectType<Equal<typeof loose, ContextPool<unknown, unknown>>>();
  const anything = await loose.run("task");
  expectType<Equal<typeof anything, unknown>>();

  const poolOptions: ContextPoolOptions = { onUncloneable: "throw" };
  new ContextPool(piscina, poolOptions);
  {
    await using scoped = contextPool<FibTask, number>(piscina);
    await scoped.run({ n: 2 });
  }

  useThreadPool(typed);
  useThreadPool(loose);
  useThreadPool(undefined);

  // @ts-expect-error the task must be a FibTask
  typed.run({ n: "40" });
  // @ts-expect-error the filename is a string or URL
  typed.run({ n: 1 }, { filename: 1 });
  // @ts-expect-error onUncloneable is "throw" or "skip"
  contextPool(piscina, { onUncloneable: "drop" });
  // @ts-expect-error not a piscina pool
  contextPool({ run() {} });
  // @ts-expect-error force is a boolean
  typed.close({ force: "yes" });
  // @ts-expect-error useThreadPool takes a ContextPool, not a bare piscina pool
  useThreadPool(piscina);
  // @ts-expect-error the result is a number
  const text: Promise<string> = typed.run({ n: 1 });
  void text;
}

export function transferError(error: unknown): void {
  expectType<Equal<typeof TransferError, typeof CoreTransferError>>();
  expectType<Extends<TransferError, ContextError>>();
  if (error instanceof TransferError) {
    expectType<
      Equal<typeof error.code, "ERR_CONTEXTVAR_UNCLONEABLE" | "ERR_CONTEXTVAR_NAME_CLASH">
    >();
  }
}
