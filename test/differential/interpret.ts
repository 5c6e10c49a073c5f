/**
 * Runs a Program against this package (an interpreter over the AST), and
 * renders it as the equivalent JavaScript for reports. The interpreter does
 * exactly what the rendered source says, op for op.
 */
import { stat } from "node:fs";
import {
  bind,
  Context,
  ContextEnteredError,
  ContextVar,
  callLater,
  callSoon,
  copyContext,
  createTask,
  gather,
  isolated,
  LookupError,
  MISSING,
  run,
  type Task,
  TaskGroup,
  type Token,
  TokenMismatchError,
  TokenUsedError,
  taskGroup,
  timeout,
} from "contextvars";
import type { StartingState } from "../helpers/starting-states.ts";
import {
  callbackPath,
  ctxGetLabel,
  ctxHasLabel,
  gatherPath,
  gatherRaiseMessage,
  getLabel,
  groupFailedLabel,
  isolatedPath,
  keysEntry,
  keysLabel,
  MISSING_VALUE,
  NONE,
  type Op,
  type Program,
  type ResetOutcome,
  RUN_RAISED,
  raiseMessage,
  reenterLabel,
  resetLabel,
  type SleepKind,
  settledLabel,
  spawnPath,
  type Traces,
  tokenOldLabel,
  UNSET,
} from "./generate.ts";

type Vars = readonly [ContextVar<string>, ContextVar<string>, ContextVar<string>];

class Interpreter {
  readonly traces: Traces = {};
  readonly #vars: Vars;
  readonly #tokens = new Map<number, Token<string>>();
  readonly #tasks = new Map<number, Task<void>>();
  readonly #groups = new Map<number, TaskGroup>();
  readonly #contexts = new Map<number, Context>();
  /** Each scheduled callback's completion. */
  readonly #callbacks = new Map<number, Promise<void>>();

  constructor(program: Program) {
    this.#vars = program.vars.map((spec) =>
      spec.default === undefined
        ? new ContextVar<string>(spec.name)
        : new ContextVar<string>(spec.name, { default: spec.default }),
    ) as unknown as Vars;
  }

  /**
   * A task's function: opens its trace, then runs its body; `raise` ends it with that
   * failure, `hang` waits until the task is cancelled.
   */
  async task(ops: readonly Op[], path: string, raise?: string, hang?: AbortSignal): Promise<void> {
    const trace: string[] = [];
    this.traces[path] = trace;
    await this.async(ops, trace, path);
    if (raise !== undefined) throw new Error(raise);
    if (hang !== undefined) await cancelled(hang);
  }

  /** An async body: a task's, or an awaited child coroutine's (same Context). */
  async async(ops: readonly Op[], trace: string[], path: string): Promise<void> {
    for (const op of ops) {
      switch (op.op) {
        case "sleep":
          await sleep(op.kind);
          break;
        case "await":
          await this.async(op.body, trace, path);
          break;
        case "join":
          await this.#task(op.task);
          break;
        case "gather": {
          const child = (i: number) => gatherPath(path, op.id, i);
          if (!op.settled) {
            await gather(...op.bodies.map((body, i) => () => this.task(body, child(i))));
            break;
          }
          const raise = (i: number) => (op.raising?.[i] ? gatherRaiseMessage(op.id, i) : undefined);
          const results = await Promise.allSettled(
            op.bodies.map((body, i) => createTask(() => this.task(body, child(i), raise(i)))),
          );
          const outcomes = results.map((r) => (r.status === "fulfilled" ? "ok" : r.reason.message));
          trace.push(`${settledLabel(op.id)} ${outcomes.join(" ")}`);
          break;
        }
        case "isolated": {
          const own = isolatedPath(path, op.id);
          if (op.timeout) await timeout(60_000, () => this.task(op.body, own));
          else await isolated(() => this.task(op.body, own))();
          break;
        }
        case "group":
          try {
            await this.#group(op, trace, path);
          } catch (error) {
            if (!op.fails || !(error instanceof AggregateError)) throw error;
            const messages = error.errors.map((e: unknown) => (e as Error).message).sort();
            trace.push(`${groupFailedLabel(op.id)} ${messages.join(" ")}`);
          }
          break;
        case "callWait":
          await this.#lookup(this.#callbacks, op.id, "callback");
          break;
        default:
          this.sync(op, trace, path);
      }
    }
  }

  /** A group's body in one of the three forms, up to the group's exit. */
  async #group(op: Op & { op: "group" }, trace: string[], path: string): Promise<void> {
    const body = async (group: TaskGroup) => {
      this.#groups.set(op.id, group);
      await this.async(op.body, trace, path);
    };
    if (op.form === "function") {
      await taskGroup(body);
      return;
    }
    const group = new TaskGroup();
    if (op.form === "wait") {
      await body(group);
      await group.wait();
      return;
    }
    try {
      await body(group);
    } finally {
      await group[Symbol.asyncDispose]();
    }
  }

  /** An op that does not await (all a copyRun body may hold). */
  sync(op: Op, trace: string[], path: string): void {
    switch (op.op) {
      case "set":
        this.#tokens.set(op.token, this.#var(op.v).set(op.value));
        return;
      case "get": {
        const v = this.#var(op.v);
        if (op.fallback !== undefined) {
          trace.push(`${getLabel(op.v, op.fallback)} -> ${v.get(op.fallback)}`);
          return;
        }
        let value: string;
        try {
          value = v.get();
        } catch (error) {
          if (!(error instanceof LookupError)) throw error;
          value = UNSET;
        }
        trace.push(`${getLabel(op.v, undefined)} -> ${value}`);
        return;
      }
      case "reset": {
        const token = this.#tokens.get(op.token);
        if (token === undefined) throw new Error(`generator bug: token #${op.token} not made yet`);
        let outcome: ResetOutcome = "ok";
        try {
          this.#var(op.v).reset(token);
        } catch (error) {
          if (error instanceof TokenUsedError) outcome = "used";
          else if (error instanceof TokenMismatchError) outcome = "mismatch";
          else throw error;
        }
        trace.push(`${resetLabel(op.v, op.token)} -> ${outcome}`);
        return;
      }
      case "spawn":
        this.#tasks.set(
          op.task,
          createTask(() => this.task(op.body, spawnPath(path, op.task))),
        );
        return;
      case "copyRun":
        this.#run(op, trace, path, (fn) => copyContext().run(fn));
        return;
      case "varRun":
        this.#run(op, trace, path, (fn) => this.#var(op.v).run(op.value, fn));
        return;
      case "bindRun":
        this.#run(op, trace, path, (fn) =>
          bind(fn, this.#lookup(this.#contexts, op.ctx, "context"))(),
        );
        return;
      case "reenter": {
        let outcome = "ran";
        try {
          this.#lookup(this.#contexts, op.ctx, "context").run(() => {});
        } catch (error) {
          if (!(error instanceof ContextEnteredError)) throw error;
          outcome = "entered";
        }
        trace.push(`${reenterLabel(op.ctx)} -> ${outcome}`);
        return;
      }
      case "tokenOld": {
        const old = this.#lookup(this.#tokens, op.token, "token").oldValue;
        trace.push(`${tokenOldLabel(op.token)} -> ${old === MISSING ? MISSING_VALUE : old}`);
        return;
      }
      case "keys": {
        const context =
          op.ctx === undefined ? copyContext() : this.#lookup(this.#contexts, op.ctx, "context");
        // Only the program's vars: main may start inside a Context holding others.
        const names = [...context.keys()].filter((v) => this.#has(v)).map((v) => v.name);
        trace.push(keysEntry(op.ctx, names));
        return;
      }
      case "ctxHas": {
        const context = this.#lookup(this.#contexts, op.ctx, "context");
        trace.push(`${ctxHasLabel(op.ctx, op.v)} -> ${context.has(this.#var(op.v))}`);
        return;
      }
      case "groupSpawn": {
        const group = this.#lookup(this.#groups, op.group, "group");
        const raise = op.raise ? raiseMessage(op.task) : undefined;
        const child = spawnPath(path, op.task);
        this.#tasks.set(
          op.task,
          op.hang
            ? group.createTask((signal) => this.task(op.body, child, raise, signal))
            : group.createTask(() => this.task(op.body, child, raise)),
        );
        return;
      }
      case "capture":
        this.#contexts.set(
          op.ctx,
          op.from === undefined
            ? copyContext()
            : op.from === "empty"
              ? new Context()
              : this.#lookup(this.#contexts, op.from, "context").copy(),
        );
        return;
      case "ctxSpawn": {
        const context = this.#lookup(this.#contexts, op.ctx, "context");
        const fn = () => this.task(op.body, spawnPath(path, op.task));
        this.#tasks.set(
          op.task,
          op.group === undefined
            ? createTask(fn, { context })
            : this.#lookup(this.#groups, op.group, "group").createTask(fn, { context }),
        );
        return;
      }
      case "ctxRun":
        this.#run(op, trace, path, (fn) => this.#lookup(this.#contexts, op.ctx, "context").run(fn));
        return;
      case "ctxGet": {
        const context = this.#lookup(this.#contexts, op.ctx, "context");
        trace.push(`${ctxGetLabel(op.ctx, op.v)} -> ${context.get(this.#var(op.v), NONE)}`);
        return;
      }
      case "callSoon": {
        const own = callbackPath(path, op.id);
        const done = new Promise<void>((resolve, reject) => {
          const callback = () => {
            try {
              const inner: string[] = [];
              this.traces[own] = inner;
              for (const o of op.body) this.sync(o, inner, own);
              resolve();
            } catch (error) {
              reject(error);
            }
          };
          if (op.later) callLater(0, callback);
          else callSoon(callback);
        });
        this.#callbacks.set(op.id, done);
        return;
      }
      default:
        throw new Error(`generator bug: ${op.op} in a synchronous body`);
    }
  }

  /** A synchronous run's body, through `run`; one that `raises` ends by throwing, caught here. */
  #run(
    op: Op & { body: readonly Op[]; raises?: true },
    trace: string[],
    path: string,
    run: (fn: () => void) => void,
  ): void {
    try {
      run(() => {
        for (const inner of op.body) this.sync(inner, trace, path);
        if (op.raises) throw new RunRaised();
      });
    } catch (error) {
      if (!(error instanceof RunRaised)) throw error;
      trace.push(RUN_RAISED);
    }
  }

  #var(v: number): ContextVar<string> {
    const found = this.#vars[v];
    if (found === undefined) throw new Error(`no var ${v}`);
    return found;
  }

  #has(v: ContextVar<unknown>): boolean {
    return (this.#vars as readonly ContextVar<unknown>[]).includes(v);
  }

  #task(id: number): Task<void> {
    return this.#lookup(this.#tasks, id, "task");
  }

  #lookup<T>(map: Map<number, T>, id: number, what: string): T {
    const found = map.get(id);
    if (found === undefined) throw new Error(`generator bug: ${what} #${id} not made yet`);
    return found;
  }
}

/** What a run's body that `raises` throws. */
class RunRaised extends Error {}

const SLEEPS: Record<SleepKind, string> = {
  micro: "await Promise.resolve();",
  immediate: "await new Promise((r) => setImmediate(r));",
  timer: "await new Promise((r) => setTimeout(r, 0));",
  tick: "await new Promise((r) => process.nextTick(r));",
  thenable: "await { then(r) { r(); } };",
  io: 'await new Promise((r) => stat(".", () => r()));',
};

/** Rejects with the signal's reason when it aborts (asyncio's CancelledError at an await). */
function cancelled(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

const CANCELLED =
  'await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));';

const thenable: PromiseLike<void> = {
  // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
  then: (resolve) => resolve?.() as never,
};

function sleep(kind: SleepKind): PromiseLike<void> {
  if (kind === "micro") return Promise.resolve();
  if (kind === "immediate") return new Promise((resolve) => setImmediate(resolve));
  if (kind === "tick") return new Promise((resolve) => process.nextTick(resolve));
  // A thenable that is not a promise: await calls its then in a job of its own.
  if (kind === "thenable") return thenable;
  if (kind === "io") return new Promise((resolve) => stat(".", () => resolve()));
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Runs the program as asyncio.run would (main as a task in a copy of the
 * current Context), entered from `state` (default: the root Context).
 */
export async function interpret(program: Program, state?: StartingState): Promise<Traces> {
  const interpreter = new Interpreter(program);
  const main = () => run(() => interpreter.task(program.main, "main"));
  await (state === undefined ? main() : state.enter(main));
  return interpreter.traces;
}

// --- rendering ------------------------------------------------------------

const js = (s: string): string => JSON.stringify(s);

class JsWriter {
  readonly lines: string[] = [];

  line(indent: number, text: string): void {
    this.lines.push(`${"  ".repeat(indent)}${text}`);
  }

  body(ops: readonly Op[], indent: number, task: string): void {
    for (const op of ops) this.#op(op, indent, task);
  }

  /**
   * `async () => { … }` opening a new task's trace; `end` closes the call around it; `raise`
   * ends it with that failure, `hang` with an await only a cancel ends.
   */
  #taskFunction(
    open: string,
    path: string,
    ops: readonly Op[],
    indent: number,
    end: string,
    raise?: string,
    hang?: boolean,
  ) {
    this.line(indent, `${open}async (${hang ? "signal" : ""}) => {`);
    this.line(indent + 1, `const tr = (T[${js(path)}] = []);`);
    this.body(ops, indent + 1, path);
    if (raise !== undefined) this.line(indent + 1, `throw new Error(${js(raise)});`);
    if (hang) this.line(indent + 1, CANCELLED);
    this.line(indent, `}${end}`);
  }

  /** `open` … `close` around a run's body; one that `raises` ends by throwing, caught. */
  #run(
    open: string,
    close: string,
    op: Op & { body: readonly Op[]; raises?: true },
    indent: number,
    task: string,
  ): void {
    const inner = op.raises ? indent + 1 : indent;
    if (op.raises) this.line(indent, "try {");
    this.line(inner, open);
    this.body(op.body, inner + 1, task);
    if (op.raises) this.line(inner + 1, "throw new RunRaised();");
    this.line(inner, close);
    if (!op.raises) return;
    this.line(indent, "} catch (e) {");
    this.line(indent + 1, "if (!(e instanceof RunRaised)) throw e;");
    this.line(indent + 1, `tr.push(${js(RUN_RAISED)});`);
    this.line(indent, "}");
  }

  #op(op: Op, indent: number, task: string): void {
    switch (op.op) {
      case "set":
        this.line(indent, `K[${op.token}] = V[${op.v}].set(${js(op.value)});`);
        return;
      case "get": {
        const label = js(`${getLabel(op.v, op.fallback)} -> `);
        if (op.fallback !== undefined) {
          this.line(indent, `tr.push(${label} + V[${op.v}].get(${js(op.fallback)}));`);
          return;
        }
        this.line(indent, `try { tr.push(${label} + V[${op.v}].get()); }`);
        this.line(
          indent,
          `catch (e) { if (!(e instanceof LookupError)) throw e; tr.push(${js(`${getLabel(op.v, undefined)} -> ${UNSET}`)}); }`,
        );
        return;
      }
      case "reset": {
        const label = resetLabel(op.v, op.token);
        this.line(
          indent,
          `try { V[${op.v}].reset(K[${op.token}]); tr.push(${js(`${label} -> ok`)}); }`,
        );
        this.line(indent, "catch (e) {");
        this.line(
          indent + 1,
          `if (e instanceof TokenUsedError) tr.push(${js(`${label} -> used`)});`,
        );
        this.line(
          indent + 1,
          `else if (e instanceof TokenMismatchError) tr.push(${js(`${label} -> mismatch`)});`,
        );
        this.line(indent + 1, "else throw e;");
        this.line(indent, "}");
        return;
      }
      case "sleep":
        this.line(indent, SLEEPS[op.kind]);
        return;
      case "await":
        this.line(indent, "await (async () => {");
        this.body(op.body, indent + 1, task);
        this.line(indent, "})();");
        return;
      case "spawn":
        this.#taskFunction(
          `H[${op.task}] = createTask(`,
          spawnPath(task, op.task),
          op.body,
          indent,
          ");",
        );
        return;
      case "join":
        this.line(indent, `await H[${op.task}];`);
        return;
      case "copyRun":
        this.#run("copyContext().run(() => {", "});", op, indent, task);
        return;
      case "varRun":
        this.#run(`V[${op.v}].run(${js(op.value)}, () => {`, "});", op, indent, task);
        return;
      case "bindRun":
        this.#run("bind(() => {", `}, C[${op.ctx}])();`, op, indent, task);
        return;
      case "reenter": {
        const label = reenterLabel(op.ctx);
        this.line(indent, `try { C[${op.ctx}].run(() => {}); tr.push(${js(`${label} -> ran`)}); }`);
        this.line(
          indent,
          `catch (e) { if (!(e instanceof ContextEnteredError)) throw e; tr.push(${js(`${label} -> entered`)}); }`,
        );
        return;
      }
      case "isolated": {
        const [open, end] = op.timeout
          ? ["await timeout(60_000, ", ");"]
          : ["await isolated(", ")();"];
        this.#taskFunction(open, isolatedPath(task, op.id), op.body, indent, end);
        return;
      }
      case "tokenOld": {
        const label = js(`${tokenOldLabel(op.token)} -> `);
        this.line(
          indent,
          `tr.push(${label} + (K[${op.token}].oldValue === MISSING ? ${js(MISSING_VALUE)} : K[${op.token}].oldValue));`,
        );
        return;
      }
      case "keys": {
        const context = op.ctx === undefined ? "copyContext()" : `C[${op.ctx}]`;
        this.line(
          indent,
          `{ const n = [...${context}.keys()].filter((v) => V.includes(v)).map((v) => v.name).sort();`,
        );
        this.line(
          indent,
          `  tr.push(${js(`${keysLabel(op.ctx)} -> `)} + n.length + ": " + n.join(",")); }`,
        );
        return;
      }
      case "ctxHas": {
        const label = js(`${ctxHasLabel(op.ctx, op.v)} -> `);
        this.line(indent, `tr.push(${label} + C[${op.ctx}].has(V[${op.v}]));`);
        return;
      }
      case "gather":
        if (!op.settled) {
          this.line(indent, "await gather(");
          op.bodies.forEach((body, i) => {
            this.#taskFunction("", gatherPath(task, op.id, i), body, indent + 1, ",");
          });
          this.line(indent, ");");
          return;
        }
        this.line(indent, "{ const r = await Promise.allSettled([");
        op.bodies.forEach((body, i) => {
          const raise = op.raising?.[i] ? gatherRaiseMessage(op.id, i) : undefined;
          this.#taskFunction(
            "createTask(",
            gatherPath(task, op.id, i),
            body,
            indent + 1,
            "),",
            raise,
          );
        });
        this.line(indent, "]);");
        this.line(
          indent,
          `  tr.push(${js(`${settledLabel(op.id)} `)} + r.map((x) => x.status === "fulfilled" ? "ok" : x.reason.message).join(" ")); }`,
        );
        return;
      case "group": {
        const inner = op.fails ? indent + 1 : indent;
        if (op.fails) this.line(indent, "try {");
        if (op.form === "function") {
          this.line(inner, "await taskGroup(async (g) => {");
          this.line(inner + 1, `G[${op.id}] = g;`);
          this.body(op.body, inner + 1, task);
          this.line(inner, "});");
        } else if (op.form === "wait") {
          this.line(inner, `G[${op.id}] = new TaskGroup();`);
          this.body(op.body, inner, task);
          this.line(inner, `await G[${op.id}].wait();`);
        } else {
          // What `await using g = new TaskGroup()` does, in syntax Node 20 runs.
          this.line(inner, `G[${op.id}] = new TaskGroup();`);
          this.line(inner, "try {");
          this.body(op.body, inner + 1, task);
          this.line(inner, `} finally { await G[${op.id}][Symbol.asyncDispose](); }`);
        }
        if (!op.fails) return;
        this.line(indent, "} catch (e) {");
        this.line(indent + 1, "if (!(e instanceof AggregateError)) throw e;");
        const label = js(`${groupFailedLabel(op.id)} `);
        this.line(
          indent + 1,
          `tr.push(${label} + e.errors.map((x) => x.message).sort().join(" "));`,
        );
        this.line(indent, "}");
        return;
      }
      case "groupSpawn":
        this.#taskFunction(
          `H[${op.task}] = G[${op.group}].createTask(`,
          spawnPath(task, op.task),
          op.body,
          indent,
          ");",
          op.raise ? raiseMessage(op.task) : undefined,
          op.hang,
        );
        return;
      case "capture": {
        const made =
          op.from === undefined
            ? "copyContext()"
            : op.from === "empty"
              ? "new Context()"
              : `C[${op.from}].copy()`;
        this.line(indent, `C[${op.ctx}] = ${made};`);
        return;
      }
      case "ctxSpawn":
        this.#taskFunction(
          `H[${op.task}] = ${op.group === undefined ? "" : `G[${op.group}].`}createTask(`,
          spawnPath(task, op.task),
          op.body,
          indent,
          `, { context: C[${op.ctx}] });`,
        );
        return;
      case "ctxRun":
        this.#run(`C[${op.ctx}].run(() => {`, "});", op, indent, task);
        return;
      case "ctxGet": {
        const label = js(`${ctxGetLabel(op.ctx, op.v)} -> `);
        this.line(indent, `tr.push(${label} + C[${op.ctx}].get(V[${op.v}], ${js(NONE)}));`);
        return;
      }
      case "callSoon": {
        const path = callbackPath(task, op.id);
        const call = op.later ? "callLater(0, " : "callSoon(";
        this.line(indent, `W[${op.id}] = new Promise((resolve, reject) => ${call}() => {`);
        this.line(indent + 1, "try {");
        this.line(indent + 2, `const tr = (T[${js(path)}] = []);`);
        this.body(op.body, indent + 2, path);
        this.line(indent + 2, "resolve();");
        this.line(indent + 1, "} catch (e) { reject(e); }");
        this.line(indent, "}));");
        return;
      }
      case "callWait":
        this.line(indent, `await W[${op.id}];`);
        return;
    }
  }
}

/** The program as a JavaScript module against this package, as the interpreter runs it. */
export function renderJs(program: Program): string {
  const w = new JsWriter();
  w.line(0, `// differential program, seed ${program.seed}`);
  w.line(0, 'import { stat } from "node:fs";');
  w.line(
    0,
    `import { Context, ContextEnteredError, ContextVar, LookupError, MISSING, TaskGroup, TokenMismatchError, TokenUsedError, bind, callLater, callSoon, copyContext, createTask, gather, isolated, run, taskGroup, timeout } from "contextvars";`,
  );
  const vars = program.vars.map((v) =>
    v.default === undefined
      ? `new ContextVar(${js(v.name)})`
      : `new ContextVar(${js(v.name)}, { default: ${js(v.default)} })`,
  );
  w.line(0, `const V = [${vars.join(", ")}];`);
  w.line(0, "class RunRaised extends Error {}");
  w.line(
    0,
    "const T = {}, K = {}, H = {}, G = {}, C = {}, W = {}; // traces by task path, tokens, task handles, groups, captured Contexts, callbacks done",
  );
  w.line(0, "async function main() {");
  w.line(1, `const tr = (T["main"] = []);`);
  w.body(program.main, 1, "main");
  w.line(0, "}");
  w.line(0, "await run(main);");
  w.line(0, "console.log(JSON.stringify(T, null, 1));");
  return `${w.lines.join("\n")}\n`;
}
