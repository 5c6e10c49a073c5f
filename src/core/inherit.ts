/**
 * The core's one hook for `contextvars/worker`: how a worker thread, or a
 * child process of a process-based pool, finds the ContextVars that its
 * parent's values belong to.
 *
 * A worker thread has its own heap and its own copy of this package, so a
 * parent's ContextVar objects never reach it; values cross by name, to a
 * child process too. The ContextVar constructor calls `varCreated` once per
 * var. In the main thread of a process with no IPC channel (a server, a
 * CLI) that is one WeakSet add for a `{ transfer: false }` var and a
 * compare otherwise. In a worker thread, and in a process forked with an
 * IPC channel (as tinypool's `runtime: "child_process"` and workerpool's
 * `workerType: "process"` start theirs), it also files the var under its
 * name (pool jobs look vars up by name when each job's values arrive). In a
 * worker thread, if the Worker that started it sent a value under that
 * name, it puts it into the root Context, so the var reads the parent's
 * value with no code in the worker. Everything else (what may cross, pools)
 * lives in `src/threads/`.
 */
import {
  getEnvironmentData,
  hasIpcChannel,
  isMainThread,
  setEnvironmentData,
} from "#worker-threads";
import { mapOf, setMapOf } from "./context.ts";
import type { ContextVar } from "./context-var.ts";
import { rootContext } from "./current.ts";

/** The `environmentData` key under which a Worker hands its values to the new thread. Internal. */
export const VALUES_KEY = "contextvars:values";

/** Values as they cross between threads: `[var name, value]` pairs. Internal. */
export type CrossingValues = ReadonlyArray<readonly [name: string, value: unknown]>;

type AnyVar = ContextVar<unknown>;

const localOnly = new WeakSet<AnyVar>();
// Weak, so a worker that makes vars per call does not keep them alive through
// this list. (A var made under a name whose value arrived is held by the root
// Context, as every var with a value there is: make vars at module level.)
// Filed from the start where pool jobs may run; elsewhere from when a pool's
// job runner loads (fileVarsByName), as in a child process with no IPC
// channel, whose earlier vars are then not found (docs/threads.md).
let byName: Map<string, WeakRef<AnyVar>[]> | undefined =
  isMainThread && !hasIpcChannel ? undefined : new Map();
const arrived = takeArrived();
// Names of `arrived` that a var of this thread has taken; the rest pass on to nested workers.
const claimed = new Set<string>();

// environmentData is cloned into every Worker started later, so the key is
// removed at once: a plain node:worker_threads Worker started from here gets
// nothing, as one started from the main thread does.
function takeArrived(): Map<string, unknown> | undefined {
  if (isMainThread) return undefined;
  const values = getEnvironmentData(VALUES_KEY) as CrossingValues | undefined;
  if (values === undefined) return undefined;
  setEnvironmentData(VALUES_KEY, undefined);
  return new Map(values);
}

/** Called by the ContextVar constructor, once per var. Internal. */
export function varCreated(v: AnyVar, transfer: boolean): void {
  if (!transfer) {
    localOnly.add(v);
    return;
  }
  if (byName === undefined) return;
  const refs = byName.get(v.name);
  if (refs === undefined) byName.set(v.name, [new WeakRef(v)]);
  else {
    // Prune when the list doubles, so vars made in a loop cost amortised O(1).
    if (refs.length >= 8 && (refs.length & (refs.length - 1)) === 0) {
      // In place: push(...live) overflows the stack past a few 100 000 refs.
      let kept = 0;
      for (const ref of refs) if (ref.deref() !== undefined) refs[kept++] = ref;
      refs.length = kept;
    }
    refs.push(new WeakRef(v));
  }
  if (arrived?.has(v.name)) {
    setMapOf(rootContext, mapOf(rootContext).set(v, arrived.get(v.name)));
    claimed.add(v.name);
  }
}

/**
 * Files the vars created from now on by name, where they were not already
 * (a main thread with no IPC channel): called by the pool's job runner when
 * it loads. Vars created before are not found by name. Internal.
 */
export function fileVarsByName(): void {
  byName ??= new Map();
}

/** Whether the var was created with `{ transfer: false }`. Internal. */
export function isLocalOnly(v: AnyVar): boolean {
  return localOnly.has(v);
}

/** The live vars of this thread named `name` that were filed by name. Internal. */
export function varsNamed(name: string): AnyVar[] {
  const found: AnyVar[] = [];
  for (const ref of byName?.get(name) ?? []) {
    const v = ref.deref();
    if (v !== undefined) found.push(v);
  }
  return found;
}

/** Values this thread received for names no var here has taken: nested workers get them too. Internal. */
export function unclaimedValues(): CrossingValues {
  if (arrived === undefined) return [];
  return [...arrived].filter(([name]) => !claimed.has(name));
}
