export { bind } from "./core/bind.ts";
export { bindEmitter } from "./core/bind-emitter.ts";
export { Context } from "./core/context.ts";
export { ContextVar, type ContextVarOptions } from "./core/context-var.ts";
export { copyContext } from "./core/current.ts";
export { MISSING, type Missing } from "./core/missing.ts";
export { Token } from "./core/token.ts";
export {
  ContextEnteredError,
  ContextError,
  type ErrorCode,
  LookupError,
  TaskGroupClosedError,
  TimeoutError,
  TokenMismatchError,
  TokenUsedError,
  TransferError,
} from "./errors.ts";
export { type Gathered, type GatherItem, gather } from "./tasks/gather.ts";
export { isolated } from "./tasks/isolated.ts";
export { run } from "./tasks/run.ts";
export { type CallHandle, callLater, callSoon } from "./tasks/schedule.ts";
export {
  createTask,
  currentTask,
  Task,
  type TaskFunction,
  type TaskOptions,
} from "./tasks/task.ts";
export { TaskGroup, type TaskGroupOptions, taskGroup } from "./tasks/task-group.ts";
export { timeout } from "./tasks/timeout.ts";
