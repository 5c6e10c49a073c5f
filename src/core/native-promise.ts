/**
 * The engine's own Promise, whatever `globalThis.Promise` is now or becomes.
 * `global.Promise = Bluebird` and a forced core-js replace the global with a
 * promise that runs its callbacks from a queue of its own, in the Context of
 * the code that resolved it: a task settles inside its own Context, so a
 * caller's `task.then(cb)` saw the task's values
 * (test/integrations/promise-libraries.test.ts). The engine's promise runs a
 * callback where `then` was called. An async function's result is always the
 * engine's, whichever global is installed, unless a build compiled async
 * functions down (below ES2017): then this is the global of load time, as
 * every such function's result is (esbuild for ES2016 under a bluebird
 * global gave bluebird).
 *
 * zone.js (Angular SSR loads it in Node) replaces the global too, and also
 * replaces the engine's own `Promise.prototype.then` with one that goes
 * through its queue: there a `.then` on these promises runs as on a
 * ZoneAwarePromise (callbacks attached in one turn ran in the first one's
 * Context, 1 of 8 in the test), and only `await`, which does not call `then`
 * on an engine's promise, keeps the caller's Context. Internal.
 */
export const NativePromise = (async () => {})().constructor as PromiseConstructor;
