/**
 * The engine's own Promise, whatever `globalThis.Promise` is now or becomes.
 * zone.js (Angular SSR loads it in Node), `global.Promise = Bluebird` and a
 * forced core-js replace the global with a promise that runs its callbacks
 * from a queue of its own, in the Context of the code that resolved it:
 * a task settles inside its own Context, so a caller's `task.then(cb)` saw
 * the task's values (test/integrations/promise-libraries.test.ts). The
 * engine's promise runs a callback where `then` was called. An async
 * function's result is always the engine's, whichever global is installed.
 * Internal.
 */
export const NativePromise = (async () => {})().constructor as PromiseConstructor;
