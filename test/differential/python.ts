/**
 * Renders a Program as a self-contained Python asyncio script and runs a batch
 * of them in one `python3` process (the sources go in as JSON on stdin, the
 * traces come back as JSON on stdout).
 *
 * A rendered script runs on its own too: `python3 prog.py` prints its traces.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  callbackPath,
  ctxGetLabel,
  ctxHasLabel,
  gatherPath,
  gatherRaiseMessage,
  getLabel,
  groupFailedLabel,
  isolatedPath,
  keysLabel,
  MISSING_VALUE,
  NONE,
  type Op,
  type Program,
  RUN_RAISED,
  raiseMessage,
  reenterLabel,
  resetLabel,
  settledLabel,
  spawnPath,
  type Traces,
  tokenOldLabel,
  UNSET,
} from "./generate.ts";

const py = (s: string): string => JSON.stringify(s);

class PythonWriter {
  readonly lines: string[] = [];
  #functions = 0;

  line(indent: number, text: string): void {
    this.lines.push(`${"    ".repeat(indent)}${text}`);
  }

  #name(prefix: string): string {
    return `${prefix}${++this.#functions}`;
  }

  /** The statements of a body; `task` is the path of the task they run in. */
  body(ops: readonly Op[], indent: number, task: string): void {
    if (ops.length === 0) this.line(indent, "pass");
    for (const op of ops) this.#op(op, indent, task);
  }

  /**
   * `async def name():` opening a new task's trace; `raise` ends it with that failure, `hang`
   * with an await only a cancel ends.
   */
  #taskFunction(
    name: string,
    path: string,
    ops: readonly Op[],
    indent: number,
    raise?: string,
    hang?: boolean,
  ): void {
    this.line(indent, `async def ${name}():`);
    this.line(indent + 1, `tr = T[${py(path)}] = []`);
    this.body(ops, indent + 1, path);
    if (raise !== undefined) this.line(indent + 1, `raise Exception(${py(raise)})`);
    if (hang) this.line(indent + 1, "await asyncio.get_running_loop().create_future()");
  }

  /**
   * `def rN(): …` run by `context.run(rN)`; `first` opens the body; one that `raises` ends by
   * raising, caught.
   */
  #run(
    context: string,
    op: Op & { body: readonly Op[]; raises?: true },
    indent: number,
    task: string,
    first?: string,
  ): void {
    const name = this.#name("r");
    this.line(indent, `def ${name}():`);
    if (first !== undefined) this.line(indent + 1, first);
    this.body(op.body, indent + 1, task);
    if (op.raises) this.line(indent + 1, "raise RunRaised()");
    if (!op.raises) {
      this.line(indent, `${context}.run(${name})`);
      return;
    }
    this.line(indent, "try:");
    this.line(indent + 1, `${context}.run(${name})`);
    this.line(indent, "except RunRaised:");
    this.line(indent + 1, `tr.append(${py(RUN_RAISED)})`);
  }

  #op(op: Op, indent: number, task: string): void {
    switch (op.op) {
      case "set":
        this.line(indent, `K[${op.token}] = V[${op.v}].set(${py(op.value)})`);
        return;
      case "get": {
        const label = py(`${getLabel(op.v, op.fallback)} -> `);
        if (op.fallback !== undefined) {
          this.line(indent, `tr.append(${label} + V[${op.v}].get(${py(op.fallback)}))`);
          return;
        }
        this.line(indent, "try:");
        this.line(indent + 1, `tr.append(${label} + V[${op.v}].get())`);
        this.line(indent, "except LookupError:");
        this.line(indent + 1, `tr.append(${py(`${getLabel(op.v, undefined)} -> ${UNSET}`)})`);
        return;
      }
      case "reset": {
        const label = resetLabel(op.v, op.token);
        this.line(indent, "try:");
        this.line(indent + 1, `V[${op.v}].reset(K[${op.token}])`);
        this.line(indent + 1, `tr.append(${py(`${label} -> ok`)})`);
        this.line(indent, "except RuntimeError:");
        this.line(indent + 1, `tr.append(${py(`${label} -> used`)})`);
        this.line(indent, "except ValueError:");
        this.line(indent + 1, `tr.append(${py(`${label} -> mismatch`)})`);
        return;
      }
      case "sleep":
        this.line(indent, `await asyncio.sleep(0)  # ${op.kind}`);
        return;
      case "await": {
        const name = this.#name("a");
        this.line(indent, `async def ${name}():`);
        this.body(op.body, indent + 1, task);
        this.line(indent, `await ${name}()`);
        return;
      }
      case "spawn": {
        const name = `t${op.task}`;
        this.#taskFunction(name, spawnPath(task, op.task), op.body, indent);
        this.line(indent, `H[${op.task}] = asyncio.create_task(${name}())`);
        return;
      }
      case "join":
        this.line(indent, `await H[${op.task}]`);
        return;
      case "copyRun":
        this.#run("contextvars.copy_context()", op, indent, task);
        return;
      case "varRun":
        this.#run(
          "contextvars.copy_context()",
          op,
          indent,
          task,
          `V[${op.v}].set(${py(op.value)})`,
        );
        return;
      case "bindRun":
        this.#run(`C[${op.ctx}].copy()`, op, indent, task);
        return;
      case "reenter": {
        const label = reenterLabel(op.ctx);
        this.line(indent, "try:");
        this.line(indent + 1, `C[${op.ctx}].run(lambda: None)`);
        this.line(indent + 1, `tr.append(${py(`${label} -> ran`)})`);
        this.line(indent, "except RuntimeError:");
        this.line(indent + 1, `tr.append(${py(`${label} -> entered`)})`);
        return;
      }
      case "isolated": {
        const name = `i${op.id}`;
        this.#taskFunction(name, isolatedPath(task, op.id), op.body, indent);
        // wait_for makes a task of a coroutine up to 3.11 and awaits it in place from 3.12.
        const made = `asyncio.create_task(${name}())`;
        this.line(indent, op.timeout ? `await asyncio.wait_for(${made}, 60)` : `await ${made}`);
        return;
      }
      case "tokenOld": {
        const label = py(`${tokenOldLabel(op.token)} -> `);
        const old = `K[${op.token}].old_value`;
        this.line(
          indent,
          `tr.append(${label} + (${py(MISSING_VALUE)} if ${old} is contextvars.Token.MISSING else ${old}))`,
        );
        return;
      }
      case "keys": {
        const context = op.ctx === undefined ? "contextvars.copy_context()" : `C[${op.ctx}]`;
        this.line(indent, `n = sorted(v.name for v in ${context} if v in V)`);
        this.line(
          indent,
          `tr.append(${py(`${keysLabel(op.ctx)} -> `)} + f"{len(n)}: " + ",".join(n))`,
        );
        return;
      }
      case "ctxHas": {
        const label = py(`${ctxHasLabel(op.ctx, op.v)} -> `);
        this.line(
          indent,
          `tr.append(${label} + ("true" if V[${op.v}] in C[${op.ctx}] else "false"))`,
        );
        return;
      }
      case "gather": {
        const names = op.bodies.map((body, i) => {
          const name = `g${op.id}_${i}`;
          const raise = op.raising?.[i] ? gatherRaiseMessage(op.id, i) : undefined;
          this.#taskFunction(name, gatherPath(task, op.id, i), body, indent, raise);
          return `${name}()`;
        });
        if (!op.settled) {
          this.line(indent, `await asyncio.gather(${names.join(", ")})`);
          return;
        }
        this.line(indent, `r = await asyncio.gather(${names.join(", ")}, return_exceptions=True)`);
        this.line(
          indent,
          `tr.append(${py(`${settledLabel(op.id)} `)} + " ".join("ok" if x is None else str(x) for x in r))`,
        );
        return;
      }
      case "group": {
        if (!op.fails) {
          this.line(indent, `async with asyncio.TaskGroup() as G[${op.id}]:`);
          this.body(op.body, indent + 1, task);
          return;
        }
        this.line(indent, "try:");
        this.line(indent + 1, `async with asyncio.TaskGroup() as G[${op.id}]:`);
        this.body(op.body, indent + 2, task);
        this.line(indent, "except BaseExceptionGroup as e:");
        const label = py(`${groupFailedLabel(op.id)} `);
        this.line(
          indent + 1,
          `tr.append(${label} + " ".join(sorted(str(x) for x in e.exceptions)))`,
        );
        return;
      }
      case "groupSpawn": {
        const name = `t${op.task}`;
        const raise = op.raise ? raiseMessage(op.task) : undefined;
        this.#taskFunction(name, spawnPath(task, op.task), op.body, indent, raise, op.hang);
        this.line(indent, `H[${op.task}] = G[${op.group}].create_task(${name}())`);
        return;
      }
      case "capture": {
        const made =
          op.from === undefined
            ? "contextvars.copy_context()"
            : op.from === "empty"
              ? "contextvars.Context()"
              : `C[${op.from}].copy()`;
        this.line(indent, `C[${op.ctx}] = ${made}`);
        return;
      }
      case "ctxSpawn": {
        const name = `t${op.task}`;
        this.#taskFunction(name, spawnPath(task, op.task), op.body, indent);
        const creator = op.group === undefined ? "asyncio" : `G[${op.group}]`;
        this.line(
          indent,
          `H[${op.task}] = ${creator}.create_task(${name}(), context=C[${op.ctx}])`,
        );
        return;
      }
      case "ctxRun":
        this.#run(`C[${op.ctx}]`, op, indent, task);
        return;
      case "ctxGet": {
        const label = py(`${ctxGetLabel(op.ctx, op.v)} -> `);
        this.line(indent, `tr.append(${label} + C[${op.ctx}].get(V[${op.v}], ${py(NONE)}))`);
        return;
      }
      case "callSoon": {
        // The future carries a failure of the body to the task that awaits it.
        const name = `cs${op.id}`;
        this.line(indent, `def ${name}():`);
        this.line(indent + 1, "try:");
        this.line(indent + 2, `tr = T[${py(callbackPath(task, op.id))}] = []`);
        this.body(op.body, indent + 2, callbackPath(task, op.id));
        this.line(indent + 1, "except BaseException as e:");
        this.line(indent + 2, `W[${op.id}].set_exception(e)`);
        this.line(indent + 1, "else:");
        this.line(indent + 2, `W[${op.id}].set_result(None)`);
        this.line(indent, `W[${op.id}] = asyncio.get_running_loop().create_future()`);
        const call = op.later ? `call_later(0, ${name})` : `call_soon(${name})`;
        this.line(indent, `asyncio.get_running_loop().${call}`);
        return;
      }
      case "callWait":
        this.line(indent, `await W[${op.id}]`);
        return;
    }
  }
}

/** The program as a Python script; `main()` fills T with the traces. */
export function renderPython(program: Program): string {
  const w = new PythonWriter();
  w.line(0, `# differential program, seed ${program.seed}`);
  w.line(0, "import asyncio, contextvars, json");
  const vars = program.vars.map((v) =>
    v.default === undefined
      ? `contextvars.ContextVar(${py(v.name)})`
      : `contextvars.ContextVar(${py(v.name)}, default=${py(v.default)})`,
  );
  w.line(0, `V = [${vars.join(", ")}]`);
  w.line(0, "class RunRaised(Exception): pass");
  w.line(
    0,
    "T, K, H, G, C, W = {}, {}, {}, {}, {}, {}  # traces by task path, tokens, task handles, groups, captured Contexts, callbacks done",
  );
  w.line(0, "async def main():");
  w.line(1, `tr = T["main"] = []`);
  w.body(program.main, 1, "main");
  w.line(0, `if __name__ == "__main__":`);
  w.line(1, "asyncio.run(main())");
  w.line(1, "print(json.dumps(T, indent=1))");
  return `${w.lines.join("\n")}\n`;
}

// Reads [source, …] as JSON; prints [{traces} | {error}, …]. Each program gets
// fresh globals (its own ContextVars, tokens, handles) and its own asyncio.run.
const RUNNER = `
import asyncio, json, sys, traceback
out = []
for source in json.load(sys.stdin):
    ns = {"__name__": "differential"}
    try:
        exec(compile(source, "<program>", "exec"), ns)
        asyncio.run(ns["main"]())
        out.append({"traces": ns["T"]})
    except BaseException:
        out.append({"error": traceback.format_exc()})
json.dump(out, sys.stdout)
`;

export type PythonResult = { readonly traces: Traces } | { readonly error: string };

/** Whether `python3` can be run here. */
export function hasPython(): boolean {
  const result = spawnSync("python3", ["-c", "import asyncio, contextvars"], { stdio: "ignore" });
  return result.status === 0;
}

/** Runs the sources in one python3 process; one result per source, in order. */
export function runPythonBatch(sources: readonly string[]): Promise<PythonResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", RUNNER], { stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", reject);
    child.on("close", (status) => {
      const out = Buffer.concat(stdout).toString("utf8");
      if (status !== 0) {
        reject(new Error(`python3 exited with ${status}:\n${Buffer.concat(stderr).toString()}`));
        return;
      }
      try {
        const parsed: unknown = JSON.parse(out);
        if (!Array.isArray(parsed) || parsed.length !== sources.length) {
          throw new Error(`python3 returned ${out.slice(0, 200)}`);
        }
        resolve(parsed as PythonResult[]);
      } catch (error) {
        reject(error);
      }
    });
    child.stdin.end(JSON.stringify(sources));
  });
}
