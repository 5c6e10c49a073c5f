/**
 * A batch command-line tool interrupted with Ctrl-C, and what Node decides
 * about the callbacks such a tool relies on (pinned, Node 20).
 *
 * The SIGINT case runs a real child process (fixtures/batch-job.ts): items as
 * TaskGroup children under run(), each with a contextPool job that never ends
 * by itself, pino lines with contextMixin. The test sends the signal itself
 * once every job has started, and checks that the interruption reached every
 * task and every job, that each item's finally ran in its own Context, and
 * the exit code. docs/recipes.md, "Command-line tools and batch jobs".
 *
 * Also in child processes, as signals, process.exit() and a piped stdin need
 * a process of their own: where exit and signal listeners run, and where
 * lines read from process.stdin reach a readline listener. In this process:
 * commander's hooks, readline over a stream, AbortSignal.timeout and any.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { createInterface as createPromises } from "node:readline/promises";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { bind, ContextVar, isolated, run } from "contextvars";
import { runtime } from "../runtimes/runtime.ts";

// Children start here, where "tsx" and "contextvars" resolve.
const root = fileURLToPath(new URL("../..", import.meta.url));
const fixture = fileURLToPath(new URL("./fixtures/batch-job.ts", import.meta.url));
const lineTool = fileURLToPath(new URL("./fixtures/line-tool.ts", import.meta.url));

interface Line {
  event: string;
  batchId?: string;
  itemId?: string;
  attempt?: number;
  sees?: string;
  aborted?: boolean;
  code?: number;
  reason?: string;
}

/**
 * Runs the fixture, sends SIGINT once each item's job is hanging and the
 * progress timer has ticked; resolves with its lines and exit code.
 */
async function interruptBatch(): Promise<{ lines: Line[]; code: number | null }> {
  const child = spawn(
    process.execPath,
    ["--conditions=contextvars-source", "--import", "tsx", fixture],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
  );
  // Bounded: a child that never gets as far as its jobs, or never exits, is killed.
  const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const lines: Line[] = [];
  let hanging = 0;
  let ticked = false;
  let sent = false;
  createInterface({ input: child.stdout }).on("line", (text) => {
    const line = JSON.parse(text) as Line;
    lines.push(line);
    if (line.event === "job hang") hanging++;
    // After a tick too: interrupted sooner, the timer's check below would see no line.
    if (line.event === "progress") ticked = true;
    if (hanging === 3 && ticked && !sent) {
      sent = true;
      child.kill("SIGINT");
    }
  });
  try {
    const [code] = (await once(child, "exit")) as [number | null];
    // The last lines may still be in the pipe when "exit" comes.
    if (!child.stdout.readableEnded) await once(child.stdout, "end");
    return { lines, code };
  } finally {
    clearTimeout(guard);
  }
}

const onNode = { skip: runtime === "node" ? false : "signals and the pinned answers are Node's" };

describe("a batch tool interrupted by SIGINT", onNode, () => {
  it("cancels every item and its pool job, runs each finally in its item's Context, exits 130", async () => {
    const { lines, code } = await interruptBatch();
    const events = (event: string) => lines.filter((line) => line.event === event);

    // Each job logged, from its worker thread, its own item's values.
    const jobs = events("job hang").map((line) => `${line.batchId}/${line.itemId}#${line.attempt}`);
    assert.deepEqual(jobs.sort(), ["batch-1/a#1", "batch-1/b#1", "batch-1/c#1"]);

    // Both SIGINT listeners ran in the batch's Context: the second was added
    // from another one, but Node runs a signal's listeners where the first was.
    assert.deepEqual(
      [...events("SIGINT"), ...events("SIGINT, second listener")].map((line) => line.sees),
      ["batch-1/-", "batch-1/-"],
    );

    // The interruption reached every task and job; each finally ran in its
    // own item's Context, after an await.
    const finals = events("finally").map((line) => `${line.sees} aborted=${line.aborted}`);
    assert.deepEqual(finals.sort(), [
      "batch-1/a aborted=true",
      "batch-1/b aborted=true",
      "batch-1/c aborted=true",
    ]);
    assert.deepEqual(events("batch failed")[0]?.reason, "interrupted");

    // The progress timer, started in the batch, saw it on every tick.
    assert.ok(events("progress").length > 0, "the progress timer ticked");
    assert.ok(events("progress").every((line) => line.sees === "batch-1/-"));

    // After run(): the root Context, and the exit code the tool chose.
    assert.deepEqual(events("done"), [{ level: 30, event: "done", code: 130, sees: "-/-" }]);
    assert.deepEqual(
      [...events("beforeExit"), ...events("exit")].map((line) => line.sees),
      ["-/-", "-/-"],
    );
    assert.equal(code, 130);
  });
});

describe("exit and signal listeners (pinned, Node 20)", onNode, () => {
  it("exit runs in the Context that called process.exit(); a signal's listeners, where one was added while it had none", async () => {
    const script = `
      import { ContextVar, createTask } from "contextvars";
      const v = new ContextVar("v", { default: "root" });
      process.on("exit", (code) => console.log("exit " + code + " sees " + v.get()));
      const first = () => {};
      let delivered;
      const handled = new Promise((resolve) => (delivered = resolve));
      v.run("first", () => process.on("SIGINT", first));
      v.run("second", () =>
        process.on("SIGINT", () => {
          console.log("SIGINT sees " + v.get());
          delivered();
        }),
      );
      process.kill(process.pid, "SIGINT");
      // Until it is handled (a fixed wait could end first on a loaded machine);
      // a signal listener does not keep the process alive, a timer does.
      const alive = setTimeout(() => {}, 10_000);
      await handled;
      clearTimeout(alive);
      // With no listener left, Node stops listening; the next one added starts it again.
      process.removeAllListeners("SIGINT");
      v.run("third", () =>
        process.once("SIGINT", () => {
          console.log("SIGINT sees " + v.get());
          createTask(() => {
            v.set("the task that exits");
            process.exit(3);
          });
        }),
      );
      process.kill(process.pid, "SIGINT");
      setTimeout(() => {}, 10_000);
    `;
    const child = spawn(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module", "-e", script],
      {
        cwd: root,
        stdio: ["ignore", "pipe", "inherit"],
        timeout: 30_000,
      },
    );
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on("line", (line) => lines.push(line));
    const [code] = await once(child, "exit");
    if (!child.stdout.readableEnded) await once(child.stdout, "end");
    assert.deepEqual(lines, [
      "SIGINT sees first",
      "SIGINT sees third",
      "exit 3 sees the task that exits",
    ]);
    assert.equal(code, 3);
  });
});

describe("a tool reading lines from a pipe (pinned, Node 20)", onNode, () => {
  it("process.stdin's lines reach a listener in the Context where stdin was first touched, whose sets change it; bind(listener) gives each line its own copy", async () => {
    const child = spawn(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", lineTool],
      { cwd: root, stdio: ["pipe", "pipe", "inherit"], timeout: 30_000 },
    );
    child.stdin.end("one\ntwo\nthree\n");
    const lines: { via: string; line?: string; sees: string }[] = [];
    createInterface({ input: child.stdout }).on("line", (text) => lines.push(JSON.parse(text)));
    const [code] = await once(child, "exit");
    if (!child.stdout.readableEnded) await once(child.stdout, "end");
    assert.equal(code, 0);
    assert.deepEqual(
      lines.map(
        (line) => `${line.via}${line.line === undefined ? "" : ` ${line.line}`}: ${line.sees}`,
      ),
      [
        // The root Context (stdin was made at the top level); each line's
        // set lands there and is seen by the next line and after run().
        "plain listener one: -/-",
        "bound listener one: s-1/-",
        "plain listener two: -/one",
        "bound listener two: s-1/-",
        "plain listener three: -/two",
        "bound listener three: s-1/-",
        "root, after run: -/three",
      ],
    );
  });
});

describe("commander", () => {
  it("a preAction hook's sets reach the action and postAction; under run() they stay out of the caller", async () => {
    const verbose = new ContextVar<boolean>("verbose", { default: false });
    const command = new ContextVar<string>("command", { default: "-" });
    const seen: string[] = [];
    const program = new Command()
      .exitOverride()
      .option("-v, --verbose")
      .hook("preAction", async (self, action) => {
        await sleep(1);
        verbose.set(self.opts().verbose === true);
        command.set(action.name());
      })
      .hook("postAction", () => {
        seen.push(`postAction: ${verbose.get()} ${command.get()}`);
      });
    program.command("sync").action(async () => {
      await sleep(1);
      seen.push(`action: ${verbose.get()} ${command.get()}`);
    });
    await run(() => program.parseAsync(["-v", "sync"], { from: "user" }));
    assert.deepEqual(seen, ["action: true sync", "postAction: true sync"]);
    assert.equal(verbose.get(), false);
    assert.equal(command.get(), "-");
  });
});

describe("callbacks a command-line tool relies on (pinned, Node 20)", onNode, () => {
  const who = new ContextVar<string>("who", { default: "root" });

  it("readline's line listener runs where its input emits data, and its sets stay there for the next line", async () => {
    const input = new PassThrough();
    // Neither where the interface is made nor where the listener is added
    // counts: process.stdin emits from its I/O callbacks, in the Context
    // where it began reading; this stream, in its writer's.
    const rl = who.run("startup", () => createInterface({ input }));
    const seen: string[] = [];
    who.run("the tool", () =>
      rl.on("line", (line) => {
        seen.push(`${line}: ${who.get()}`);
        who.set(`set by ${line}`);
      }),
    );
    who.run("the writer", () => input.end("one\ntwo\n"));
    await once(rl, "close");
    assert.deepEqual(seen, ["one: the writer", "two: set by one"]);
  });

  it("rl.question's callback runs where the input emits; awaiting readline/promises' question resumes in the asker's Context", async () => {
    const input = new PassThrough();
    const rl = createInterface({ input });
    const seen: string[] = [];
    const asked = who.run(
      "the asker",
      () =>
        new Promise<void>((resolve) =>
          rl.question("name? ", (answer) => {
            seen.push(`callback ${answer}: ${who.get()}`);
            resolve();
          }),
        ),
    );
    who.run("the writer", () => input.write("ada\n"));
    await asked;
    rl.close();

    const input2 = new PassThrough();
    const rl2 = createPromises({ input: input2 });
    const answered = who.run("the asker", async () => {
      const answer = await rl2.question("name? ");
      seen.push(`await ${answer}: ${who.get()}`);
    });
    who.run("the writer", () => input2.write("bob\n"));
    await answered;
    rl2.close();
    assert.deepEqual(seen, ["callback ada: the writer", "await bob: the asker"]);
  });

  it("bind(listener) gives each line a fresh copy of the Context of the bind", async () => {
    const input = new PassThrough();
    const rl = who.run("startup", () => createInterface({ input }));
    const seen: string[] = [];
    who.run("the tool", () =>
      rl.on(
        "line",
        bind((line: string) => {
          seen.push(`${line}: ${who.get()}`);
          who.set(`set by ${line}`);
        }),
      ),
    );
    who.run("the writer", () => input.end("one\ntwo\n"));
    await once(rl, "close");
    assert.deepEqual(seen, ["one: the tool", "two: the tool"]);
  });

  it("for await over lines runs in the loop's Context: a set for one line is seen by the next, unless each is isolated", async () => {
    const lines = (text: string) => createInterface({ input: toStream(text) });
    const plain: string[] = [];
    await who.run("the tool", async () => {
      for await (const line of lines("one\ntwo\n")) {
        plain.push(`${line}: ${who.get()}`);
        who.set(`set by ${line}`);
      }
    });
    assert.deepEqual(plain, ["one: the tool", "two: set by one"]);

    const kept: string[] = [];
    const handle = isolated(async (line: string) => {
      kept.push(`${line}: ${who.get()}`);
      who.set(`set by ${line}`);
      await sleep(1);
    });
    await who.run("the tool", async () => {
      for await (const line of lines("one\ntwo\n")) await handle(line);
    });
    assert.deepEqual(kept, ["one: the tool", "two: the tool"]);
  });

  it("AbortSignal.timeout's listeners run where the signal was made; AbortSignal.any's, where its source was", async () => {
    const deadline = who.run("made the deadline", () => AbortSignal.timeout(5));
    const combined = AbortSignal.any([who.run("made the source", () => AbortSignal.timeout(5))]);
    const seen: string[] = [];
    who.run("added the listener", () => {
      deadline.addEventListener("abort", () => seen.push(`timeout: ${who.get()}`));
      combined.addEventListener("abort", () => seen.push(`any: ${who.get()}`));
    });
    await sleep(50);
    assert.deepEqual(seen.sort(), ["any: made the source", "timeout: made the deadline"]);
  });
});

function toStream(text: string): PassThrough {
  const stream = new PassThrough();
  stream.end(text);
  return stream;
}
