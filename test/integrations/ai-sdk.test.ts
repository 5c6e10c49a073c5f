/**
 * The AI SDK (`ai` 7) under a request's Context: `streamText` with tools,
 * answered as a UI message stream by Hono behind `contextMiddleware()` on
 * `@hono/node-server` (`toUIMessageStreamResponse()`) and by node:http under
 * `withContext` (`pipeUIMessageStreamToResponse(res)`), to fetch clients on
 * 127.0.0.1. The model is the SDK's own `MockLanguageModelV4` over
 * `simulateReadableStream`: a first step that calls tools, a second that
 * streams text. What runs below the handler, much of it after the handler
 * returned (tools, `onChunk`, `onStepEnd`, `onEnd`, stream transforms, the
 * UI stream's `messageMetadata` and `onEnd`, pino lines), is checked against
 * the request it belongs to.
 */
import assert from "node:assert/strict";
import { createServer, type RequestListener } from "node:http";
import { describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { jsonSchema, simulateReadableStream, stepCountIs, streamText, tool } from "ai";
import { MockLanguageModelV4 } from "ai/test";
import { ContextVar, createTask, isolated, run } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import { Hono } from "hono";
import { close, listen, randomDelay } from "../helpers/http.ts";
import { pinoToMemory, user } from "../helpers/logging.ts";

/** Set by each tool call, to see which calls share a Context. */
const toolCall = new ContextVar<string>("ai-sdk.toolCall");

/** A part of what a model's `doStream` streams (the provider spec's LanguageModelV4StreamPart). */
type ModelPart =
  Awaited<ReturnType<MockLanguageModelV4["doStream"]>>["stream"] extends ReadableStream<infer P>
    ? P
    : never;

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 1, text: 1, reasoning: 0 },
};

/**
 * A mock model: its first call asks for one `lookup` per entry of
 * `queries`, all in one step; its second streams `words` text deltas, 1 ms
 * apart. `produced()` counts the parts it has handed out so far, and
 * `aborted()` says whether the signal its last call was given is aborted.
 */
function mockModel(queries: readonly string[], words: number) {
  let calls = 0;
  let produced = 0;
  let signal: AbortSignal | undefined;
  const model = new MockLanguageModelV4({
    doStream: async ({ abortSignal }) => {
      calls++;
      signal = abortSignal;
      const chunks: ModelPart[] =
        calls === 1
          ? [
              ...queries.map((q) => ({
                type: "tool-call" as const,
                toolCallId: q,
                toolName: "lookup",
                input: JSON.stringify({ q }),
              })),
              { type: "finish", finishReason: { unified: "tool-calls", raw: undefined }, usage },
            ]
          : [
              { type: "text-start", id: "t" },
              ...Array.from({ length: words }, (_, n) => ({
                type: "text-delta" as const,
                id: "t",
                delta: `w${n} `,
              })),
              { type: "text-end", id: "t" },
              { type: "finish", finishReason: { unified: "stop", raw: undefined }, usage },
            ];
      const counted = new TransformStream<ModelPart, ModelPart>({
        transform(part, controller) {
          produced++;
          controller.enqueue(part);
        },
      });
      return { stream: simulateReadableStream({ chunks, chunkDelayInMs: 1 }).pipeThrough(counted) };
    },
  });
  return { model, produced: () => produced, aborted: () => signal?.aborted === true };
}

/** A promise and its resolve (Promise.withResolvers, which Node 20 lacks). */
function resolvers(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** What one request's code read, and whether its handler had returned by then. */
interface Reading {
  readonly what: string;
  readonly expected: string;
  readonly id: string;
  readonly user: string;
  readonly afterReturn: boolean;
}

/** Records what the vars say as a Reading of `what`, against the request expected. */
function reader(
  readings: Reading[],
  expected: { id: string; user: string },
  afterReturn: () => boolean,
) {
  return (what: string): void => {
    readings.push({
      what,
      expected: `${expected.id}|${expected.user}`,
      id: requestId.get("<none>"),
      user: user.get("<none>"),
      afterReturn: afterReturn(),
    });
  };
}

interface ChatOptions {
  /** Wraps each tool's `execute` (with `isolated`, say). */
  readonly wrapExecute?: <F extends (...args: never[]) => unknown>(execute: F) => F;
  readonly words?: number;
  readonly abortSignal?: AbortSignal;
  readonly onAbort?: () => void;
  readonly onEnd?: () => void;
}

/**
 * One chat, as a handler starts it: the request's id and user are read from
 * the headers (`expected`), never from the vars, and every callback records
 * what the vars say.
 */
function chat(
  expected: { id: string; user: string },
  readings: Reading[],
  options: ChatOptions = {},
) {
  const state = { returned: false };
  const { logger } = logged;
  const read = reader(readings, expected, () => state.returned);
  const execute = async ({ q }: { q: string }) => {
    read("execute");
    toolCall.set(q);
    await randomDelay(2);
    logger.info({ expected: expected.id }, "tool ran");
    read("execute after an await");
    // Another call of the same step may have set it meanwhile.
    return { q, sawOwnSet: toolCall.get() === q };
  };
  const { model, produced, aborted } = mockModel(["a", "b", "c"], options.words ?? 5);
  const result = streamText({
    model,
    prompt: "look these up",
    stopWhen: stepCountIs(3),
    ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
    tools: {
      lookup: tool({
        inputSchema: jsonSchema<{ q: string }>({
          type: "object",
          properties: { q: { type: "string" } },
          required: ["q"],
        }),
        execute: options.wrapExecute ? options.wrapExecute(execute) : execute,
      }),
    },
    experimental_transform: () =>
      new TransformStream({
        transform(part, controller) {
          read("transform");
          controller.enqueue(part);
        },
      }),
    onChunk: () => read("onChunk"),
    onStepEnd: () => {
      read("onStepEnd");
      logger.info({ expected: expected.id }, "step ended");
    },
    onEnd: () => {
      read("onEnd");
      options.onEnd?.();
    },
    onAbort: () => {
      read("onAbort");
      options.onAbort?.();
    },
  });
  return { result, state, produced, aborted };
}

const logged = pinoToMemory({ mixin: contextMixin({ requestId, user }) });

/** The UI stream's own callbacks, recorded as `chat`'s are. */
function uiOptions(readings: Reading[], expected: { id: string; user: string }) {
  const read = reader(readings, expected, () => true);
  return {
    messageMetadata: () => {
      read("messageMetadata");
      return undefined;
    },
    onEnd: () => read("UI onEnd"),
  };
}

type Way = "Hono, toUIMessageStreamResponse()" | "node:http, pipeUIMessageStreamToResponse()";
const ways: readonly Way[] = [
  "Hono, toUIMessageStreamResponse()",
  "node:http, pipeUIMessageStreamToResponse()",
];

function seedFrom(header: string | undefined): void {
  user.set(header ?? "anonymous");
}

/** The id and user a request's code should read: its headers, never the vars. */
function expectedOf(header: (name: string) => string | undefined): { id: string; user: string } {
  return { id: header("x-request-id") ?? "", user: header("x-user") ?? "" };
}

/** A server answering POST /chat the `way` given; `options(request)` picks the chat's options. */
function chatServer(
  way: Way,
  readings: Reading[],
  options: (headers: Headers) => ChatOptions = () => ({}),
): RequestListener {
  if (way === "Hono, toUIMessageStreamResponse()") {
    const app = new Hono();
    app.use(contextMiddleware({ seed: (c) => seedFrom(c.req.header("x-user")) }));
    app.post("/chat", (c) => {
      const expected = expectedOf((name) => c.req.header(name));
      const chosen = options(c.req.raw.headers);
      const { result, state } = chat(expected, readings, {
        ...chosen,
        abortSignal: c.req.raw.signal,
      });
      const response = result.toUIMessageStreamResponse(uiOptions(readings, expected));
      state.returned = true;
      return response;
    });
    return getRequestListener(app.fetch);
  }
  return withContext(
    (req, res) => {
      const expected = expectedOf((name) => req.headers[name] as string | undefined);
      const headers = new Headers(req.headers as Record<string, string>);
      const { result, state } = chat(expected, readings, options(headers));
      result.pipeUIMessageStreamToResponse(res, uiOptions(readings, expected));
      state.returned = true;
    },
    { seed: (req) => seedFrom(req.headers["x-user"] as string | undefined) },
  );
}

/** Sends `count` concurrent chats, each with its own id and user; resolves with their bodies. */
async function chats(base: string, count: number, query = ""): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, n) => {
      const response = await fetch(`${base}/chat${query}`, {
        method: "POST",
        headers: { "x-request-id": `chat-${n}`, "x-user": `user-${n}` },
      });
      assert.equal(response.status, 200);
      return response.text();
    }),
  );
}

/** How many readings saw another request's values (or none). */
function wrong(readings: readonly Reading[]): number {
  return readings.filter((r) => `${r.id}|${r.user}` !== r.expected).length;
}

for (const way of ways) {
  describe(`the AI SDK's streamText behind a request's Context (${way})`, () => {
    it("tools, callbacks, transforms and log lines of 50 concurrent chats see their own request, also after the handler returned", async () => {
      const readings: Reading[] = [];
      const server = createServer(chatServer(way, readings));
      const base = await listen(server);
      logged.lines.length = 0;
      try {
        const bodies = await chats(base, 50);
        for (const body of bodies) assert.match(body, /"delta":"w4 "/);
      } finally {
        await close(server);
      }
      const whats = new Set(readings.map((r) => r.what));
      for (const what of [
        "execute",
        "execute after an await",
        "transform",
        "onChunk",
        "onStepEnd",
        "onEnd",
        "messageMetadata",
        "UI onEnd",
      ]) {
        assert.ok(whats.has(what), `${what} ran`);
      }
      // 3 tool calls, 2 steps and 1 end per chat at least: 50 chats' worth.
      assert.equal(readings.filter((r) => r.what === "execute").length, 150);
      assert.equal(readings.filter((r) => r.what === "onEnd").length, 50);
      // Per chat: 2 readings in each of 3 tool calls, 19 parts each seen by the
      // transform, onChunk and messageMetadata, 2 onStepEnd, onEnd, the UI's onEnd.
      assert.equal(readings.length, 50 * (6 + 19 * 3 + 2 + 1 + 1));
      assert.equal(
        readings.filter((r) => !r.afterReturn).length,
        0,
        "every reading is made after the handler returned",
      );
      assert.equal(
        wrong(readings),
        0,
        `${wrong(readings)} of ${readings.length} readings saw another request`,
      );
      assert.equal(logged.lines.length, 50 * 3 + 50 * 2);
      for (const line of logged.lines) {
        assert.equal(line.requestId, line.expected);
        assert.equal(line.user, String(line.expected).replace("chat-", "user-"));
      }
    });
  });
}

describe("tool calls of one step", () => {
  it("the tool calls of one step run in the request's one Context: a set in one is read by its siblings; isolated(execute) gives each its own copy", async () => {
    const readings: Reading[] = [];
    const server = createServer(
      chatServer("Hono, toUIMessageStreamResponse()", readings, (headers) =>
        headers.get("x-isolated") === "yes" ? { wrapExecute: isolated } : {},
      ),
    );
    const base = await listen(server);
    const sawOwnSet = (bodies: string[]) => {
      let own = 0;
      let sibling = 0;
      for (const body of bodies) {
        own += body.match(/"sawOwnSet":true/g)?.length ?? 0;
        sibling += body.match(/"sawOwnSet":false/g)?.length ?? 0;
      }
      return { own, sibling };
    };
    try {
      const shared = sawOwnSet(await chats(base, 10));
      assert.equal(shared.own + shared.sibling, 30);
      assert.ok(shared.sibling > 0, "some tool calls read a sibling's set");
      const isolatedBodies = await Promise.all(
        Array.from({ length: 10 }, async (_, n) => {
          const response = await fetch(`${base}/chat`, {
            method: "POST",
            headers: { "x-request-id": `iso-${n}`, "x-user": `user-${n}`, "x-isolated": "yes" },
          });
          return response.text();
        }),
      );
      assert.deepEqual(sawOwnSet(isolatedBodies), { own: 30, sibling: 0 });
    } finally {
      await close(server);
    }
    // isolated copies the request's Context: the request's values are still there.
    assert.equal(wrong(readings), 0);
  });
});

describe("cancelling a generation", () => {
  it("a client that goes away aborts c.req.raw.signal, which stops the model; onAbort runs in the request's Context", async () => {
    const readings: Reading[] = [];
    let produced = () => 0;
    let modelAborted = () => false;
    const aborted = resolvers();
    const app = new Hono();
    app.use(contextMiddleware({ seed: (c) => seedFrom(c.req.header("x-user")) }));
    app.post("/chat", (c) => {
      const expected = expectedOf((name) => c.req.header(name));
      const started = chat(expected, readings, {
        words: 5000,
        abortSignal: c.req.raw.signal,
        onAbort: () => aborted.resolve(),
      });
      produced = started.produced;
      modelAborted = started.aborted;
      return started.result.toUIMessageStreamResponse();
    });
    const server = createServer(getRequestListener(app.fetch));
    const base = await listen(server);
    try {
      const controller = new AbortController();
      const response = await fetch(`${base}/chat`, {
        method: "POST",
        headers: { "x-request-id": "goes-away", "x-user": "alice" },
        signal: controller.signal,
      });
      const reader = response.body?.getReader();
      assert.ok(reader);
      let text = "";
      while (!text.includes("text-delta")) {
        const { value, done } = await reader.read();
        assert.equal(done, false, "the stream ended before any text");
        text += new TextDecoder().decode(value);
      }
      controller.abort();
      // Without the signal, nothing ends the generation (a stalled stream):
      // bounded, so the assertions below fail instead of the test hanging.
      const bound = setTimeout(aborted.resolve, 2000);
      await aborted.promise;
      clearTimeout(bound);
    } finally {
      await close(server);
    }
    assert.ok(modelAborted(), "the model's abortSignal is aborted");
    assert.ok(produced() < 5000, `the model stopped after ${produced()} of 5,000 parts`);
    const onAbort = readings.filter((r) => r.what === "onAbort");
    assert.deepEqual(
      onAbort.map((r) => `${r.id}|${r.user}`),
      ["goes-away|alice"],
    );
  });

  it("a task's signal: task.cancel() stops the model, and the task rejects with the reason", async () => {
    const readings: Reading[] = [];
    let produced = () => 0;
    await run(async () => {
      requestId.set("task");
      user.set("bob");
      const firstText = resolvers();
      const task = createTask(async (signal) => {
        const started = chat({ id: "task", user: "bob" }, readings, {
          words: 5000,
          abortSignal: signal,
        });
        produced = started.produced;
        for await (const _ of started.result.textStream) firstText.resolve();
      });
      await firstText.promise;
      const reason = new Error("the user pressed stop");
      task.cancel(reason);
      await assert.rejects(Promise.resolve(task), (error) => error === reason);
    });
    assert.ok(produced() < 5000, `the model stopped after ${produced()} of 5,000 parts`);
    assert.deepEqual(
      readings.filter((r) => r.what === "onAbort").map((r) => `${r.id}|${r.user}`),
      ["task|bob"],
    );
  });
});
