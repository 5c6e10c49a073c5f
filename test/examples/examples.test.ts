/**
 * The README's first example, and the examples the README and docs point
 * to, run as their headers say and checked for what they claim: every log
 * line and reply carries its own request's values. examples/seed.ts is
 * checked in test/tasks/seed.test.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { UUID } from "../helpers/http.ts";
import { runtime } from "../runtimes/runtime.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Runs a TypeScript file (a path from the project root, or absolute) with node,
 * as the examples' headers say; resolves with its stdout lines.
 */
async function runTs(file: string, ...imports: string[]): Promise<string[]> {
  const args = ["--conditions=contextvars-source", "--import", "tsx"];
  for (const extra of imports) args.push("--import", extra);
  const { stdout } = await promisify(execFile)(process.execPath, [...args, file], {
    cwd: root,
    timeout: 60_000,
  });
  return stdout.trim().split("\n");
}

const onNode = { skip: runtime === "node" ? false : "the examples' run lines are node's" };

describe("examples", () => {
  it("README.md's first example, as written, prints alice then bob", onNode, async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const code = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(code, "README.md has a ts block");
    // The one change: "contextvars" is this checkout's source, not an installed package.
    const index = pathToFileURL(join(root, "src", "index.ts")).href;
    const dir = mkdtempSync(join(tmpdir(), "contextvars-readme-"));
    try {
      const file = join(dir, "first.mts");
      writeFileSync(file, code.replaceAll('from "contextvars"', `from "${index}"`));
      assert.deepEqual(await runTs(file), ["alice", "bob"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    "server.ts: each request's log lines and reply carry its own id and user",
    onNode,
    async () => {
      const lines = await runTs("examples/server.ts");
      const logs = lines.filter((l) => l.startsWith("["));
      const replies = lines.filter((l) => /^\d{3} /.test(l));
      assert.equal(replies.length, 3, lines.join("\n"));
      const users = new Map([
        ["req-alice", "alice"],
        ["req-bob", "bob"],
      ]);
      for (const [id, who] of users) {
        const reply = replies.find((r) => r.startsWith(`201 ${id} `));
        assert.ok(reply, `a 201 for ${id}`);
        const body = JSON.parse(reply.slice(`201 ${id} `.length)) as Record<string, unknown>;
        assert.equal(body.owner, who);
        assert.equal(body.requestedBy, id);
      }
      // The malformed id ("bad id\twith a tab") was replaced by a fresh UUID, echoed and logged.
      const refused = replies.find((r) => r.startsWith("402 "));
      assert.ok(refused);
      const [, fresh, ...rest] = refused.split(" ");
      assert.match(fresh as string, UUID);
      assert.equal((JSON.parse(rest.join(" ")) as { requestId: string }).requestId, fresh);
      users.set(fresh as string, "anonymous");
      // Three lines per request (auth, create, then insert or the error handler's), each its own.
      const perId = new Map<string, number>();
      for (const line of logs) {
        const [, id, who] = /^\[(\S+) (\S+)\]/.exec(line) ?? [];
        assert.equal(users.get(id as string), who, line);
        perId.set(id as string, (perId.get(id as string) ?? 0) + 1);
      }
      assert.deepEqual(
        [...perId].sort(),
        [...users.keys()].map((id) => [id, 3]).sort(),
        lines.join("\n"),
      );
    },
  );

  it(
    "two-services.ts: both services log the same request id, user and trace per request",
    onNode,
    async () => {
      const lines = await runTs("examples/two-services.ts");
      const traceOf = new Map<string, string | undefined>();
      const logs = lines
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, string>);
      for (const [id, who] of [
        ["req-alice", "alice"],
        ["req-bob", "bob"],
      ] as const) {
        const mine = logs.filter((l) => l.requestId === id);
        traceOf.set(id, mine[0]?.traceId);
        assert.deepEqual(new Set(mine.map((l) => l.service)), new Set(["A", "B"]), id);
        assert.deepEqual(new Set(mine.map((l) => l.user)), new Set([who]), id);
        const traces = new Set(mine.map((l) => l.traceId));
        assert.equal(traces.size, 1, `${id}: one trace`);
        assert.match([...traces][0] as string, /^[0-9a-f]{32}$/);
        assert.ok(
          lines.some((l) => l.startsWith(`${id}: A and B agree`)),
          id,
        );
      }
      assert.notEqual(traceOf.get("req-alice"), traceOf.get("req-bob"), "one trace per checkout");
    },
  );

  it("tour.ts (npm run demo, after the seed) prints what it says", onNode, async () => {
    assert.deepEqual(await runTs("examples/tour.ts"), TOUR);
  });

  it(
    "socket-io-chat.ts: every message is stored and logged with its own sender's id and user",
    onNode,
    async () => {
      assert.deepEqual(await runTs("examples/socket-io-chat.ts"), SOCKET_IO_CHAT);
    },
  );

  it(
    "worker-pool.ts: each job logs, from its worker thread, the id of the request that sent it",
    onNode,
    async () => {
      const lines = await runTs("examples/worker-pool.ts", "./test/helpers/tsx-in-workers.mjs");
      const asked = new Map([
        ["req-1", "200000"],
        ["req-2", "50000"],
        ["req-3", "120000"],
        ["req-4", "10000"],
      ]);
      for (const [id, n] of asked) {
        const counting = lines.filter((l) => l.includes(`counting primes below ${n}`));
        assert.equal(counting.length, 1, `${id}: ${lines.join("\n")}`);
        const [, loggedId, thread] =
          /^\[(\S+)\] \(thread (\d+)\)/.exec(counting[0] as string) ?? [];
        assert.equal(loggedId, id);
        assert.notEqual(thread, "0", `${id} ran on a worker thread`);
      }
      assert.ok(lines.includes("[req-1] (thread 0) request out: 17984 primes"), lines.join("\n"));
      assert.ok(lines.includes("[req-4] (thread 0) toThread gave 1229"), lines.join("\n"));
    },
  );
});

// What examples/tour.ts prints, line for line: each line is a claim about the
// package (a value kept, a copy taken, a cancellation seen), so a change in
// behaviour shows up as a changed line.
const TOUR = [
  "examples/tour.ts: a short tour of the package, one section per feature",
  "",
  "— 1. var.run: a value for one call and everything it starts",
  "after an await, requestId is still req-1",
  "outside the run it is the default: -",
  "",
  "— 2. Promise.all of eager async functions shares ONE Context (the bug) …",
  "Promise.all([worker(a), worker(b)]) → [ 'bob', 'bob' ]",
  "and the workers overwrote the caller's own value: user is now bob",
  "",
  "— … gather and isolated give each its own copy",
  "gather(() => worker(a), () => worker(b)) → [ 'alice', 'bob' ]",
  "Promise.all of isolated(worker) → [ 'alice', 'bob' ]",
  "",
  "— 3. Tokens: undo a set, or let `using` undo it at scope exit",
  "set then reset(token): user is back to bob",
  "inside the block user is carol",
  "after the block user is back to bob",
  "",
  "— 4. Contexts are values: copy in O(1), run later, read like a Map",
  "snapshot still says bob; now it is dave",
  "inside snapshot.run, user is bob",
  "a fresh Context after a run: size=1, requestId=req-2",
  "",
  "— 5. Tasks: named, cancellable, each in its own copy",
  'Task("slow-job") was cancelled: no longer needed',
  "its set stayed inside: user is still dave",
  "currentTask() inside a task → who-am-i",
  "",
  "— 6. TaskGroup: the first failure cancels the rest",
  "  the slow child saw the abort and stopped",
  'TaskGroup("fetches") failed: 1 unhandled error: backend down',
  "",
  "— 7. timeout and scheduled callbacks",
  'TimeoutError: Task("too-slow") timed out after 20 ms',
  "callLater ran with the value at scheduling time: req-3",
  "",
  "— 8. Callbacks and emitters that remember their Context",
  "bound callback sees req-4",
  "listener bound in req-4 sees req-4",
];

// What examples/socket-io-chat.ts prints (sorted): three clients over websocket,
// polling, and polling upgraded to websocket, each line with its own sender's
// request id and user, the bound acknowledgement callback's included.
const SOCKET_IO_CHAT = [
  "[req-alice alice] connected over websocket",
  "[req-alice alice] disconnected: client namespace disconnect",
  '[req-alice alice] stored in #general: "hello from alice"',
  '[req-alice alice] stored in #tea: "hello from alice"',
  "[req-alice alice] welcome acknowledged: hi, I am alice",
  "[req-bob bob] connected over polling",
  "[req-bob bob] disconnected: client namespace disconnect",
  '[req-bob bob] stored in #general: "hello from bob"',
  '[req-bob bob] stored in #random: "hello from bob"',
  "[req-bob bob] welcome acknowledged: hi, I am bob",
  "[req-carol carol] connected over polling",
  "[req-carol carol] disconnected: client namespace disconnect",
  '[req-carol carol] stored in #random: "hello from carol"',
  '[req-carol carol] stored in #tea: "hello from carol"',
  "[req-carol carol] welcome acknowledged: hi, I am carol",
];
