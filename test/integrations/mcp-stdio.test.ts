/**
 * MCP servers made with `@modelcontextprotocol/sdk` (McpServer) on the
 * transports that carry no HTTP request: stdio, with the server
 * (fixtures/mcp-stdio-server.ts) a child process started by the SDK's
 * StdioClientTransport, and the SDK's InMemoryTransport. What
 * docs/integrations.md ("MCP servers", "stdio") says:
 *
 * - Over stdio every message comes from one stdin stream, so every handler
 *   runs in one shared Context: a set in one call is seen by the next.
 *   `bind(transport.onmessage, new Context())` after `connect` gives each
 *   message its own.
 * - In memory, the handler runs in the Context of the code calling
 *   `callTool`, and its sets reach that code; the same bind keeps them
 *   apart, and code after a `createMessage` goes on in the call's copy.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { bind, Context, ContextVar } from "contextvars";
import * as z from "zod/v4";
import { textOf } from "../helpers/mcp.ts";
import { typeScriptCommand } from "../runtimes/runtime.ts";

const user = new ContextVar<string>("user");
const step = new ContextVar<string>("step");

const stdioServer = fileURLToPath(new URL("./fixtures/mcp-stdio-server.ts", import.meta.url));

/** A Client of the stdio fixture, started as a child process (`bound`: with the docs' wrapper). */
async function connectStdio(mode: "plain" | "bound"): Promise<Client> {
  const client = new Client({ name: `stdio-${mode}`, version: "1.0.0" });
  const [command, ...args] = typeScriptCommand(stdioServer);
  const transport = new StdioClientTransport({
    command,
    args: [...args, mode],
    stderr: "inherit",
  });
  await client.connect(transport);
  return client;
}

interface Visit {
  found: string;
  after: string;
  requestId: string;
}

async function visit(client: Client, name: string, delay: number): Promise<Visit> {
  const result = await client.callTool({ name: "visit", arguments: { name, delay } });
  return JSON.parse(textOf(result)) as Visit;
}

/** Two calls one after the other, then 50 at once: what each found and read back. */
async function visits(client: Client) {
  const first = await visit(client, "alice", 0);
  const second = await visit(client, "bob", 0);
  const names = Array.from({ length: 50 }, (_, i) => `user-${i}`);
  const concurrent = await Promise.all(names.map((name, i) => visit(client, name, (i * 7) % 20)));
  return {
    first,
    second,
    startedWithAValue: concurrent.filter((v) => v.found !== "-").length,
    readAnothersValue: concurrent.filter((v, i) => v.after !== names[i]).length,
    requestIds: concurrent.map((v) => v.requestId),
  };
}

// Both children start at once, as the file loads.
// Settled, not all-or-nothing: a child that started is closed even when the
// other failed, or its pipes would keep this process waiting on it.
const stdioClients = Promise.allSettled([connectStdio("plain"), connectStdio("bound")]);

describe("MCP servers over stdio and in memory", () => {
  let plain: Client;
  let bound: Client;
  before(async () => {
    const [p, b] = await stdioClients;
    if (p?.status !== "fulfilled") throw p?.reason;
    if (b?.status !== "fulfilled") throw b?.reason;
    [plain, bound] = [p.value, b.value];
  });
  after(async () => {
    const started = await stdioClients;
    await Promise.all(started.map((s) => (s.status === "fulfilled" ? s.value.close() : undefined)));
  });

  it("stdio: every message runs in one shared Context: a call finds the last call's set, and of 50 at once nearly all read another's after their await", async () => {
    const seen = await visits(plain);
    assert.deepEqual(seen.first, { found: "-", after: "alice", requestId: "-" });
    assert.equal(seen.second.found, "alice");
    assert.equal(seen.startedWithAValue, 50);
    // 49 in every run measured: all but the last to set. Fewer only if stdin splits the 50
    // messages and a call's timer fires between the pieces.
    assert.ok(seen.readAnothersValue >= 40, `${seen.readAnothersValue} of 50`);
  });

  it("stdio: bind(transport.onmessage, new Context()) after connect runs each message in a fresh Context: nothing found, nothing crossed, requestId the JSON-RPC id", async () => {
    const seen = await visits(bound);
    assert.deepEqual(seen.first, { found: "-", after: "alice", requestId: "1" });
    assert.deepEqual(seen.second, { found: "-", after: "bob", requestId: "2" });
    assert.equal(seen.startedWithAValue, 0);
    assert.equal(seen.readAnothersValue, 0);
    assert.equal(new Set(seen.requestIds).size, 50);
  });

  it("in memory: the handler runs in the Context of the code that calls callTool, and its set reaches that code; with the wrapper it does not", async () => {
    const caller = new ContextVar<string>("caller");
    for (const wrapped of [false, true]) {
      const server = new McpServer({ name: "in-memory", version: "1.0.0" });
      server.registerTool("visit", { inputSchema: { name: z.string() } }, async ({ name }) => {
        user.set(name);
        return { content: [{ type: "text", text: caller.get("-") }] };
      });
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await server.connect(serverSide);
      const onmessage = serverSide.onmessage;
      if (wrapped && onmessage) serverSide.onmessage = bind(onmessage, new Context());
      const client = new Client({ name: "in-memory", version: "1.0.0" });
      await client.connect(clientSide);
      const outcome = await new Context().run(async () => {
        caller.set("the test");
        const result = await client.callTool({ name: "visit", arguments: { name: "alice" } });
        return { handlerSawCaller: textOf(result), callerSeesUser: user.get("-") };
      });
      assert.deepEqual(
        outcome,
        wrapped
          ? { handlerSawCaller: "-", callerSeesUser: "-" }
          : { handlerSawCaller: "the test", callerSeesUser: "alice" },
      );
      await client.close();
    }
  });

  it("in memory, wrapped: 50 calls at once that set a var and then sample read their own after the client's answer, which comes through onmessage too", async () => {
    const server = new McpServer({ name: "in-memory-sampling", version: "1.0.0" });
    server.registerTool("sample", { inputSchema: { name: z.string() } }, async ({ name }) => {
      step.set(name);
      await server.server.createMessage({
        messages: [{ role: "user", content: { type: "text", text: name } }],
        maxTokens: 10,
      });
      return { content: [{ type: "text", text: step.get("-") }] };
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const onmessage = serverSide.onmessage;
    if (onmessage) serverSide.onmessage = bind(onmessage, new Context());
    const client = new Client(
      { name: "in-memory-sampling", version: "1.0.0" },
      { capabilities: { sampling: {} } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
      await sleep(Math.floor(Math.random() * 5));
      return { role: "assistant", model: "echo", content: { type: "text", text: "ok" } };
    });
    await client.connect(clientSide);
    try {
      const names = Array.from({ length: 50 }, (_, i) => `sampler-${i}`);
      const read = await Promise.all(
        names.map(async (name) =>
          textOf(await client.callTool({ name: "sample", arguments: { name } })),
        ),
      );
      assert.deepEqual(read, names);
    } finally {
      await client.close();
    }
  });
});
