/**
 * What the core's thread hook (core/inherit.ts) imports as `#worker-threads`
 * outside browsers: node:worker_threads' three functions, and whether the
 * process has an IPC channel, through a file of the package rather than the
 * builtin's name as the `imports` target. jest's resolver (30) does not take
 * a builtin's name there for the builtin, so the package failed to load
 * under jest with "Cannot find module 'worker_threads'"; Node refuses
 * "node:worker_threads" as a target (ERR_INVALID_PACKAGE_TARGET). A file
 * that re-exports it resolves everywhere.
 */
export { getEnvironmentData, isMainThread, setEnvironmentData } from "node:worker_threads";

/**
 * Whether this process was started with an IPC channel (`fork()`, so
 * `process.send` exists), as the child processes of tinypool's
 * `runtime: "child_process"` and workerpool's `workerType: "process"` are.
 */
// Read through globalThis: this file is also the target for workerd and
// edge-light, where node:worker_threads may be there and `process` not.
export const hasIpcChannel: boolean = typeof globalThis.process?.send === "function";
