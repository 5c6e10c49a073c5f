/**
 * The programs of docs/recipes.md, each run as a child process as its header
 * says, and compared with what it prints, line for line: each line is a claim
 * of the recipe (a transaction kept apart, a log line with its own id, an
 * aborted fetch), so a change in behaviour shows up as a changed line. The
 * outputs docs/recipes.md shows are checked against the same lines. Claims
 * of the recipes' prose that their programs do not show (a timeout below the
 * deadline) are checked here in process.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { currentTask, type Task, timeout } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { close, listen } from "../helpers/http.ts";
import { runtime } from "../runtimes/runtime.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Runs examples/recipes/<name>.ts with node, as its header says; resolves with its stdout
 * lines once it has exited with `code` (batch-job.ts exits 130, as an interrupted tool does).
 */
async function runRecipe(name: string, code = 0): Promise<string[]> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--conditions=contextvars-source", "--import", "tsx", `examples/recipes/${name}.ts`],
    // Each recipe ends by itself in well under a second (job-queues.ts in about two, its crons
    // ticking once a second); the margin is for a loaded machine.
    { cwd: root, timeout: 30_000 },
  ).catch((error: { code?: unknown; stdout?: string; stderr?: string }) => {
    if (code !== 0 && error.code === code && error.stdout !== undefined) {
      return { stdout: error.stdout };
    }
    throw error;
  });
  return stdout.trimEnd().split("\n");
}

const onNode = { skip: runtime === "node" ? false : "the recipes' run lines are node's" };

describe("recipes", () => {
  it(
    "transaction.ts: nested calls share a transaction, concurrent ones never do, a throw leaves none, work left running finds it over",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("transaction"), TRANSACTION);
    },
  );

  it(
    "request-logger.ts: every pino line carries its own request's id and user",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("request-logger"), REQUEST_LOGGER);
    },
  );

  it(
    "deadline.ts: the deadline aborts the fetch below it and leaves the caller's values",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("deadline"), DEADLINE);
    },
  );

  it(
    "request-cache.ts: one fetch per user per request, nothing shared across requests",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("request-cache"), REQUEST_CACHE);
    },
  );

  it(
    "background-work.ts: tasks and callLater keep the request; emitter listeners need binding",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("background-work"), BACKGROUND_WORK);
    },
  );

  it(
    "job-queues.ts: a queued job runs where the queue calls it, bind(job) gives its own request; a cron keeps the Context it was started in",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("job-queues"), JOB_QUEUES);
    },
  );

  it(
    "child-process.ts: each job runs in the child in a Context seeded from its message, and its reply resumes in its own request",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("child-process"), CHILD_PROCESS);
    },
  );

  it(
    "message-consumer.ts: a plain message listener shares the Context the client was connected in; bind(handler, new Context()) gives each message its own values and trace",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("message-consumer"), MESSAGE_CONSUMER);
    },
  );

  it(
    "test-overrides.ts: set() leaks into concurrent tests, var.run and Context.run do not",
    onNode,
    async () => {
      assert.deepEqual(await runRecipe("test-overrides"), TEST_OVERRIDES);
    },
  );

  it("batch-job.ts: each item's lines carry its id and attempt; Ctrl-C cancels the item still running, its finally and the group's listener log in their own Contexts; exit code 130", {
    skip: process.platform === "win32" ? "no SIGINT to its own pid" : onNode.skip,
  }, async () => {
    assert.deepEqual(await runRecipe("batch-job", 130), BATCH_JOB);
  });

  // What "A deadline that reaches the HTTP call" says of a timeout below the
  // deadline, a client's per-call one under a request's budget: a task of its
  // own, which the budget reaches only through the signal handed on.
  it("deadline: a timeout inside the deadline ends at it only when given currentTask()'s signal", async () => {
    const arrived = new EventEmitter();
    const server = createServer(
      withContext((_req, res) => {
        arrived.emit("request", requestId.get());
        const timer = setTimeout(() => res.end("slow answer"), 5_000);
        res.on("close", () => clearTimeout(timer));
      }),
    );
    const base = await listen(server);
    const call = (id: string) =>
      fetch(base, { headers: { "x-request-id": id }, signal: currentTask()?.signal }).then((r) =>
        r.text(),
      );
    try {
      let inner: Task<string> | undefined;
      const reached = once(arrived, "request");
      await assert.rejects(
        timeout(50, () => (inner = timeout(5_000, () => call("own-signal")))),
        { code: "ERR_TASK_TIMEOUT" },
      );
      // The budget is spent, but the call below it goes on, up to its own 5 s.
      assert.deepEqual(await reached, ["own-signal"]);
      await sleep(100);
      assert.equal(inner?.done, false);
      assert.equal(inner?.signal.aborted, false);
      inner?.cancel();
      await assert.rejects(Promise.resolve(inner), { name: "AbortError" });

      let fetched: Promise<string> | undefined;
      let handedOn: Task<string> | undefined;
      const budget = timeout(50, () => {
        handedOn = timeout(5_000, () => (fetched = call("handed-on")), {
          signal: currentTask()?.signal,
        });
        return handedOn;
      });
      const spent = await budget.then(
        () => assert.fail("the budget should run out"),
        (error: unknown) => error,
      );
      assert.equal((spent as { code?: string }).code, "ERR_TASK_TIMEOUT");
      // Cancelled with the budget's reason, and its fetch aborted with it.
      assert.equal(handedOn?.cancelled, true);
      assert.equal(handedOn?.signal.reason, spent);
      await assert.rejects(Promise.resolve(fetched), (error) => error === spent);
    } finally {
      await close(server);
    }
  });

  // What "Overrides in tests" says of the runner this suite itself runs on.
  // In a child run by Node's own runner: its subtests stay out of this file's
  // report, which the runtime matrix compares across runtimes.
  it(
    "node:test calls concurrent test bodies, and their beforeEach hooks, from one Context: a set in one is read by its sibling",
    onNode,
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          "--conditions=contextvars-source",
          "--import",
          "tsx",
          "--test",
          "--test-reporter=tap",
          "test/examples/fixtures/node-test-concurrent.ts",
        ],
        // Without this runner's NODE_TEST_CONTEXT, which would make the child report to it.
        { cwd: root, timeout: 30_000, env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
      );
      assert.match(stdout, /^# pass 5$/m, stdout);
      assert.match(stdout, /^# fail 0$/m, stdout);
    },
  );

  it("docs/recipes.md shows each program and, below it, this output", () => {
    const doc = readFileSync(join(root, "docs", "recipes.md"), "utf8");
    const shown: Record<string, string[]> = {};
    for (const section of doc.split(/^## /m).slice(1)) {
      const program = /\(\.\.\/examples\/recipes\/([\w-]+)\.ts\)/.exec(section)?.[1];
      const output = /```text\n([\s\S]*?)```/.exec(section)?.[1];
      if (program !== undefined && output !== undefined) {
        shown[program] = output.trimEnd().split("\n");
      }
    }
    assert.deepEqual(shown, OUTPUTS);
  });
});

const TRANSACTION = [
  "  tx1: opened alice with 100",
  "  tx1: opened bob with 50",
  "  tx1: opened carol with 0",
  "  tx1: opened dave with 0",
  "committed: alice=100 bob=50 carol=0 dave=0",
  "two transfers at once, each in its own transaction:",
  "  tx2: alice 100 → 70",
  "  tx3: bob 50 → 30",
  "  tx2: carol 0 → 30",
  "  tx3: dave 0 → 20",
  "committed: alice=70 bob=30 carol=30 dave=20",
  "a nested withTransaction is a savepoint of the outer one:",
  "  tx4: alice 70 → 60",
  "  tx4.sp1: alice 60 → 35",
  "  the savepoint rolled back (no account zoe); the outer goes on",
  "  tx4: carol 30 → 40",
  "committed: alice=60 bob=30 carol=40 dave=20",
  "a throw rolls the whole transaction back:",
  "  tx5: carol 40 → 0",
  "  failed: payment provider down",
  "committed: alice=60 bob=30 carol=40 dave=20",
  "transaction left behind: none",
  "a query outside any transaction: db() called outside withTransaction()",
  "work a transaction starts and leaves running finds it over:",
  "  tx6: dave 20 → 15",
  "  a bare query: db() called after tx6 was committed",
  "  tx7: bob 30 → 35",
  "committed: alice=60 bob=35 carol=40 dave=15",
];

const REQUEST_LOGGER = [
  'reply req-1 ["tea","cake"]',
  'reply req-2 ["coffee"]',
  '{"level":30,"user":"anonymous","msg":"starting"}',
  '{"level":30,"requestId":"req-1","user":"alice","msg":"listing orders"}',
  '{"level":30,"module":"orders-repository","requestId":"req-1","user":"alice","rows":2,"msg":"query done"}',
  '{"level":30,"requestId":"req-1","user":"alice","msg":"replying"}',
  '{"level":30,"requestId":"req-2","user":"bob","msg":"listing orders"}',
  '{"level":30,"module":"orders-repository","requestId":"req-2","user":"bob","rows":1,"msg":"query done"}',
  '{"level":30,"requestId":"req-2","user":"bob","msg":"replying"}',
];

const DEADLINE = [
  "fast answer",
  'TimeoutError: Task("load-slow") timed out after 100 ms',
  "the server saw trace-7-slow abort",
  "after the timeout, traceId is still trace-7",
];

const REQUEST_CACHE = [
  '{"viewer":"admin","profiles":[{"id":"u1","name":"Ada","email":"ada@example.com"},{"id":"u2","name":"Grace","email":"grace@example.com"},{"id":"u1","name":"Ada","email":"ada@example.com"}]}',
  '{"viewer":"guest","profiles":[{"id":"u1","name":"Ada"},{"id":"u2","name":"Grace"},{"id":"u1","name":"Ada"}]}',
  "backend calls (3 loads per request, u1 twice): req-1 u1, req-1 u2, req-2 u1, req-2 u2",
  "first load of u3 failed (backend unavailable); the second asked again and got Lin",
];

const BACKGROUND_WORK = [
  "[order-1] 202 sent",
  "[-] plain job listener: thumbnail done",
  "[order-1] bound job listener: thumbnail done",
  "[-] queue listener: thumbnail done",
  "[order-1] bound queue listener: thumbnail done",
  "[order-1] task: receipt emailed",
  "[order-1] callLater: follow-up reminder scheduled",
  "client got 202; the work of order-1 went on after it",
  "[order-2] 202 sent",
  "[-] plain job listener: thumbnail done",
  "[order-2] bound job listener: thumbnail done",
  "[-] queue listener: thumbnail done",
  "[order-2] bound queue listener: thumbnail done",
  "[order-2] task: receipt emailed",
  "[order-2] callLater: follow-up reminder scheduled",
  "client got 202; the work of order-2 went on after it",
];

const JOB_QUEUES = [
  "p-limit, a plain job:",
  "  the job of order-1 sees requestId order-1, note none",
  "  then order-1 itself reads note set by the job of order-1",
  "  the job of order-2 sees requestId order-2, note none",
  "  then order-2 itself reads note set by the job of order-2",
  "  the job of order-3 sees requestId order-3, note none",
  "  then order-3 itself reads note set by the job of order-3",
  "fastq, a plain job:",
  "  the job of order-4 sees requestId order-4, note none",
  "  the job of order-5 sees requestId order-4, note set by the job of order-4",
  "  the job of order-6 sees requestId order-4, note set by the job of order-5",
  "fastq, bind(job) at the add:",
  "  the job of order-7 sees requestId order-7, note none",
  "  the job of order-8 sees requestId order-8, note none",
  "  the job of order-9 sees requestId order-9, note none",
  "cron started in a request, plain:",
  "  a tick sees requestId order-10, note none",
  "  a tick sees requestId order-10, note set by a tick of plain",
  "cron started in a request, bind(tick, new Context()):",
  "  a tick sees requestId -, note none",
  "  a tick sees requestId -, note none",
  "cron started at the top level:",
  "  a tick sees requestId -, note none",
  "  a tick sees requestId -, note set by a tick of top level",
  "a request after the ticks reads note set by a tick of top level",
];

const CHILD_PROCESS = [
  "three requests at once share one child:",
  "  espresso for alice in order-1 (the job started with requestId -, user anonymous); back in order-1, priceList eu-alice",
  "  tea for bob in order-2 (the job started with requestId -, user anonymous); back in order-2, priceList eu-bob",
  "  cake for carol in order-3 (the job started with requestId -, user anonymous); back in order-3, priceList eu-carol",
  "the parent's message listener ran in requestId -",
  "a child whose handler sets the vars plainly:",
  "  the job of order-4 started with requestId -, user anonymous",
  "  the job of order-5 started with requestId order-4, user dave",
  "a process per job, the values in its environment:",
  "  the child printed order-6 frank; its callback ran in order-6",
];

const MESSAGE_CONSUMER = [
  "a plain message listener:",
  "  order-1 started with requestId -, user -; acked as order-3, carol",
  "  order-2 started with requestId order-1, user alice; acked as order-3, carol",
  "  order-3 started with requestId order-2, user bob; acked as order-3, carol",
  "  spans that are children of their own producer's span: 1 of 3",
  "the program's top level now reads requestId order-3, user carol",
  "bind(handler, new Context()), order-6 failing, then order-7:",
  "  order-4 started with requestId -, user -; acked as order-4, dave",
  "  order-5 started with requestId -, user -; acked as order-5, erin",
  "  order-6 started with requestId -, user -; failed as order-6, frank",
  "  order-7 started with requestId -, user -; acked as order-7, grace",
  "  spans that are children of their own producer's span: 4 of 4",
  "log lines:",
  '  {"level":30,"requestId":"order-3","user":"carol","order":"order-1","msg":"acked"}',
  '  {"level":30,"requestId":"order-3","user":"carol","order":"order-2","msg":"acked"}',
  '  {"level":30,"requestId":"order-3","user":"carol","order":"order-3","msg":"acked"}',
  '  {"level":30,"requestId":"order-4","user":"dave","order":"order-4","msg":"acked"}',
  '  {"level":30,"requestId":"order-5","user":"erin","order":"order-5","msg":"acked"}',
  '  {"level":50,"requestId":"order-6","user":"frank","order":"order-6","err":"out of stock","msg":"failed"}',
  '  {"level":30,"requestId":"order-7","user":"grace","order":"order-7","msg":"acked"}',
];

const TEST_OVERRIDES = [
  "set() in a test body:",
  "  ok - new checkout is on: new checkout for anonymous, 100 EUR",
  "  not ok - the default is the old checkout: new checkout for anonymous, 100 EUR",
  "var.run and Context.run:",
  "  ok - new checkout is on: new checkout for anonymous, 100 EUR",
  "  ok - the default is the old checkout: old checkout for anonymous, 100 EUR",
  "  ok - a premium user gets 20% off: old checkout for ada, 80 EUR",
  "  ok - a premium user on the new checkout: new checkout for ada, 80 EUR",
  "after the tests: old checkout for anonymous, 100 EUR",
];

const BATCH_JOB = [
  '{"level":30,"batchId":"batch-7","itemId":"a","attempt":1,"interrupted":false,"msg":"item finished"}',
  '{"level":40,"batchId":"batch-7","itemId":"b","attempt":1,"error":"connection reset","msg":"attempt failed, retrying"}',
  '{"level":30,"batchId":"batch-7","itemId":"b","attempt":2,"interrupted":false,"msg":"item finished"}',
  '{"level":40,"batchId":"batch-7","itemId":"c","attempt":1,"error":"Task(\\"c#1\\") timed out after 100 ms","msg":"attempt failed, retrying"}',
  '{"level":40,"msg":"SIGINT"}',
  '{"level":40,"batchId":"batch-7","msg":"stopping the batch"}',
  '{"level":30,"batchId":"batch-7","itemId":"c","attempt":2,"interrupted":true,"msg":"item finished"}',
  "a: a-result",
  "b: b-result",
  "c: not finished",
  "batch interrupted",
  '{"level":30,"code":130,"msg":"exit"}',
];

const OUTPUTS: Record<string, readonly string[]> = {
  transaction: TRANSACTION,
  "request-logger": REQUEST_LOGGER,
  deadline: DEADLINE,
  "request-cache": REQUEST_CACHE,
  "background-work": BACKGROUND_WORK,
  "job-queues": JOB_QUEUES,
  "child-process": CHILD_PROCESS,
  "message-consumer": MESSAGE_CONSUMER,
  "test-overrides": TEST_OVERRIDES,
  "batch-job": BATCH_JOB,
};
