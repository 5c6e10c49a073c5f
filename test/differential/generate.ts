/**
 * Random programs over three ContextVars, for the differential test against
 * CPython's contextvars + asyncio (see differential.test.ts).
 *
 * A program is a tree of ops. Every op has a Python rendering (python.ts) and
 * a JavaScript meaning against this package (interpret.ts). What a program
 * observes (get results, reset outcomes) is recorded per task, the task being
 * named by its spawn path in the tree ("main", "main/t3", "main/t3/g7.1").
 *
 * Why per-task traces can be compared at all: asyncio starts a task lazily
 * (at the loop's next turn) and createTask starts it eagerly (synchronously),
 * so the two interleave tasks differently. A task's trace depends only on its
 * own Context, which is a copy taken at creation in both, and on the order of
 * its own ops, which is program order in both, as long as no two tasks race
 * on shared state. The only shared state a program has is a token's `used`
 * flag, and only a successful reset (in the token's own Context) changes it.
 * So the generator keeps one rule: once a token is handed to another task (a
 * spawned or gathered child, which may reset it concurrently, getting
 * "mismatch" or "used"), the Context that made it never resets it again.
 * Tokens made by a child reach its parent only when the parent has joined
 * (or gathered) that child, when the child and all it spawned are finished.
 * Every task joins all it spawned before it ends (asyncio.run would otherwise
 * cancel the stragglers), so programs terminate with every task run to the end.
 *
 * The task layer adds three ways to run code elsewhere, each kept inside the
 * same argument:
 *
 * - A TaskGroup's body runs in its task's own Context (as an awaited
 *   coroutine does); each child runs in a copy taken at create_task, as a
 *   spawned task does, so the body's later sets never reach a child and a
 *   child's sets never reach the body. The group's exit joins every child: its
 *   tokens reach the body's task then, as after a join. A child of a group
 *   that does not fail may add a sibling to it (in a copy of the child's
 *   Context): only the exit joins that one, as the body cannot know that
 *   asyncio has run the child that adds it yet; a group with a child running
 *   is not finished, so asyncio lets the child add it while the exit waits.
 *   A group may fail: its body's last ops create one or two children that
 *   raise, and its other children await nothing, or only, as their last act,
 *   a future nobody resolves. asyncio starts tasks in creation order, so
 *   each other child has run to its end (or to that await) before a failure,
 *   as it has here, where tasks start at once; the group then cancels those
 *   still waiting, and no trace is cut short anywhere else. The body itself
 *   awaits nothing after a raising child is created: asyncio would cancel it
 *   at that await, where this package lets the body run on until it heeds
 *   `group.signal` (test/tasks/task-group-failures.test.ts). The body
 *   records the failures' messages, sorted: the ExceptionGroup and the
 *   AggregateError must hold the same failures, and not the cancellations.
 * - A captured Context (`copy_context()`) is shared state: a task created with
 *   `context=` runs in that Context itself, not a copy, and `ctx.run(fn)` runs
 *   fn in it. So the generator keeps a second rule: a captured Context belongs
 *   to the task that captured it, and at most one piece of code uses it at a
 *   time. A task given it holds it until that task is joined (a group's
 *   child at the latest by the group's exit), when it and all it spawned are
 *   finished, so whether the task starts at create_task (here) or at the
 *   loop's next turn (asyncio), nobody has touched it in between; a
 *   `ctx.run` holds it until run returns, so it is never run re-entered;
 *   `ctx.get(var)` reads it only while nobody holds it. Then each user's
 *   trace depends only on what the previous users left in it, in program
 *   order on both sides. The task running in it never runs it (it is not
 *   that task's): asyncio counts a task's Context as entered during each
 *   step and would raise, where this package lets an async continuation run
 *   its own Context (docs/semantics.md). Code running in it shares one token
 *   scope, so the token rule above covers it as it covers a task's Context.
 * - A `call_soon` / `call_later(0)` callback runs later, in a copy taken when
 *   it is scheduled, as a task would; its body is synchronous. Its last act
 *   resolves a future the scheduling task awaits before it ends (the task
 *   waits for it, never for a delay), so every callback has run when the
 *   program ends. Its trace is its own ("main/cs3"): it is handed tokens as a
 *   child task is, and its tokens reach the scheduler once the scheduler
 *   awaited it. So do the tasks it created (in copies of its Context) and the
 *   callbacks it scheduled: the scheduler joins and awaits them in turn.
 *
 * And some that need no rule of their own. `await isolated(fn)()` is a task
 * joined at once (`await asyncio.create_task(…)`, its trace "main/i4"), as
 * `await timeout(60_000, fn)` is; a settled gather (`return_exceptions=True`
 * ↔ `Promise.allSettled` of tasks) is a gather whose children may raise;
 * `V.run(value, fn)` is a copyRun whose body opens by setting V; `bind(fn,
 * C)()` is `C.copy().run(fn)`, a read of C, as `C.copy()`, `V in C` and
 * `list(C)` are (what is in a Context after resets to no value is part of
 * what is compared); a TaskGroup is taken as `taskGroup(body)`, as `new
 * TaskGroup()` then `wait()`, or disposed in a finally as `await using` does,
 * all three `async with asyncio.TaskGroup()`; a token's old value is read as
 * it was when the token was made. After a join or a run gives a captured
 * Context back, the program often reads it. A synchronous run (copyRun,
 * ctxRun, varRun, bindRun) may end by raising ("run raised" in the caller's
 * trace): what it did stays in the Context it ran in, and the caller goes on
 * in its own. Inside a run of a captured Context, running it again fails
 * ("entered") and changes nothing.
 */

export type VarIndex = 0 | 1 | 2;
export const VAR_INDEXES: readonly VarIndex[] = [0, 1, 2];

/**
 * How a task yields: a resolved promise, a setImmediate, a setTimeout(0), a
 * process.nextTick, a thenable that is not a promise, or a real I/O callback (fs.stat).
 */
export type SleepKind = "micro" | "immediate" | "timer" | "tick" | "thenable" | "io";

export type GroupForm = "function" | "wait" | "dispose";

export type Op =
  /** `K[token] = V[v].set(value)` */
  | { readonly op: "set"; readonly v: VarIndex; readonly value: string; readonly token: number }
  /** `V[v].get()` (or `.get(fallback)`), recorded; LookupError is recorded as "<unset>" */
  | { readonly op: "get"; readonly v: VarIndex; readonly fallback?: string }
  /** `V[v].reset(K[token])`, recorded as ok / used (RuntimeError) / mismatch (ValueError) */
  | { readonly op: "reset"; readonly v: VarIndex; readonly token: number }
  /** `await asyncio.sleep(0)` ↔ a microtask, a setImmediate or a setTimeout(0) */
  | { readonly op: "sleep"; readonly kind: SleepKind }
  /** await a child coroutine directly: it shares the caller's Context */
  | { readonly op: "await"; readonly body: readonly Op[] }
  /** `H[task] = asyncio.create_task(...)` ↔ `createTask(...)`: a copy of the current Context */
  | { readonly op: "spawn"; readonly task: number; readonly body: readonly Op[] }
  /** `await H[task]` */
  | { readonly op: "join"; readonly task: number }
  /** `contextvars.copy_context().run(fn)` ↔ `copyContext().run(fn)`; the body is synchronous */
  | { readonly op: "copyRun"; readonly body: readonly Op[]; readonly raises?: true }
  /**
   * `V[v].run(value, fn)` ↔ `copy_context().run(fn)` with fn opening by `V[v].set(value)`;
   * the body is synchronous
   */
  | {
      readonly op: "varRun";
      readonly v: VarIndex;
      readonly value: string;
      readonly body: readonly Op[];
      readonly raises?: true;
    }
  /**
   * `await isolated(async () => …)()` ↔ `await asyncio.create_task(…)`: a copy, a trace of its
   * own; `timeout`: `await timeout(60_000, async () => …)` ↔ `await asyncio.wait_for(
   * asyncio.create_task(…), 60)`, a task whose deadline never comes
   */
  | {
      readonly op: "isolated";
      readonly id: number;
      readonly body: readonly Op[];
      readonly timeout?: true;
    }
  /** `K[token].oldValue` ↔ `K[token].old_value`, recorded (Token.MISSING as "<missing>") */
  | { readonly op: "tokenOld"; readonly token: number }
  /**
   * The names of the program's vars that have a value in the current Context (or C[ctx]),
   * sorted, and how many: `[...copyContext().keys()]` ↔ `list(contextvars.copy_context())`
   */
  | { readonly op: "keys"; readonly ctx?: number }
  /**
   * `await asyncio.gather(c0(), c1(), …)` ↔ `await gather(() => c0(), …)`: one task each. With
   * `settled`: `await asyncio.gather(…, return_exceptions=True)` ↔ `await
   * Promise.allSettled([createTask(…), …])`, the children in `raising` ending with `raise
   * Exception("x<id>.<i>")`; the caller records each outcome, in order
   */
  | {
      readonly op: "gather";
      readonly id: number;
      readonly bodies: readonly (readonly Op[])[];
      readonly settled?: true;
      readonly raising?: readonly boolean[];
    }
  /**
   * `async with asyncio.TaskGroup() as G[id]:` ↔ `await taskGroup(async (g) => …)`: the body
   * runs in the caller's Context; the exit waits for every child. A group that `fails`
   * records the messages of its failures (ExceptionGroup ↔ AggregateError), sorted.
   */
  | {
      readonly op: "group";
      readonly id: number;
      readonly body: readonly Op[];
      readonly fails: boolean;
      /**
       * `taskGroup(body)`, or `new TaskGroup()` with the body then `await g.wait()`, or the
       * body then, in a finally, `await g[Symbol.asyncDispose]()` (what `await using` does)
       */
      readonly form: GroupForm;
    }
  /**
   * `H[task] = G[group].create_task(...)` ↔ `G[group].createTask(...)`: a copy of the current
   * Context. A child that `raise`s ends with `raise Exception("x<task>")` ↔ `throw new Error(…)`;
   * one that `hang`s ends awaiting a future nobody resolves ↔ a promise its signal's abort
   * rejects: only the group's cancelling it ends it.
   */
  | {
      readonly op: "groupSpawn";
      readonly group: number;
      readonly task: number;
      readonly body: readonly Op[];
      readonly raise?: true;
      readonly hang?: true;
    }
  /**
   * `C[ctx] = contextvars.copy_context()` ↔ `copyContext()`; `from` "empty":
   * `contextvars.Context()` ↔ `new Context()`; `from` a number: `C[from].copy()`
   */
  | { readonly op: "capture"; readonly ctx: number; readonly from?: "empty" | number }
  /**
   * `H[task] = asyncio.create_task(..., context=C[ctx])` ↔ `createTask(..., { context })`: C[ctx]
   * itself; with a `group`, `G[group].create_task(...)` ↔ `G[group].createTask(...)`
   */
  | {
      readonly op: "ctxSpawn";
      readonly ctx: number;
      readonly task: number;
      readonly body: readonly Op[];
      readonly group?: number;
    }
  /** `C[ctx].run(fn)`; the body is synchronous and runs in C[ctx] itself */
  | {
      readonly op: "ctxRun";
      readonly ctx: number;
      readonly body: readonly Op[];
      readonly raises?: true;
    }
  /**
   * Inside a run of C[ctx], `C[ctx].run(fn)` again: recorded as "entered" (RuntimeError ↔
   * ContextEnteredError), fn never runs
   */
  | { readonly op: "reenter"; readonly ctx: number }
  /** `C[ctx].get(V[v], "<none>")`, recorded (a Context's get ignores the var's default) */
  | { readonly op: "ctxGet"; readonly ctx: number; readonly v: VarIndex }
  /** `V[v] in C[ctx]` ↔ `C[ctx].has(V[v])`, recorded */
  | { readonly op: "ctxHas"; readonly ctx: number; readonly v: VarIndex }
  /**
   * `C[ctx].copy().run(fn)` ↔ `bind(fn, C[ctx])()`: fn in a fresh copy of C[ctx]; the body is
   * synchronous
   */
  | {
      readonly op: "bindRun";
      readonly ctx: number;
      readonly body: readonly Op[];
      readonly raises?: true;
    }
  /**
   * `loop.call_soon(cb)` (or `call_later(0, cb)`) ↔ `callSoon(cb)` (`callLater(0, cb)`): a
   * synchronous body in a copy of the current Context, that resolves W[id] as its last act
   */
  | {
      readonly op: "callSoon";
      readonly id: number;
      readonly later: boolean;
      readonly body: readonly Op[];
    }
  /** `await W[id]`: the callback has run */
  | { readonly op: "callWait"; readonly id: number };

export type OpKind = Op["op"];

export interface VarSpec {
  readonly name: string;
  /** The var's default, if it has one. */
  readonly default?: string;
}

export interface Program {
  readonly seed: number;
  readonly vars: readonly [VarSpec, VarSpec, VarSpec];
  /** The body of the main task. */
  readonly main: readonly Op[];
}

/** Per task (by spawn path), what it observed, in its own program order. */
export type Traces = Record<string, string[]>;

/** The path of a spawned task, given its parent task's path. */
export function spawnPath(parent: string, task: number): string {
  return `${parent}/t${task}`;
}

/** The path of the i-th child of a gather, given its parent task's path. */
export function gatherPath(parent: string, id: number, index: number): string {
  return `${parent}/g${id}.${index}`;
}

/** The path of a call_soon / call_later callback, given the path of the task that scheduled it. */
export function callbackPath(parent: string, id: number): string {
  return `${parent}/cs${id}`;
}

/** The path of an isolated call's body, given its caller's task path. */
export function isolatedPath(parent: string, id: number): string {
  return `${parent}/i${id}`;
}

/** The message the i-th child of a settled gather raises. */
export function gatherRaiseMessage(id: number, index: number): string {
  return `x${id}.${index}`;
}
export function settledLabel(id: number): string {
  return `gather #${id} settled:`;
}

/** The message a failing group child raises. */
export function raiseMessage(task: number): string {
  return `x${task}`;
}

/** The trace entries, shared by both sides so that they are spelled once. */
export function getLabel(v: VarIndex, fallback: string | undefined): string {
  return fallback === undefined ? `get v${v}` : `get v${v} or ${fallback}`;
}
export function resetLabel(v: VarIndex, token: number): string {
  return `reset v${v} #${token}`;
}
export function ctxGetLabel(ctx: number, v: VarIndex): string {
  return `ctx#${ctx} get v${v}`;
}
export function ctxHasLabel(ctx: number, v: VarIndex): string {
  return `ctx#${ctx} has v${v}`;
}
export function tokenOldLabel(token: number): string {
  return `old #${token}`;
}
export function keysLabel(ctx: number | undefined): string {
  return ctx === undefined ? "keys" : `ctx#${ctx} keys`;
}
/** A keys entry: how many of the program's vars have a value, and their names, sorted. */
export function keysEntry(ctx: number | undefined, names: readonly string[]): string {
  return `${keysLabel(ctx)} -> ${names.length}: ${[...names].sort().join(",")}`;
}
export function groupFailedLabel(group: number): string {
  return `group #${group} failed:`;
}
export const UNSET = "<unset>";
/** What the caller of a run that raised records. */
export const RUN_RAISED = "run raised";
export function reenterLabel(ctx: number): string {
  return `ctx#${ctx} run again`;
}
/** What a token's old value is recorded as when the var had none (Token.MISSING). */
export const MISSING_VALUE = "<missing>";
/** The fallback both sides pass to a Context's get: what it gives for a var it has no value in. */
export const NONE = "<none>";
export type ResetOutcome = "ok" | "used" | "mismatch";

/** mulberry32: a small seeded PRNG, enough for test programs. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error("pick from an empty list");
    return item;
  }

  /** Picks a key with probability proportional to its weight (weights > 0). */
  weighted<K extends string>(weights: Partial<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    const live = entries.filter(([, w]) => w > 0);
    const total = live.reduce((sum, [, w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [key, w] of live) {
      r -= w;
      if (r < 0) return key;
    }
    const last = live[live.length - 1];
    if (last === undefined) throw new Error("no positive weight");
    return last[0];
  }
}

// --- generation -----------------------------------------------------------

interface TokenInfo {
  readonly id: number;
  readonly v: VarIndex;
  /** The Context (scope id) the set ran in. */
  readonly scope: number;
  /** Handed to another task: its own Context must not reset it any more. */
  frozen: boolean;
}

/** A captured Context, owned by the task that captured it. */
interface Shared {
  readonly ctx: number;
  /** The scope id of code running in it. */
  readonly scope: number;
  /** A task given it not yet joined, or a run of it not yet returned: nobody else may use it. */
  busy: boolean;
  /** A task ran in it: what it left there is worth reading. */
  used: boolean;
  /** Its run is the one whose body is being generated (or encloses it). */
  running: boolean;
}

interface Handle {
  readonly id: number;
  /** The tokens the child ends with: the parent may use them once joined. */
  readonly exports: readonly TokenInfo[];
  joined: boolean;
  /** The group the child belongs to: joined when the group exits. */
  readonly group?: number;
  /** The captured Context the child runs in: free again once it is joined. */
  readonly shared?: Shared;
}

/** A group whose body is being generated. */
interface OpenGroup {
  readonly id: number;
  /** The task whose body opened it: its exit joins the children, as that task's joins. */
  readonly owner: TaskFrame;
  /** Its body ends by creating a child that raises: every other child is a leaf. */
  readonly fails: boolean;
  /** The tokens of children nobody may join (they raise, or wait to be cancelled). */
  readonly exports: TokenInfo[];
  /**
   * The children its children added: only the exit joins them (the body cannot know that
   * asyncio has run the child that adds one yet).
   */
  readonly added: Handle[];
}

/** A scheduled callback: the scheduler awaits it before it ends. */
interface Callback {
  readonly id: number;
  readonly exports: readonly TokenInfo[];
  /** The tasks and callbacks it made: the scheduler's once it has waited for it. */
  readonly frame: TaskFrame;
  waited: boolean;
}

interface TaskFrame {
  readonly handles: Handle[];
  readonly callbacks: Callback[];
  /** The captured Contexts this task owns. */
  readonly contexts: Shared[];
  /** The groups whose body is being generated (innermost last). */
  readonly groups: OpenGroup[];
  /**
   * A failing group's child's body: it may not spawn or schedule (its children run without
   * awaiting).
   */
  readonly leaf: boolean;
}

/** One Context: a task's (shared by the coroutines it awaits), a copyRun's or a captured one. */
interface Scope {
  readonly id: number;
  /** The tokens code in this scope may pass to reset. */
  readonly tokens: TokenInfo[];
  readonly task: TaskFrame;
}

/** Size limits. */
export interface GenerateOptions {
  /** Nesting depth of nested bodies (await, spawn, copyRun, gather, group, …). */
  readonly maxDepth: number;
  /** Ops in the main body, at most. */
  readonly maxMainOps: number;
  /** Ops in a nested body, at most. */
  readonly maxNestedOps: number;
  /** Ops in the whole program, roughly at most (auto-joins may add a few). */
  readonly budget: number;
}

export const DEFAULT_GENERATE_OPTIONS: GenerateOptions = {
  maxDepth: 3,
  maxMainOps: 10,
  maxNestedOps: 5,
  budget: 45,
};

function addTokens(into: TokenInfo[], more: readonly TokenInfo[]): void {
  for (const token of more) {
    if (!into.some((t) => t.id === token.id)) into.push(token);
  }
}

function frame(leaf = false): TaskFrame {
  return { handles: [], callbacks: [], contexts: [], groups: [], leaf };
}

class Generator {
  readonly #rng: Rng;
  readonly #options: GenerateOptions;
  #ids = 0;
  /** The captured Context the last op gave back (a join of the task in it, a run of it). */
  #freed: Shared | undefined;
  #budget: number;

  constructor(rng: Rng, options: GenerateOptions) {
    this.#rng = rng;
    this.#options = options;
    this.#budget = options.budget;
  }

  /** The body of a task, ending with a join of every task it spawned and a wait for every callback. */
  taskBody(scope: Scope, depth: number, maxOps: number, minOps = 0): Op[] {
    const ops = this.body(scope, depth, false, maxOps, minOps);
    // A wait for a callback hands over the tasks and callbacks it made: join and wait for
    // those too.
    for (let left = true; left; ) {
      left = false;
      for (const handle of scope.task.handles) {
        if (!handle.joined) ops.push(this.#join(scope, handle));
      }
      for (const callback of scope.task.callbacks) {
        if (callback.waited) continue;
        ops.push(this.#wait(scope, callback));
        left = true;
      }
    }
    return ops;
  }

  body(scope: Scope, depth: number, sync: boolean, maxOps: number, minOps = 0): Op[] {
    const rng = this.#rng;
    const count = minOps + rng.int(maxOps - minOps + 1);
    const ops: Op[] = [];
    for (let i = 0; i < count && this.#budget > 0; i++) {
      this.#budget--;
      const nest = depth < this.#options.maxDepth && this.#budget > 2 ? 1 : 0;
      const resettable = scope.tokens.filter((t) => t.scope !== scope.id || !t.frozen);
      const { handles, callbacks, contexts, groups, leaf } = scope.task;
      const spawns = leaf ? 0 : 1;
      const free = contexts.some((c) => !c.busy) ? 1 : 0;
      // A Context a task ran in is free again only once that task is joined; then read it.
      const held = handles.some((h) => h.shared !== undefined && !h.joined) ? 1 : 0;
      const left = contexts.some((c) => !c.busy && c.used) ? 1 : 0;
      const kind = rng.weighted<OpKind>({
        set: 4,
        get: 5,
        reset: resettable.length > 0 ? 3 : 0,
        sleep: sync ? 0 : 2,
        await: sync ? 0 : 1.2 * nest,
        spawn: (sync ? 0.6 : 1.4) * nest * spawns,
        join: sync || handles.length === 0 ? 0 : 1.5 + 4 * held,
        copyRun: 1 * nest,
        varRun: 0.6 * nest,
        isolated: sync ? 0 : 0.6 * nest * spawns,
        tokenOld: scope.tokens.length > 0 ? 1 : 0,
        keys: 1 + free,
        gather: sync ? 0 : 0.8 * nest,
        group: sync ? 0 : 0.8 * nest,
        // Inside a group's body, its children are what the body is for.
        // A group's child may add a sibling to it, now and then.
        groupSpawn: groups.some((g) => g.owner === scope.task) ? 6 : groups.length > 0 ? 0.8 : 0,
        capture: 0.8 * nest,
        // Once a Context is captured, mostly used (else it would be a copyRun's copy),
        // and used again once a task has left its sets there.
        ctxSpawn: (4 + 2 * left) * nest * spawns * free,
        ctxRun: (1.5 + 3 * left) * nest * free,
        ctxGet: (1.5 + 3 * left) * free,
        ctxHas: (0.5 + 1 * left) * free,
        reenter: sync && contexts.some((c) => c.running) ? 1.5 : 0,
        bindRun: (1 + 2 * left) * nest * free,
        callSoon: 0.8 * nest * spawns,
        callWait: sync || callbacks.length === 0 ? 0 : 1.5,
      });
      this.#freed = undefined;
      ops.push(this.#op(kind, scope, depth, resettable));
      // Mostly `ctx = copy_context(); create_task(..., context=ctx)`, as written in practice,
      // or else often `ctx.run(fn)`.
      if (kind === "capture" && spawns > 0 && rng.chance(0.7)) {
        ops.push(this.#spend("ctxSpawn", scope, depth));
      } else if (kind === "capture" && nest > 0 && rng.chance(0.5)) {
        ops.push(this.#spend("ctxRun", scope, depth));
      }
      // Often read what the task or the run left in it, as code reads a Context it gave out.
      const freed = this.#freed as Shared | undefined;
      // (Only this task's: the op's nested bodies may have freed Contexts of their own.)
      if (
        freed !== undefined &&
        !freed.busy &&
        scope.task.contexts.includes(freed) &&
        rng.chance(0.6)
      ) {
        this.#budget--;
        const v = rng.pick(VAR_INDEXES);
        const read = rng.weighted({ get: 3, has: 1, keys: 1, copy: 1 });
        if (read === "copy") {
          // A copy of what it left, to run or give to a task next.
          const ctx = ++this.#ids;
          contexts.push({ ctx, scope: ++this.#ids, busy: false, used: true, running: false });
          ops.push({ op: "capture", ctx, from: freed.ctx });
        } else {
          ops.push(
            read === "get"
              ? { op: "ctxGet", ctx: freed.ctx, v }
              : read === "has"
                ? { op: "ctxHas", ctx: freed.ctx, v }
                : { op: "keys", ctx: freed.ctx },
          );
        }
      }
    }
    return ops;
  }

  #op(kind: OpKind, scope: Scope, depth: number, resettable: TokenInfo[]): Op {
    const rng = this.#rng;
    const nested = this.#options.maxNestedOps;
    switch (kind) {
      case "set": {
        const v = rng.pick(VAR_INDEXES);
        const token = ++this.#ids;
        scope.tokens.push({ id: token, v, scope: scope.id, frozen: false });
        return { op: "set", v, value: `s${token}`, token };
      }
      case "get": {
        const v = rng.pick(VAR_INDEXES);
        return rng.chance(0.2) ? { op: "get", v, fallback: "f" } : { op: "get", v };
      }
      case "reset": {
        const token = rng.pick(resettable);
        const v = rng.chance(0.8) ? token.v : rng.pick(VAR_INDEXES);
        return { op: "reset", v, token: token.id };
      }
      case "sleep":
        return {
          op: "sleep",
          kind: rng.weighted<SleepKind>({
            micro: 5,
            immediate: 4,
            timer: 1,
            tick: 1,
            thenable: 1,
            io: 1,
          }),
        };
      case "await":
        return { op: "await", body: this.body(scope, depth + 1, false, nested) };
      case "spawn": {
        const task = ++this.#ids;
        const child = this.#childScope(scope);
        const body = this.taskBody(child, depth + 1, nested);
        scope.task.handles.push({ id: task, exports: child.tokens, joined: false });
        return { op: "spawn", task, body };
      }
      case "join": {
        const open = scope.task.handles.filter((h) => !h.joined);
        const holding = open.filter((h) => h.shared !== undefined);
        // Mostly an open handle, first one holding a captured Context; sometimes one
        // already joined (awaiting a done task again).
        const handle =
          holding.length > 0 && rng.chance(0.5)
            ? rng.pick(holding)
            : open.length > 0 && rng.chance(0.85)
              ? rng.pick(open)
              : rng.pick(scope.task.handles);
        return this.#join(scope, handle);
      }
      case "copyRun": {
        const inner: Scope = { id: ++this.#ids, tokens: [...scope.tokens], task: scope.task };
        const body = this.body(inner, depth + 1, true, nested);
        // The copy is gone once run returns: its tokens can only fail from now on.
        addTokens(scope.tokens, inner.tokens);
        return this.#raises({ op: "copyRun", body });
      }
      case "varRun": {
        const v = rng.pick(VAR_INDEXES);
        const inner: Scope = { id: ++this.#ids, tokens: [...scope.tokens], task: scope.task };
        const body = this.body(inner, depth + 1, true, nested);
        addTokens(scope.tokens, inner.tokens);
        return this.#raises({ op: "varRun", v, value: `r${inner.id}`, body });
      }
      case "isolated": {
        // A task joined at once: its Context a copy, its tokens the caller's once it returns.
        const id = ++this.#ids;
        const child = this.#childScope(scope);
        const body = this.taskBody(child, depth + 1, nested);
        addTokens(scope.tokens, child.tokens);
        return rng.chance(0.3)
          ? { op: "isolated", id, body, timeout: true }
          : { op: "isolated", id, body };
      }
      case "tokenOld":
        return { op: "tokenOld", token: rng.pick(scope.tokens).id };
      case "keys":
        return scope.task.contexts.some((c) => !c.busy) && rng.chance(0.5)
          ? { op: "keys", ctx: this.#free(scope).ctx }
          : { op: "keys" };
      case "gather": {
        const id = ++this.#ids;
        const children = Array.from({ length: 1 + rng.int(3) }, () => this.#childScope(scope));
        const bodies = children.map((child) => this.taskBody(child, depth + 1, nested));
        // gather returns when every child is done.
        for (const child of children) addTokens(scope.tokens, child.tokens);
        if (!rng.chance(0.3)) return { op: "gather", id, bodies };
        const raising = bodies.map(() => rng.chance(0.4));
        return { op: "gather", id, bodies, settled: true, raising };
      }
      case "group": {
        const group: OpenGroup = {
          id: ++this.#ids,
          owner: scope.task,
          fails: rng.chance(0.25),
          exports: [],
          added: [],
        };
        scope.task.groups.push(group);
        // At least one child, with body ops before and after it.
        const body = [
          ...this.body(scope, depth + 1, false, 2),
          this.#spend("groupSpawn", scope, depth + 1),
          ...this.body(scope, depth + 1, false, nested - 1),
        ];
        // The last ops: one or two children that raise, run (at the loop's next turn in
        // asyncio, at once here) after every other child has run to its end or its wait
        // to be cancelled; the body awaits nothing more. asyncio runs the second too: its
        // first step is queued before the first one's failure reaches the group.
        const failing: Scope[] = [];
        for (let n = group.fails ? 1 + (rng.chance(0.3) ? 1 : 0) : 0; n > 0; n--) {
          const child = this.#childScope(scope, ++this.#ids, true);
          failing.push(child);
          const ops = this.body(child, depth + 2, true, nested);
          this.#budget--;
          body.push({
            op: "groupSpawn",
            group: group.id,
            task: ++this.#ids,
            body: ops,
            raise: true,
          });
        }
        scope.task.groups.pop();
        // The group's exit waits for every child, as a join of each.
        const handles = scope.task.handles;
        for (const handle of [...handles, ...group.added]) {
          if (handle.group === group.id && !handle.joined) this.#join(scope, handle);
        }
        for (const child of failing) addTokens(scope.tokens, child.tokens);
        addTokens(scope.tokens, group.exports);
        // A failed group cancels its children: one cancelled while its task had yet to
        // settle rejects here when awaited, and completed in asyncio. Not awaited again.
        if (group.fails) {
          for (let i = handles.length - 1; i >= 0; i--) {
            if (handles[i]?.group === group.id) handles.splice(i, 1);
          }
        }
        const form = rng.weighted<GroupForm>({ function: 2, wait: 1, dispose: 1 });
        return { op: "group", id: group.id, body, fails: group.fails, form };
      }
      case "groupSpawn": {
        const groups = scope.task.groups;
        // Mostly the innermost group; an outer one is open too.
        const group = rng.chance(0.8) ? (groups.at(-1) as OpenGroup) : rng.pick(groups);
        const task = ++this.#ids;
        // A failing group's children await nothing: each runs to its end before the
        // failure, in asyncio too, so the group's cancelling them cuts no trace short.
        const child = this.#childScope(scope, ++this.#ids, group.fails);
        if (!group.fails) child.task.groups.push(group);
        const body = group.fails
          ? this.body(child, depth + 1, true, nested)
          : this.taskBody(child, depth + 1, nested);
        // Or it ends waiting to be cancelled: it has started before the failing child runs
        // (asyncio starts tasks in creation order), and nobody ever joins it.
        if (group.fails && rng.chance(0.4)) {
          group.exports.push(...child.tokens);
          return { op: "groupSpawn", group: group.id, task, body, hang: true };
        }
        const handle = { id: task, exports: child.tokens, joined: false, group: group.id };
        if (group.owner === scope.task) scope.task.handles.push(handle);
        else group.added.push(handle);
        return { op: "groupSpawn", group: group.id, task, body };
      }
      case "capture": {
        const ctx = ++this.#ids;
        // Sometimes an empty Context, or a copy of a captured one nobody holds.
        const from: "empty" | number | undefined = rng.chance(0.15)
          ? "empty"
          : scope.task.contexts.some((c) => !c.busy) && rng.chance(0.5)
            ? this.#free(scope).ctx
            : undefined;
        scope.task.contexts.push({
          ctx,
          scope: ++this.#ids,
          busy: false,
          used: typeof from === "number",
          running: false,
        });
        return from === undefined ? { op: "capture", ctx } : { op: "capture", ctx, from };
      }
      case "ctxSpawn": {
        const shared = this.#free(scope);
        const task = ++this.#ids;
        // Held until the task is joined: nobody else runs in it meanwhile.
        shared.busy = true;
        shared.used = true;
        const child = this.#childScope(scope, shared.scope);
        // Often a group's child (one that does not fail: the exit joins it).
        const groups = scope.task.groups.filter((g) => !g.fails);
        const group = groups.length > 0 && rng.chance(0.6) ? rng.pick(groups) : undefined;
        if (group !== undefined) child.task.groups.push(group);
        const body = this.taskBody(child, depth + 1, nested);
        const handle = { id: task, exports: child.tokens, joined: false, shared, group: group?.id };
        if (group === undefined || group.owner === scope.task) scope.task.handles.push(handle);
        else group.added.push(handle);
        return group === undefined
          ? { op: "ctxSpawn", ctx: shared.ctx, task, body }
          : { op: "ctxSpawn", group: group.id, ctx: shared.ctx, task, body };
      }
      case "ctxRun": {
        const shared = this.#free(scope);
        // Held while run runs: a run inside it would enter it twice.
        shared.busy = true;
        shared.running = true;
        const inner: Scope = { id: shared.scope, tokens: [...scope.tokens], task: scope.task };
        const body = this.body(inner, depth + 1, true, nested);
        shared.busy = false;
        shared.running = false;
        shared.used = true;
        this.#freed = shared;
        addTokens(scope.tokens, inner.tokens);
        return this.#raises({ op: "ctxRun", ctx: shared.ctx, body });
      }
      case "ctxGet":
        return { op: "ctxGet", ctx: this.#free(scope).ctx, v: rng.pick(VAR_INDEXES) };
      case "ctxHas":
        return { op: "ctxHas", ctx: this.#free(scope).ctx, v: rng.pick(VAR_INDEXES) };
      case "bindRun": {
        // A fresh copy of C[ctx]: nothing the body does reaches C[ctx].
        const ctx = this.#free(scope).ctx;
        const inner: Scope = { id: ++this.#ids, tokens: [...scope.tokens], task: scope.task };
        const body = this.body(inner, depth + 1, true, nested);
        addTokens(scope.tokens, inner.tokens);
        return this.#raises({ op: "bindRun", ctx, body });
      }
      case "reenter":
        return {
          op: "reenter",
          ctx: rng.pick(scope.task.contexts.filter((c) => c.running)).ctx,
        };
      case "callSoon": {
        const id = ++this.#ids;
        const child = this.#childScope(scope, ++this.#ids);
        const body = this.body(child, depth + 1, true, nested);
        scope.task.callbacks.push({ id, exports: child.tokens, frame: child.task, waited: false });
        return { op: "callSoon", id, later: rng.chance(0.3), body };
      }
      case "callWait": {
        const open = scope.task.callbacks.filter((c) => !c.waited);
        // Mostly one not awaited yet; sometimes one awaited already (a done future again).
        const callback =
          open.length > 0 && rng.chance(0.85) ? rng.pick(open) : rng.pick(scope.task.callbacks);
        return this.#wait(scope, callback);
      }
    }
  }

  /** An op of a kind chosen by the caller, counted against the budget (which it may overrun). */
  #spend(kind: "groupSpawn" | "ctxSpawn" | "ctxRun", scope: Scope, depth: number): Op {
    this.#budget--;
    return this.#op(kind, scope, depth, []);
  }

  /** Sometimes a run's body ends by raising. */
  #raises<R extends Op & { op: "copyRun" | "varRun" | "ctxRun" | "bindRun" }>(op: R): R {
    return this.#rng.chance(0.2) ? { ...op, raises: true } : op;
  }

  #free(scope: Scope): Shared {
    return this.#rng.pick(scope.task.contexts.filter((c) => !c.busy));
  }

  #join(scope: Scope, handle: Handle): Op {
    // Only its first join frees the Context: awaiting a done task again, later, must not
    // free it while another task given it since still runs.
    if (handle.shared !== undefined && !handle.joined) {
      handle.shared.busy = false;
      this.#freed = handle.shared;
    }
    handle.joined = true;
    addTokens(scope.tokens, handle.exports);
    return { op: "join", task: handle.id };
  }

  #wait(scope: Scope, callback: Callback): Op {
    // Only its first wait hands its tasks and callbacks over.
    if (!callback.waited) {
      scope.task.handles.push(...callback.frame.handles);
      scope.task.callbacks.push(...callback.frame.callbacks);
    }
    callback.waited = true;
    addTokens(scope.tokens, callback.exports);
    return { op: "callWait", id: callback.id };
  }

  /**
   * A new task's (or callback's) scope: a Context of its own (or the captured
   * one with that scope id), and some of the creator's tokens, frozen.
   */
  #childScope(parent: Scope, id = ++this.#ids, leaf = false): Scope {
    const tokens: TokenInfo[] = [];
    for (const token of parent.tokens) {
      if (this.#rng.chance(0.5)) {
        token.frozen = true;
        tokens.push(token);
      }
    }
    return { id, tokens, task: frame(leaf) };
  }
}

/** The program of a seed: the same seed gives the same program. */
export function generateProgram(
  seed: number,
  options: GenerateOptions = DEFAULT_GENERATE_OPTIONS,
): Program {
  const rng = new Rng(seed);
  const spec = (i: number): VarSpec =>
    rng.chance(0.5) ? { name: `v${i}`, default: `d${i}` } : { name: `v${i}` };
  const vars = [spec(0), spec(1), spec(2)] as const;
  const generator = new Generator(rng, options);
  const scope: Scope = { id: 0, tokens: [], task: frame() };
  const main = generator.taskBody(scope, 0, options.maxMainOps, 3);
  return { seed, vars, main };
}

/** The bodies nested in an op, in program order. */
export function nestedBodies(op: Op): readonly (readonly Op[])[] {
  switch (op.op) {
    case "await":
    case "spawn":
    case "copyRun":
    case "varRun":
    case "isolated":
    case "bindRun":
    case "group":
    case "groupSpawn":
    case "ctxSpawn":
    case "ctxRun":
    case "callSoon":
      return [op.body];
    case "gather":
      return op.bodies;
    default:
      return [];
  }
}

/** How many ops of each kind a program has (to check the generator covers them all). */
export function countOps(ops: readonly Op[], into: Partial<Record<OpKind, number>> = {}) {
  for (const op of ops) {
    into[op.op] = (into[op.op] ?? 0) + 1;
    for (const body of nestedBodies(op)) countOps(body, into);
  }
  return into;
}
