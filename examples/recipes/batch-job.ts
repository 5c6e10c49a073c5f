// Recipe: a command-line batch job (docs/recipes.md). Each item runs as a
// TaskGroup child with its own id and attempt number on every log line,
// retries a failed attempt, and has a deadline per attempt. Ctrl-C stops the
// batch: every item still running is cancelled, runs its finally in its own
// Context, and the process exits 130. The program presses Ctrl-C itself
// (SIGINT to its own pid) once item c has started its second attempt.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/batch-job.ts
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, run, taskGroup, timeout } from "contextvars";
import { contextMixin } from "contextvars/pino";
import pino from "pino";

const batchId = new ContextVar<string>("batchId");
const itemId = new ContextVar<string>("itemId");
const attempt = new ContextVar<number>("attempt");

// No time or pid: the output is compared.
const log = pino(
  { base: undefined, timestamp: false, mixin: contextMixin({ batchId, itemId, attempt }) },
  pino.destination({ dest: 1, sync: true }),
);

const items = ["a", "b", "c"];

// What each item's work does: a takes 10 ms; b fails at its first attempt;
// c takes a second, past the deadline of 100 ms.
async function work(id: string, signal: AbortSignal): Promise<string> {
  if (id === "c" && attempt.get() === 2) process.kill(process.pid, "SIGINT"); // the user's Ctrl-C
  await sleep(id === "a" ? 10 : id === "b" ? 30 : 1_000, undefined, { signal });
  if (id === "b" && attempt.get() === 1) throw new Error("connection reset");
  return `${id}-result`;
}

async function processItem(id: string, signal: AbortSignal, retries = 3): Promise<string> {
  itemId.set(id);
  try {
    for (let n = 1; ; n++) {
      attempt.set(n);
      try {
        // A deadline per attempt, and the batch's signal handed down.
        return await timeout(100, (deadline) => work(id, AbortSignal.any([deadline, signal])), {
          name: `${id}#${n}`,
          signal,
        });
      } catch (error) {
        if (signal.aborted || n === retries) throw error;
        log.warn({ error: (error as Error).message }, "attempt failed, retrying");
      }
    }
  } finally {
    log.info({ interrupted: signal.aborted }, "item finished");
  }
}

// Ctrl-C aborts the batch's signal. The listener is added at the top level,
// as most tools do; Node runs it in the Context of the first SIGINT listener.
const interrupt = new AbortController();
process.once("SIGINT", () => {
  log.warn("SIGINT");
  interrupt.abort(new Error("interrupted"));
});
process.on("exit", (code) => log.info({ code }, "exit"));

const results = new Map<string, string>();
const outcome = await run(async () => {
  batchId.set("batch-7");
  try {
    await taskGroup(
      async (group) => {
        group.signal.addEventListener("abort", () => log.warn("stopping the batch"));
        for (const id of items) {
          group.createTask(async (signal) => results.set(id, await processItem(id, signal)));
        }
      },
      { signal: interrupt.signal },
    );
    return "done";
  } catch (error) {
    if (interrupt.signal.aborted) return "interrupted";
    throw error;
  }
});

for (const id of items) console.log(`${id}: ${results.get(id) ?? "not finished"}`);
console.log(`batch ${outcome}`);
process.exitCode = outcome === "interrupted" ? 130 : 0;
