/**
 * The carrier: what makes a Context "current" across asynchronous code.
 *
 * Why a carrier
 * -------------
 * Python keeps the current Context in the thread state and asyncio swaps it
 * at every task step: the event loop knows which task runs. A JavaScript
 * engine runs promise reactions, timers and I/O callbacks itself, so a
 * library cannot swap anything at those points. What it can do is ask the
 * runtime to remember a value at each point where asynchronous work is
 * scheduled and to restore it when that work runs. Node, Bun and Deno offer
 * exactly this as `AsyncLocalStorage`; the TC39 proposal calls it
 * `AsyncContext.Variable`. A carrier is that one slot, and it holds the
 * current Context: the cell, never the mapping.
 *
 * Why it holds the cell
 * ---------------------
 * Python's model is a mutable cell (the Context) over an immutable mapping.
 * `var.set()` swaps the mapping inside the cell; the carrier itself is never
 * written after `run`. All continuations of one `ctx.run(fn)` (awaits,
 * promise callbacks, timers) therefore share the cell and see each other's
 * sets, as all coroutines awaited in one asyncio Task share that Task's
 * Context, while `copy()` makes a new cell over the same mapping in O(1).
 * Holding the mapping in the carrier instead would make a `set` visible only
 * by replacing the carrier's value for the rest of the current execution
 * (ALS's enter-with verb, which this package never calls), and that leaks the
 * value into the caller's continuation.
 *
 * Two verbs
 * ---------
 * The TC39 spec needs only snapshot and swap; the carrier needs only
 * `getStore()` (which cell is current, or undefined at the root) and
 * `run(cell, fn, ...args)` (call fn with cell current, for fn and everything
 * it schedules, and restore the previous cell when fn returns or throws).
 * `AsyncLocalStorage` has both with exactly these signatures, so on Node the
 * carrier *is* one `AsyncLocalStorage` instance, with no wrapper between the
 * hot path and the runtime. There is exactly one in the whole package:
 * on Node 24+ every `als.run` copies a map of all instances entered in the
 * async chain (measured in BENCHMARKS.md), so an instance
 * per var or per feature would make every run slower.
 *
 * Three carriers
 * --------------
 * - `async-local-storage.ts`: one AsyncLocalStorage (Node, Bun, Deno,
 *   Cloudflare Workers).
 * - `async-context.ts`: one `AsyncContext.Variable`, when the engine has the
 *   TC39 proposal (`globalThis.AsyncContext`); same two verbs, so a
 *   Snapshot taken by any code also captures our Context.
 * - `sync.ts`: a field set for the synchronous extent of `run`, for browsers
 *   without AsyncContext; continuations after an await see no Context.
 *
 * `select.ts` picks the carrier once, at import, so `get`, `set` and `run`
 * never branch on which one is in use; the platform's one comes through the
 * package's `#carrier` import, which the `browser` condition points at
 * `sync.ts` (unless `workerd` came first).
 */

import type { Context } from "../core/context.ts";

/** The slot that holds the current Context across asynchronous continuations. */
export interface Carrier {
  /** The current Context, or undefined at the root (no run entered). */
  getStore(): Context | undefined;
  /** Calls fn(...args) with `context` current for fn and all it schedules. */
  run<A extends unknown[], R>(context: Context, fn: (...args: A) => R, ...args: A): R;
}
