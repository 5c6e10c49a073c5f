// Preloaded (`--import`) into the worker threads that tests start. On Node 20
// tsx registers its ESM hooks in the main thread only and they do not reach
// worker threads, so a worker could not load a .ts file; this registers them
// again in each worker. See test/helpers/threads.ts.
import { isMainThread } from "node:worker_threads";
import { register } from "tsx/esm/api";

if (!isMainThread) register();
