/**
 * MCP servers made with `@modelcontextprotocol/sdk` (McpServer), reached by
 * the SDK's own Client over Streamable HTTP on 127.0.0.1, behind Express's
 * `contextMiddleware` and under node:http's `withContext`, stateless (a
 * server and transport per POST) and stateful (transports kept by
 * `mcp-session-id`). Stdio and the in-memory transport are in
 * mcp-stdio.test.ts. What docs/integrations.md ("MCP servers") says:
 *
 * - The SDK calls a handler (tool, resource, prompt) from the transport's
 *   `onmessage`, in a promise chain started there: over HTTP that is inside
 *   `transport.handleRequest`, so the handler runs in the Context of the POST
 *   that carried the message, through its awaits. In a stateful session that
 *   is each later POST's own Context, not the initialize POST's: a var set in
 *   `onsessioninitialized` is seen by no later call.
 * - `extra.signal` aborts when the client cancels (its AbortSignal, its
 *   timeout): a task given it is cancelled and its work stops. The abort
 *   comes from the POST carrying `notifications/cancelled`, so listeners on
 *   `extra.signal` run in that POST's Context; the task's own listeners run
 *   in the call's. Stateless, the cancellation reaches a new server that
 *   knows no such call: the work goes on until the client closes.
 * - Code after `await server.server.createMessage()`, `elicitInput()` or
 *   `extra.sendNotification()` still reads the call's values; so do pino's
 *   `contextMixin` lines.
 * - JSON-RPC calls batched in one POST share its one Context.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { Context, ContextVar, createTask, isolated, type Task, timeout } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { requestId, withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import express from "express";
import * as z from "zod/v4";
import { close, listen } from "../helpers/http.ts";
import { pinoToMemory } from "../helpers/logging.ts";
import { textOf } from "../helpers/mcp.ts";

const user = new ContextVar<string>("user");
const session = new ContextVar<string>("session");
const setAtInit = new ContextVar<string>("setAtInit");
const step = new ContextVar<string>("step");

const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });

/** What a handler reads: the POST's id and user. */
function seen(): string {
  return `${requestId.get("-")}|${user.get("-")}`;
}

/**
 * One call's work: where the listeners on the signal it was given
 * (`extra.signal`, or a deadline's) and on its task's own signal ran, and how
 * its loop ended.
 */
interface Work {
  task: Task<void>;
  onSignal: string[];
  onTaskSignal: string[];
  steps: number;
  ended: Promise<string>;
}

const works = new Map<number, Work>();

/** Loops on 5 ms sleeps until its signal aborts (at most 400 steps): the call's work. */
function startWork(n: number, signal: AbortSignal): Work {
  let ended!: (how: string) => void;
  const work = {
    onSignal: [],
    onTaskSignal: [],
    steps: 0,
    ended: new Promise<string>((resolve) => {
      ended = resolve;
    }),
  } as unknown as Work;
  signal.addEventListener("abort", () => work.onSignal.push(seen()));
  work.task = createTask(
    async (taskSignal) => {
      taskSignal.addEventListener("abort", () => work.onTaskSignal.push(seen()));
      try {
        for (; work.steps < 400; work.steps++) await sleep(5, undefined, { signal: taskSignal });
        ended("ran 400 steps");
      } catch (error) {
        ended((error as Error).name);
        throw error;
      }
    },
    { signal, name: `work-${n}` },
  );
  works.set(n, work);
  return work;
}

/** Waits in 5 ms steps, at most 400, until `done()`: for what the server does out of the client's sight. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; !done(); i++) {
    if (i === 400) assert.fail(`still waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Calls the `work` tool as work `n` with an AbortSignal, waits until the
 * work has taken two steps, aborts, and checks the call rejects with the reason.
 */
async function callThenAbort(client: Client, n: number): Promise<void> {
  const controller = new AbortController();
  const call = client.callTool({ name: "work", arguments: { n } }, undefined, {
    signal: controller.signal,
  });
  await until(() => (works.get(n)?.steps ?? 0) >= 2, `work ${n} to start`);
  controller.abort(new Error("gave up"));
  await assert.rejects(call, /gave up/);
}

const announced: string[] = [];

function makeServer(): McpServer {
  const server = new McpServer(
    { name: "mcp-test", version: "1.0.0" },
    { capabilities: { logging: {} } },
  );
  server.registerTool(
    "whoami",
    { inputSchema: { delay: z.number() } },
    async ({ delay }, extra) => {
      const before = seen();
      await sleep(delay);
      const reads = {
        before,
        after: seen(),
        session: session.get("-"),
        sessionId: extra.sessionId ?? "-",
        setAtInit: setAtInit.get("-"),
      };
      return { content: [{ type: "text", text: JSON.stringify(reads) }] };
    },
  );
  server.registerResource("me", "ctx://me", {}, async (uri) => {
    await sleep(1);
    return { contents: [{ uri: uri.href, text: seen() }] };
  });
  server.registerPrompt("greet", {}, async () => {
    await sleep(1);
    return { messages: [{ role: "user", content: { type: "text", text: seen() } }] };
  });
  server.registerTool("ask", { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
    logger.info({ n }, "asking");
    // Sent on the call's own response stream: without relatedRequestId a
    // request goes to the session's GET stream, and is dropped if the client
    // has not opened that yet (the call then waits out its timeout).
    const onCallStream = { relatedRequestId: extra.requestId };
    const answer = await server.server.createMessage(
      {
        messages: [{ role: "user", content: { type: "text", text: `q${n}` } }],
        maxTokens: 10,
      },
      onCallStream,
    );
    const afterSampling = seen();
    logger.info({ n }, "sampled");
    await server.server.elicitInput(
      {
        message: `e${n}`,
        requestedSchema: { type: "object", properties: { ok: { type: "boolean" } } },
      },
      onCallStream,
    );
    const afterElicitation = seen();
    const progressToken = extra._meta?.progressToken ?? "none";
    await extra.sendNotification({
      method: "notifications/progress",
      params: { progressToken, progress: 1, total: 1 },
    });
    const afterProgress = seen();
    logger.info({ n }, "done");
    const reads = { afterSampling, afterElicitation, afterProgress, answer: answer.content };
    return { content: [{ type: "text", text: JSON.stringify(reads) }] };
  });
  server.registerTool("work", { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
    await startWork(n, extra.signal).task;
    return { content: [] };
  });
  server.registerTool("deadline", { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
    // The deadline's signal, passed down, ends the work; the client's cancel ends both.
    await timeout(30, (signal) => startWork(n, signal).task, {
      signal: extra.signal,
      name: `deadline-${n}`,
    });
    return { content: [] };
  });
  server.registerTool("announce", {}, async () => {
    // A timer set in the call: it runs after the POST has been answered.
    setTimeout(() => {
      announced.push(seen());
      void server.sendLoggingMessage({ level: "info", data: "tick" });
    }, 1);
    return { content: [] };
  });
  const visit = async ({ name, delay }: { name: string; delay: number }) => {
    step.set(name);
    await sleep(delay);
    return { content: [{ type: "text" as const, text: step.get("-") }] };
  };
  const visitSchema = { inputSchema: { name: z.string(), delay: z.number() } };
  server.registerTool("visit", visitSchema, visit);
  server.registerTool("visitIsolated", visitSchema, isolated(visit));
  return server;
}

type Mode = "stateless" | "stateful";

/** The MCP endpoint: a server per POST (stateless), or one per session kept by its id. */
function mcpEndpoint(mode: Mode) {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  return async (req: IncomingMessage, res: ServerResponse, body?: unknown): Promise<void> => {
    if (mode === "stateless") {
      const server = makeServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    const id = req.headers["mcp-session-id"];
    let transport = typeof id === "string" ? sessions.get(id) : undefined;
    if (transport === undefined) {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sessionId) => {
          setAtInit.set("set in onsessioninitialized"); // lands in the initialize POST's Context
          sessions.set(sessionId, created);
        },
      });
      created.onclose = () => {
        if (created.sessionId !== undefined) sessions.delete(created.sessionId);
      };
      await makeServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  };
}

type Kind = "express" | "node:http";

function seed(header: (name: string) => string | undefined): void {
  user.set(header("x-user") ?? "anonymous");
  session.set(header("mcp-session-id") ?? "-");
}

async function startServer(kind: Kind, mode: Mode): Promise<{ url: string; server: Server }> {
  const endpoint = mcpEndpoint(mode);
  let server: Server;
  if (kind === "express") {
    const app = express();
    app.use(contextMiddleware({ seed: (req) => seed((name) => req.get(name)) }));
    app.use(express.json());
    app.all("/mcp", (req, res) => endpoint(req, res, req.body));
    server = createServer(app);
  } else {
    const header = (req: IncomingMessage, name: string) => {
      const value = req.headers[name];
      return typeof value === "string" ? value : undefined;
    };
    server = createServer(
      withContext((req, res) => endpoint(req, res), {
        seed: (req) => seed((name) => header(req, name)),
      }),
    );
  }
  return { url: `${await listen(server)}/mcp`, server };
}

/**
 * The id each POST carries: `call-<n>` for a tool call with an `n`, else the
 * JSON-RPC method (`notifications/cancelled`), else `response`.
 */
function idFor(body: unknown): string {
  if (typeof body !== "string") return "get";
  const message = JSON.parse(body) as {
    method?: string;
    params?: { arguments?: { n?: number } };
  };
  const n = message.params?.arguments?.n;
  if (message.method === "tools/call" && n !== undefined) return `call-${n}`;
  return message.method ?? "response";
}

/** The `n` of each `work` call sent, by its JSON-RPC id. */
const workCalls = new Map<number | string, number>();

/**
 * Holds a `notifications/cancelled` POST until the `work` call it cancels
 * has started on the server. A server ignores a cancel for a call it has not
 * yet received, and a client's timeout counts from the send: under load a
 * call took up to 35 ms to start, against a 40 ms timeout.
 */
async function holdCancel(body: unknown): Promise<void> {
  if (typeof body !== "string") return;
  const message = JSON.parse(body) as {
    id?: number | string;
    method?: string;
    params?: { name?: string; arguments?: { n?: number }; requestId?: number | string };
  };
  const n = message.params?.arguments?.n;
  if (message.method === "tools/call" && message.params?.name === "work" && n !== undefined) {
    workCalls.set(message.id ?? "", n);
  }
  const requestId = message.params?.requestId;
  const cancelled = requestId === undefined ? undefined : workCalls.get(requestId);
  if (message.method === "notifications/cancelled" && cancelled !== undefined) {
    await until(() => works.has(cancelled), `work ${cancelled} to start before its cancel`);
  }
}

/**
 * A Client connected over Streamable HTTP as `name` (every POST sends
 * `x-user`, and an `x-request-id` from `idFor`), in a Context holding
 * `user` = `connected-<name>`; it answers sampling and elicitation.
 */
async function connectClient(url: string, name: string): Promise<Client> {
  const client = new Client(
    { name, version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    await sleep(Math.floor(Math.random() * 5));
    const content = request.params.messages[0]?.content;
    const question =
      content && !Array.isArray(content) && content.type === "text" ? content.text : "?";
    return { role: "assistant", model: "echo", content: { type: "text", text: `a-${question}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: "accept",
    content: { ok: true },
  }));
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { "x-user": name } },
    fetch: async (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set("x-request-id", idFor(init?.body));
      await holdCancel(init?.body);
      return fetch(input, { ...init, headers });
    },
  });
  await new Context().run(async () => {
    user.set(`connected-${name}`);
    await client.connect(transport);
  });
  return client;
}

const NAMES = ["alice", "bob", "carol", "dave"];

describe("MCP servers over Streamable HTTP", () => {
  for (const kind of ["express", "node:http"] as const) {
    for (const mode of ["stateless", "stateful"] as const) {
      it(`${kind}, ${mode}: 60 concurrent tool calls from 4 clients each read their own POST's id and user, after awaits too; so do a resource and a prompt`, async () => {
        const { url, server } = await startServer(kind, mode);
        const clients = await Promise.all(NAMES.map((name) => connectClient(url, name)));
        try {
          const wrong: string[] = [];
          await Promise.all(
            clients.flatMap((client, c) =>
              Array.from({ length: 15 }, async (_, i) => {
                const n = c * 100 + i;
                const result = await client.callTool({
                  name: "whoami",
                  arguments: { n, delay: (i * 7) % 20 },
                });
                const reads = JSON.parse(textOf(result)) as Record<string, string>;
                const own = `call-${n}|${NAMES[c]}`;
                // Stateful, each POST after the initialize carries the session's id.
                const sessionOk =
                  mode === "stateless" ? reads.session === "-" : reads.session === reads.sessionId;
                if (
                  reads.before !== own ||
                  reads.after !== own ||
                  !sessionOk ||
                  reads.setAtInit !== "-"
                ) {
                  wrong.push(JSON.stringify(reads));
                }
              }),
            ),
          );
          assert.deepEqual(wrong, []);
          const resource = await clients[0]?.readResource({ uri: "ctx://me" });
          const [contents] = resource?.contents ?? [];
          assert.equal(contents && "text" in contents && contents.text, "resources/read|alice");
          const prompt = await clients[1]?.getPrompt({ name: "greet" });
          const content = prompt?.messages[0]?.content;
          assert.equal(content?.type === "text" && content.text, "prompts/get|bob");
        } finally {
          await Promise.all(clients.map((client) => client.close()));
          await close(server);
        }
      });
    }
  }

  describe("stateful, behind contextMiddleware", () => {
    let url: string;
    let server: Server;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    before(async () => {
      ({ url, server } = await startServer("express", "stateful"));
      process.on("unhandledRejection", onUnhandled);
    });
    afterEach(async () => {
      await sleep(10); // a rejection nobody handled is reported after the microtasks run out
      assert.deepEqual(unhandled, []);
    });
    after(async () => {
      process.off("unhandledRejection", onUnhandled);
      await close(server);
    });

    it("the client's AbortSignal and its timeout abort extra.signal: the task given it is cancelled and its work stops; extra.signal's listeners run in the Context of the POST that cancelled, the task's in the call's", async () => {
      const client = await connectClient(url, "alice");
      try {
        await callThenAbort(client, 1);
        const timedOut = client.callTool({ name: "work", arguments: { n: 2 } }, undefined, {
          timeout: 40,
        });
        await assert.rejects(timedOut, /Request timed out/);
        for (const n of [1, 2]) {
          // The client gives up on a timeout whether or not the server has started the call.
          await until(() => works.has(n), `work ${n} to start`);
          const work = works.get(n) as Work;
          assert.equal(await work.ended, "AbortError", `work ${n}`);
          assert.equal(work.task.cancelled, true);
          assert.deepEqual(work.onTaskSignal, [`call-${n}|alice`]);
          assert.deepEqual(work.onSignal, ["notifications/cancelled|alice"]);
        }
      } finally {
        await client.close();
      }
    });

    it("timeout(30, fn, { signal: extra.signal }) stops the work and the call reports its TimeoutError", async () => {
      const client = await connectClient(url, "bob");
      try {
        const result = await client.callTool({ name: "deadline", arguments: { n: 3 } });
        assert.equal(result.isError, true);
        assert.equal(textOf(result), 'Task("deadline-3") timed out after 30 ms');
        const work = works.get(3) as Work;
        assert.equal(await work.ended, "AbortError");
        assert.equal(work.task.cancelled, true);
        assert.deepEqual(work.onTaskSignal, ["call-3|bob"]);
      } finally {
        await client.close();
      }
    });

    it("30 tool calls that sample and elicit: code after each await reads the call's own POST values, and every pino line carries them; the client's onprogress runs in the caller's Context", async () => {
      const clients = await Promise.all(NAMES.slice(0, 3).map((name) => connectClient(url, name)));
      lines.length = 0;
      try {
        const wrong: string[] = [];
        let progressInCaller = 0;
        await Promise.all(
          clients.flatMap((client, c) =>
            Array.from({ length: 10 }, (_, i) =>
              new Context().run(async () => {
                const n = 10 + c * 100 + i;
                user.set(`caller-${n}`);
                const result = await client.callTool({ name: "ask", arguments: { n } }, undefined, {
                  onprogress: () => {
                    if (user.get("-") === `caller-${n}`) progressInCaller++;
                  },
                });
                const reads = JSON.parse(textOf(result)) as Record<string, unknown>;
                const own = `call-${n}|${NAMES[c]}`;
                const expected = { afterSampling: own, afterElicitation: own, afterProgress: own };
                const answer = { type: "text", text: `a-q${n}` };
                try {
                  assert.deepEqual(reads, { ...expected, answer });
                } catch {
                  wrong.push(JSON.stringify(reads));
                }
              }),
            ),
          ),
        );
        assert.deepEqual(wrong, []);
        assert.equal(progressInCaller, 30);
        assert.equal(lines.length, 90);
        const misfiled = lines.filter((line) => {
          const n = line.n as number;
          return line.requestId !== `call-${n}` || line.user !== NAMES[Math.floor((n - 10) / 100)];
        });
        assert.deepEqual(misfiled, []);
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
    });

    it("a timer set in a tool runs in that call's POST Context after the POST was answered; the client handles what it sends over the GET stream in the Context client.connect() ran in", async () => {
      const client = await connectClient(url, "carol");
      const received: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, () => {
        received.push(user.get("-"));
      });
      try {
        announced.length = 0;
        // The client opens its GET stream after initializing; until it is open, notifications are dropped.
        for (let n = 20; received.length === 0 && n < 70; n++) {
          await client.callTool({ name: "announce", arguments: { n } });
          await until(() => announced.length === n - 19, "the timer");
          await sleep(5); // the notification's way over the GET stream
        }
        assert.equal(announced[0], "call-20|carol");
        assert.ok(received.length > 0, "no notification came over the GET stream");
        assert.deepEqual(new Set(received), new Set(["connected-carol"]));
      } finally {
        await client.close();
      }
    });
  });

  it("stateless: notifications/cancelled reaches a server that knows no such call; the work goes on until the client closes", async () => {
    const { url, server } = await startServer("express", "stateless");
    const client = await connectClient(url, "dave");
    try {
      await callThenAbort(client, 4);
      const work = works.get(4) as Work;
      const atCancel = work.steps;
      await until(() => work.steps >= atCancel + 3, "work 4 to go on after the cancel");
      assert.equal(work.task.done, false);
      await client.close(); // closes the call's POST: the transport closes and aborts extra.signal
      assert.equal(await work.ended, "AbortError");
      assert.deepEqual(work.onSignal, ["call-4|dave"]);
    } finally {
      await client.close();
      await close(server);
    }
  });

  it("three tool calls batched in one POST share its Context: each reads the last one's set; isolated(handler) gives each its own", async () => {
    const { url, server } = await startServer("express", "stateless");
    try {
      const post = async (tool: string) => {
        const batch = [1, 2, 3].map((id) => ({
          jsonrpc: "2.0",
          id,
          method: "tools/call",
          params: { name: tool, arguments: { name: `visit-${id}`, delay: 30 - id * 10 } },
        }));
        const response = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2025-06-18",
          },
          body: JSON.stringify(batch),
        });
        const events = (await response.text()).split("\n").filter((l) => l.startsWith("data: "));
        return events
          .map((event) => JSON.parse(event.slice(6)) as { id: number; result: unknown })
          .sort((a, b) => a.id - b.id)
          .map((message) => textOf(message.result));
      };
      assert.deepEqual(await post("visit"), ["visit-3", "visit-3", "visit-3"]);
      assert.deepEqual(await post("visitIsolated"), ["visit-1", "visit-2", "visit-3"]);
    } finally {
      await close(server);
    }
  });
});
