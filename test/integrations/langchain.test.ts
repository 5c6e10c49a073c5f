/**
 * LangChain.js (`@langchain/core` 1.4) under a request's Context. LangChain
 * keeps its own AsyncLocalStorage for a run's RunnableConfig (callbacks,
 * run ids, its context variables), set up by importing
 * `@langchain/core/context`; ours is another store, and each must reach
 * what the other's code runs. Requests are served by node:http under
 * `withContext` to fetch clients on 127.0.0.1; the models are
 * `FakeListChatModel`s, which stream their answer a character at a time.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { getContextVariable, setContextVariable } from "@langchain/core/context";
import { RunnableLambda, RunnableSequence } from "@langchain/core/runnables";
import { DynamicStructuredTool } from "@langchain/core/tools";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import { bind, Context, ContextVar, createTask, gather, isolated } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import { close, listen, randomDelay } from "../helpers/http.ts";
import { pinoToMemory, user } from "../helpers/logging.ts";

/** Set by each item of a batch, to see which items share a Context. */
const item = new ContextVar<string>("langchain.item");

const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });

/** What code below a request read, against the request it runs for. */
interface Reading {
  readonly what: string;
  readonly expected: string;
  readonly got: string;
}

function reader(readings: Reading[], expected: string) {
  return (what: string): void => {
    readings.push({ what, expected, got: `${requestId.get("<none>")}|${user.get("<none>")}` });
  };
}

function wrong(readings: readonly Reading[]): number {
  return readings.filter((r) => r.got !== r.expected).length;
}

/** A handler for every kind of run; each method logs and records. */
class Probe extends BaseCallbackHandler {
  name = "probe";
  readonly #read: (what: string) => void;
  readonly #expected: string;
  /** `awaitHandlers`: run in line, awaited by the run (LangChain's default is in the background). */
  constructor(read: (what: string) => void, expected: string, awaitHandlers: boolean) {
    super();
    this.awaitHandlers = awaitHandlers;
    this.#read = read;
    this.#expected = expected;
  }
  override handleChainStart(): void {
    this.#read("handleChainStart");
  }
  override handleToolStart(): void {
    this.#read("handleToolStart");
  }
  override handleLLMStart(): void {
    this.#read("handleLLMStart");
  }
  /** Async, as a handler that exports spans or writes to a store is. */
  override async handleLLMNewToken(): Promise<void> {
    this.#read("handleLLMNewToken");
    logger.info({ expected: this.#expected }, "token");
    await new Promise(setImmediate);
  }
  override handleLLMEnd(): void {
    this.#read("handleLLMEnd");
  }
}

/**
 * A chain as an app writes it: a lambda that calls a tool, then one that
 * streams a chat model; neither is handed the config, so the tool's and the
 * model's runs find their parent (and its callbacks) through LangChain's
 * own storage.
 */
function makeChain(readings: Reading[]) {
  const lookup = new DynamicStructuredTool({
    name: "lookup",
    description: "looks a request up",
    schema: { type: "object", properties: { q: { type: "string" } }, required: ["q"] } as const,
    func: async ({ q }: { q: string }) => {
      readings.push({
        what: "tool",
        expected: q,
        got: `${requestId.get("<none>")}|${user.get("<none>")}`,
      });
      await randomDelay(2);
      logger.info({ expected: q.split("|")[0] }, "tool ran");
      return q;
    },
  });
  const model = new FakeListChatModel({ responses: ["one two"], sleep: 1 });
  return RunnableSequence.from([
    RunnableLambda.from(async (expected: string) => {
      readings.push({
        what: "lambda",
        expected,
        got: `${requestId.get("<none>")}|${user.get("<none>")}`,
      });
      await lookup.invoke({ q: expected });
      return expected;
    }),
    RunnableLambda.from(async (expected: string) => {
      let answer = "";
      for await (const chunk of await model.stream(`hello ${expected}`)) answer += chunk.content;
      readings.push({
        what: "model",
        expected,
        got: `${requestId.get("<none>")}|${user.get("<none>")}`,
      });
      return answer;
    }),
  ]);
}

type Mode = "invoke" | "stream";

/** Serves GET / : runs the chain the `x-mode` way with a background and an awaited Probe. */
async function serve(readings: Reading[], background: Reading[]) {
  const chain = makeChain(readings);
  const server = createServer(
    withContext(
      async (req, res) => {
        const expected = `${req.headers["x-request-id"]}|${req.headers["x-user"]}`;
        const callbacks = [
          new Probe(reader(background, expected), expected, false),
          new Probe(reader(readings, expected), expected, true),
        ];
        let answer = "";
        if (req.headers["x-mode"] === "stream") {
          for await (const chunk of await chain.stream(expected, { callbacks })) answer += chunk;
        } else {
          answer = await chain.invoke(expected, { callbacks });
        }
        res.end(answer);
      },
      { seed: (req) => user.set(String(req.headers["x-user"])) },
    ),
  );
  return { server, base: await listen(server) };
}

async function requests(
  base: string,
  count: number,
  headers: Record<string, string> = {},
  prefix = "req",
) {
  return Promise.all(
    Array.from({ length: count }, async (_, n) => {
      const response = await fetch(base, {
        headers: { "x-request-id": `${prefix}-${n}`, "x-user": `user-${n}`, ...headers },
      });
      assert.equal(response.status, 200);
      return response.text();
    }),
  );
}

describe("LangChain runnables behind withContext", () => {
  for (const mode of ["invoke", "stream"] satisfies Mode[]) {
    it(`${mode}(): lambdas, a tool, a chat model and awaited callback handlers of 50 concurrent requests see their own request`, async () => {
      const readings: Reading[] = [];
      const background: Reading[] = [];
      const { server, base } = await serve(readings, background);
      lines.length = 0;
      try {
        for (const body of await requests(base, 50, { "x-mode": mode }))
          assert.equal(body, "one two");
        await awaitAllCallbacks(); // the background Probes' queue, before the next test
      } finally {
        await close(server);
      }
      const count = (what: string) => readings.filter((r) => r.what === what).length;
      assert.equal(count("lambda"), 50);
      assert.equal(count("tool"), 50);
      assert.equal(count("model"), 50);
      // The sequence and its two lambdas; the tool and the model found
      // their parent's callbacks through LangChain's storage.
      assert.equal(count("handleChainStart"), 150);
      assert.equal(count("handleToolStart"), 50);
      assert.equal(count("handleLLMStart"), 50);
      assert.equal(count("handleLLMNewToken"), 50 * "one two".length);
      assert.equal(count("handleLLMEnd"), 50);
      assert.equal(
        wrong(readings),
        0,
        `${wrong(readings)} of ${readings.length} saw another request`,
      );
      const toolLines = lines.filter((line) => line.msg === "tool ran");
      assert.equal(toolLines.length, 50);
      for (const line of toolLines) assert.equal(line.requestId, line.expected);
    });
  }

  it("callback handlers run in the background by default, one at a time from a queue shared by every request: an async handler's next call runs in the Context of whichever run's call came before it", async () => {
    const readings: Reading[] = [];
    const background: Reading[] = [];
    const { server, base } = await serve(readings, background);
    lines.length = 0;
    try {
      await requests(base, 50, { "x-mode": "stream" });
      // The queue goes on after the responses.
      await awaitAllCallbacks();
    } finally {
      await close(server);
    }
    assert.ok(wrong(background) > 0, "some background handler calls saw another request");
    const tokenLines = lines.filter((line) => line.msg === "token");
    // Each Probe logs its own request's id as `expected`: the awaited ones
    // all match; the background ones do not all.
    const mismatched = tokenLines.filter(
      (line) => line.requestId !== String(line.expected).split("|")[0],
    );
    assert.ok(mismatched.length > 0, "some background log lines carry another request's id");
    assert.equal(tokenLines.length, 2 * 50 * "one two".length);
    assert.equal(wrong(readings), 0, "the awaited handlers all saw their own");
  });

  it("a handler made per request with its methods bound there runs in the request's Context, also in the background", async () => {
    const readings: Reading[] = [];
    const model = new FakeListChatModel({ responses: ["one two"], sleep: 1 });
    const server = createServer(
      withContext(
        async (req, res) => {
          const read = reader(readings, `${req.headers["x-request-id"]}|${req.headers["x-user"]}`);
          const handler = BaseCallbackHandler.fromMethods({
            handleLLMNewToken: bind(async () => {
              read("handleLLMNewToken");
              await new Promise(setImmediate);
            }),
          });
          let answer = "";
          for await (const chunk of await model.stream("hi", { callbacks: [handler] })) {
            answer += chunk.content;
          }
          res.end(answer);
        },
        { seed: (req) => user.set(String(req.headers["x-user"])) },
      ),
    );
    const base = await listen(server);
    try {
      await requests(base, 50);
      await awaitAllCallbacks();
    } finally {
      await close(server);
    }
    assert.equal(wrong(readings), 0);
  });
});

describe("batch()", () => {
  it("runs its items concurrently in the caller's one Context: a set in one item is read by the others; isolated gives each a copy", async () => {
    const counts = { shared: { own: 0, other: 0 }, isolated: { own: 0, other: 0 } };
    const body = (counted: { own: number; other: number }) => async (x: string) => {
      item.set(x);
      await randomDelay(2);
      if (item.get() === x) counted.own++;
      else counted.other++;
      return `${x}:${requestId.get()}`;
    };
    const shared = RunnableLambda.from(body(counts.shared));
    const separate = RunnableLambda.from(isolated(body(counts.isolated)));
    const server = createServer(
      withContext(async (_req, res) => {
        const inputs = ["a", "b", "c", "d"];
        const results = [...(await shared.batch(inputs)), ...(await separate.batch(inputs))];
        res.end(JSON.stringify(results));
      }),
    );
    const base = await listen(server);
    try {
      for (const [n, text] of (await requests(base, 20)).entries()) {
        for (const result of JSON.parse(text) as string[])
          assert.match(result, new RegExp(`:req-${n}$`));
      }
    } finally {
      await close(server);
    }
    assert.equal(counts.shared.own + counts.shared.other, 80);
    assert.ok(counts.shared.other > 0, "some items read another item's set");
    assert.deepEqual(counts.isolated, { own: 80, other: 0 });
  });
});

describe("LangChain's own propagation beside ours", () => {
  it("gather() and createTask() inside a lambda keep LangChain's parent run and context variables; ours go on too", async () => {
    const starts: { parent: string | undefined; user: string; tag: unknown }[] = [];
    const tags: unknown[] = [];
    const runs: string[] = [];
    const handler = BaseCallbackHandler.fromMethods({
      handleChainStart: (_chain, _inputs, runId) => {
        runs.push(runId);
      },
      handleLLMStart: (_llm, _prompts, _runId, parentRunId) => {
        // LangChain runs a handler with its own storage emptied (no context
        // variables there); ours still hold the run's values.
        starts.push({
          parent: parentRunId,
          user: user.get("<none>"),
          tag: getContextVariable("tag"),
        });
      },
    });
    handler.awaitHandlers = true;
    const model = new FakeListChatModel({ responses: ["x"] });
    const fanOut = RunnableLambda.from(async (who: string) => {
      setContextVariable("tag", `tag of ${who}`);
      const invoke = async (prompt: string) => {
        await randomDelay(2);
        tags.push(getContextVariable("tag"));
        return model.invoke(prompt);
      };
      const [a, b] = await gather(
        () => user.run(`${who}/a`, () => invoke("a")),
        () => user.run(`${who}/b`, () => invoke("b")),
      );
      const c = await createTask(() => invoke("c"));
      return `${a.content}${b.content}${c.content}`;
    });
    await new Context().run(async () => {
      user.set("carol");
      assert.equal(await createTask(() => fanOut.invoke("carol", { callbacks: [handler] })), "xxx");
    });
    assert.equal(runs.length, 1);
    assert.deepEqual(starts.map((s) => [s.parent === runs[0], s.user, s.tag]).sort(), [
      [true, "carol", undefined],
      [true, "carol/a", undefined],
      [true, "carol/b", undefined],
    ]);
    assert.deepEqual(tags, ["tag of carol", "tag of carol", "tag of carol"]);
  });
});
