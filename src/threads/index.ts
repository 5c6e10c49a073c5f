export { TransferError } from "../errors.ts";
export {
  ContextPool,
  type ContextPoolOptions,
  type ContextRunOptions,
  contextPool,
  type PiscinaLike,
} from "./pool.ts";
export { toThread, useThreadPool } from "./to-thread.ts";
export type { OnUncloneable } from "./transfer.ts";
export { Worker, type WorkerOptions } from "./worker.ts";
