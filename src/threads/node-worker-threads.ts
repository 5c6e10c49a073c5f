/**
 * What the core's thread hook (core/inherit.ts) imports as `#worker-threads`
 * outside browsers: node:worker_threads' three functions, through a file of
 * the package rather than the builtin's name as the `imports` target. jest's
 * resolver (30) does not take a builtin's name there for the builtin, so the
 * package failed to load under jest with "Cannot find module
 * 'worker_threads'"; Node refuses "node:worker_threads" as a target
 * (ERR_INVALID_PACKAGE_TARGET). A file that re-exports it resolves
 * everywhere.
 */
export { getEnvironmentData, isMainThread, setEnvironmentData } from "node:worker_threads";
