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
 */

export type VarIndex = 0 | 1 | 2;
export const VAR_INDEXES: readonly VarIndex[] = [0, 1, 2];

export type SleepKind = "micro" | "immediate" | "timer";

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
  | { readonly op: "copyRun"; readonly body: readonly Op[] }
  /** `await asyncio.gather(c0(), c1(), …)` ↔ `await gather(() => c0(), …)`: one task each */
  | { readonly op: "gather"; readonly id: number; readonly bodies: readonly (readonly Op[])[] };

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

/** The trace entries, shared by both sides so that they are spelled once. */
export function getLabel(v: VarIndex, fallback: string | undefined): string {
  return fallback === undefined ? `get v${v}` : `get v${v} or ${fallback}`;
}
export function resetLabel(v: VarIndex, token: number): string {
  return `reset v${v} #${token}`;
}
export const UNSET = "<unset>";
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

interface Handle {
  readonly id: number;
  /** The tokens the child ends with: the parent may use them once joined. */
  readonly exports: readonly TokenInfo[];
  joined: boolean;
}

interface TaskFrame {
  readonly handles: Handle[];
}

/** One Context: a task's (shared by the coroutines it awaits) or a copyRun's. */
interface Scope {
  readonly id: number;
  /** The tokens code in this scope may pass to reset. */
  readonly tokens: TokenInfo[];
  readonly task: TaskFrame;
}

/** Size limits. */
export interface GenerateOptions {
  /** Nesting depth of await/spawn/copyRun/gather bodies. */
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

class Generator {
  readonly #rng: Rng;
  readonly #options: GenerateOptions;
  #ids = 0;
  #budget: number;

  constructor(rng: Rng, options: GenerateOptions) {
    this.#rng = rng;
    this.#options = options;
    this.#budget = options.budget;
  }

  /** The body of a task, ending with a join of every task it spawned and did not join. */
  taskBody(scope: Scope, depth: number, maxOps: number, minOps = 0): Op[] {
    const ops = this.body(scope, depth, false, maxOps, minOps);
    for (const handle of scope.task.handles) {
      if (!handle.joined) ops.push(this.#join(scope, handle));
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
      const joinable = scope.task.handles;
      const kind = rng.weighted<OpKind>({
        set: 4,
        get: 5,
        reset: resettable.length > 0 ? 3 : 0,
        sleep: sync ? 0 : 2,
        await: sync ? 0 : 1.2 * nest,
        spawn: (sync ? 0.6 : 1.4) * nest,
        join: sync || joinable.length === 0 ? 0 : 1.5,
        copyRun: 1 * nest,
        gather: sync ? 0 : 0.8 * nest,
      });
      ops.push(this.#op(kind, scope, depth, resettable));
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
        return { op: "sleep", kind: rng.weighted<SleepKind>({ micro: 5, immediate: 4, timer: 1 }) };
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
        // Mostly an open handle; sometimes one already joined (awaiting a done task again).
        const handle =
          open.length > 0 && rng.chance(0.85) ? rng.pick(open) : rng.pick(scope.task.handles);
        return this.#join(scope, handle);
      }
      case "copyRun": {
        const inner: Scope = { id: ++this.#ids, tokens: [...scope.tokens], task: scope.task };
        const body = this.body(inner, depth + 1, true, nested);
        // The copy is gone once run returns: its tokens can only fail from now on.
        addTokens(scope.tokens, inner.tokens);
        return { op: "copyRun", body };
      }
      case "gather": {
        const id = ++this.#ids;
        const children = Array.from({ length: 1 + rng.int(3) }, () => this.#childScope(scope));
        const bodies = children.map((child) => this.taskBody(child, depth + 1, nested));
        // gather returns when every child is done.
        for (const child of children) addTokens(scope.tokens, child.tokens);
        return { op: "gather", id, bodies };
      }
    }
  }

  #join(scope: Scope, handle: Handle): Op {
    handle.joined = true;
    addTokens(scope.tokens, handle.exports);
    return { op: "join", task: handle.id };
  }

  /** A new task's scope: a Context of its own, and some of the creator's tokens, frozen. */
  #childScope(parent: Scope): Scope {
    const tokens: TokenInfo[] = [];
    for (const token of parent.tokens) {
      if (this.#rng.chance(0.5)) {
        token.frozen = true;
        tokens.push(token);
      }
    }
    return { id: ++this.#ids, tokens, task: { handles: [] } };
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
  const scope: Scope = { id: 0, tokens: [], task: { handles: [] } };
  const main = generator.taskBody(scope, 0, options.maxMainOps, 3);
  return { seed, vars, main };
}

/** How many ops of each kind a program has (to check the generator covers them all). */
export function countOps(ops: readonly Op[], into: Partial<Record<OpKind, number>> = {}) {
  for (const op of ops) {
    into[op.op] = (into[op.op] ?? 0) + 1;
    if (op.op === "await" || op.op === "spawn" || op.op === "copyRun") countOps(op.body, into);
    if (op.op === "gather") for (const body of op.bodies) countOps(body, into);
  }
  return into;
}
