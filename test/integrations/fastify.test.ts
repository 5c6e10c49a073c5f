import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Context, ContextVar, type Token, taskGroup } from "contextvars";
import { contextPlugin, requestId } from "contextvars/fastify";
import { withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import pino from "pino";
import { keepAliveAgent, randomDelay, send, sendRaw, UUID } from "../helpers/http.ts";
import { pinContext } from "../helpers/pin-context.ts";
import {
  asyncStage,
  expectBodyKeepsContext,
  expectDataListeners,
  expectGeneratedIds,
  expectIdHandling,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  leak,
  observe,
  pathGenerator,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
} from "../helpers/request-scenario.ts";

const seed = (request: FastifyRequest) => seedUser(request.headers["x-user"]);

async function buildApp(): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(contextPlugin, { seed });
  app.setErrorHandler((_error, _request, reply) => {
    reply.code(500).send({ id: requestId.get(), leak: leak.get() });
  });
  // A custom parser that listens on the raw request itself.
  app.addContentTypeParser("text/plain", (_request, payload, done) => {
    const events: string[] = [];
    const seen = () => events.push(`${requestId.get()}|${user.get()}`);
    payload.on("data", seen);
    payload.on("end", () => {
      seen();
      done(null, events);
    });
  });
  app.get("/concurrent", { onRequest: asyncStage }, () => observe());
  app.post(
    "/body",
    { bodyLimit: 1 << 20, onRequest: async () => stage.set(`mw:${user.get()}`) },
    async (request) => ({
      id: requestId.get(),
      user: user.get(),
      stage: stage.get(),
      body: request.body,
    }),
  );
  app.post("/raw", async (request) => ({ events: request.body }));
  app.get("/id", async () => requestId.get());
  app.get("/throw", setThenThrow);
  app.get("/reject", { preHandler: setThenReject }, async () => "unreachable");
  app.get("/peek", async () => ({ leak: leak.get("unset") }));
  app.get("/stream", { onResponse: async () => recordFinish() }, async (_request, reply) => {
    reply.type("text/plain");
    return Readable.from(streamChunks());
  });
  return app;
}

/**
 * A queue of callbacks that a timer started outside any request runs every
 * 2 ms, as a callback-style rate limiter or connection pool would.
 */
function queueDrainedOutside(): { queue: (() => void)[]; stop: () => void } {
  const queue: (() => void)[] = [];
  const drain = setInterval(() => {
    for (const release of queue.splice(0)) release();
  }, 2);
  return { queue, stop: () => clearInterval(drain) };
}

describe("contextvars/fastify contextPlugin", { timeout: 60_000 }, () => {
  let app: FastifyInstance;
  let base = "";
  before(async () => {
    app = await buildApp();
    base = await app.listen({ port: 0, host: "127.0.0.1", backlog: 2048 });
  });
  after(() => app.close());

  it("1,000 concurrent requests each see only their own values", () => expectNoCrossTalk(base));
  it("a var set before Fastify's body parser is seen by the handler", () =>
    expectBodyKeepsContext(base));
  it("a parser's 'data'/'end' listeners see the request's values", () => expectDataListeners(base));
  it("a throw or rejection leaves nothing for the next request", () => expectNothingLeaks(base));
  it("a streamed reply and onResponse keep the context", () => expectStreaming(base));
  it("malformed ids are replaced, well-formed ones pass", () => expectIdHandling(base));

  it("values set after an await in async hooks reach every later hook and the handler", async () => {
    const checked = new ContextVar<string>("checked");
    const seen: string[] = [];
    const own = Fastify();
    await own.register(contextPlugin, { seed });
    own.addHook("onRequest", async () => {
      await randomDelay();
      stage.set(`onRequest:${user.get()}`);
    });
    own.addHook("preHandler", async () => {
      await randomDelay();
      checked.set(`preHandler:${stage.get()}`);
    });
    own.addHook("onSend", async (_request, _reply, payload) => {
      await randomDelay();
      seen.push(`onSend ${requestId.get()} ${checked.get()}`);
      return payload;
    });
    own.addHook("onResponse", async () => {
      seen.push(`onResponse ${requestId.get()} ${checked.get()}`);
    });
    own.post("/", async (request) => ({ checked: checked.get(), body: request.body }));
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          send(url, "/", {
            headers: {
              "x-request-id": `h-${i}`,
              "x-user": `u${i}`,
              "content-type": "application/json",
            },
            body: JSON.stringify({ i }),
          }),
        ),
      );
      replies.forEach((reply, i) => {
        assert.deepEqual(JSON.parse(reply.body), {
          checked: `preHandler:onRequest:u${i}`,
          body: { i },
        });
        assert.ok(seen.includes(`onSend h-${i} preHandler:onRequest:u${i}`));
      });
      await randomDelay(20);
      for (let i = 0; i < 50; i++) {
        assert.ok(seen.includes(`onResponse h-${i} preHandler:onRequest:u${i}`), `onResponse ${i}`);
      }
    } finally {
      await own.close();
    }
  });

  it("an encapsulated, prefixed plugin: every hook (callback or async, onRequestAbort too), its not-found and error handlers, a hijacked reply and request.signal see the request and what its async onRequest set, over a socket and inject()", () =>
    // In a Context of its own, pinned: nothing the requests do may reach it.
    new Context().run(async () => {
      const pin = pinContext();
      /** Per request id (from the header, not the Context): "<where>:<requestId>:<stage>". */
      const seen = new Map<string, string[]>();
      const note = (where: string, request: FastifyRequest) => {
        const id = String(request.headers["x-request-id"]);
        const line = `${where}:${requestId.get("<none>")}:${stage.get("<none>")}`;
        seen.set(id, [...(seen.get(id) ?? []), line]);
      };
      let reached = () => {};
      const hanging = new Promise<void>((resolve) => {
        reached = resolve;
      });
      const own = Fastify();
      await own.register(contextPlugin, { seed });
      await own.register(
        async (child) => {
          child.addHook("onRequest", async (request) => {
            await randomDelay();
            stage.set(`onRequest:${user.get()}`);
            note("onRequest", request);
          });
          child.addHook("preParsing", (request, _reply, payload, done) => {
            note("preParsing", request);
            done(null, payload);
          });
          child.addHook("preValidation", async (request) => note("preValidation", request));
          child.addHook("preHandler", (request, _reply, done) => {
            setTimeout(() => {
              note("preHandler", request);
              done();
            }, 1);
          });
          child.addHook("preSerialization", async (request, _reply, payload) => {
            note("preSerialization", request);
            return payload;
          });
          child.addHook("onError", (request, _reply, _error, done) => {
            note("onError", request);
            done();
          });
          child.addHook("onSend", async (request, _reply, payload) => {
            await randomDelay();
            note("onSend", request);
            return payload;
          });
          child.addHook("onResponse", (request, _reply, done) => {
            note("onResponse", request);
            done();
          });
          child.addHook("onRequestAbort", async (request) => note("onRequestAbort", request));
          child.setNotFoundHandler(async (request, reply) => {
            note("notFound", request);
            return reply.code(404).send({ id: requestId.get(), stage: stage.get() });
          });
          child.setErrorHandler(async (_error, request, reply) => {
            note("errorHandler", request);
            return reply.code(500).send({ id: requestId.get(), stage: stage.get() });
          });
          child.get("/ok", async () => ({ id: requestId.get(), stage: stage.get() }));
          child.get("/fail", async () => {
            await randomDelay();
            throw new Error("failed in the child");
          });
          child.get("/hijack", (request, reply) => {
            reply.hijack();
            setTimeout(() => {
              note("hijacked", request);
              reply.raw.writeHead(200, { "content-type": "application/json" });
              reply.raw.end(JSON.stringify({ id: requestId.get(), stage: stage.get() }));
            }, 1);
          });
          child.get("/hang", (request) => {
            request.signal.addEventListener("abort", () => note("signal", request));
            reached();
            return new Promise(() => {}); // never answers
          });
        },
        { prefix: "/c" },
      );
      const url = await own.listen({ port: 0, host: "127.0.0.1" });
      const through = ["onRequest", "preParsing", "preValidation", "preHandler"];
      const expected: Record<string, [number, string[]]> = {
        ok: [200, [...through, "preSerialization", "onSend", "onResponse"]],
        fail: [
          500,
          [...through, "onError", "errorHandler", "preSerialization", "onSend", "onResponse"],
        ],
        nope: [404, [...through, "notFound", "preSerialization", "onSend", "onResponse"]],
        hijack: [200, [...through, "hijacked", "onResponse"]],
      };
      const agent = keepAliveAgent(4);
      try {
        const requests = Object.keys(expected).flatMap((path) =>
          Array.from({ length: 10 }, (_, i) => ({ path, i, id: `${path}-${i}` })),
        );
        await Promise.all(
          requests.map(async ({ path, i, id }) => {
            const headers = { "x-request-id": id, "x-user": `u${i}` };
            // Half through a real socket, half through light-my-request.
            const { status, body } =
              i % 2 === 0
                ? await send(url, `/c/${path}`, { agent, headers })
                : await own
                    .inject({ url: `/c/${path}`, headers })
                    .then((r) => ({ status: r.statusCode, body: r.body }));
            assert.equal(status, expected[path]?.[0], `${id}: ${body}`);
            assert.deepEqual(JSON.parse(body), { id, stage: `onRequest:u${i}` });
          }),
        );
        const stageOf = (id: string) => `onRequest:u${id.split("-")[1]}`;
        // onResponse runs once the response has finished: give it a few turns.
        const complete = () =>
          requests.every(({ id }) => seen.get(id)?.includes(`onResponse:${id}:${stageOf(id)}`));
        for (let i = 0; i < 100 && !complete(); i++) await randomDelay(10);
        for (const { path, id } of requests) {
          const where = expected[path]?.[1] ?? [];
          assert.deepEqual(
            seen.get(id),
            where.map((w) => `${w}:${id}:${stageOf(id)}`),
          );
        }
        // A client that goes away: onRequestAbort and the request's signal.
        const req = httpRequest(`${url}/c/hang`, {
          headers: { "x-request-id": "hang-7", "x-user": "u7" },
        });
        req.on("error", () => {});
        req.end();
        await hanging;
        req.destroy();
        for (let i = 0; i < 100 && (seen.get("hang-7")?.length ?? 0) < 6; i++)
          await randomDelay(10);
        assert.deepEqual(
          seen.get("hang-7"),
          [...through, "onRequestAbort", "signal"].map((w) => `${w}:hang-7:onRequest:u7`),
        );
      } finally {
        agent.destroy();
        await own.close();
      }
      pin.check("after 41 requests");
    }));

  it("registered inside an encapsulated plugin: it covers that plugin's routes only, not its siblings', the root's, or any 404 (pinned)", async () => {
    const own = Fastify();
    await own.register(
      async (child) => {
        await child.register(contextPlugin);
        child.get("/in", async () => requestId.get("<none>"));
      },
      { prefix: "/api" },
    );
    await own.register(async (sibling) => {
      sibling.get("/sibling", async () => requestId.get("<none>"));
    });
    own.get("/root", async () => requestId.get("<none>"));
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const answers: string[] = [];
      for (const path of ["/api/in", "/sibling", "/root", "/api/missing"]) {
        const reply = await send(url, path, { headers: { "x-request-id": "scoped-1" } });
        const body = reply.status === 404 ? "404" : reply.body;
        answers.push(`${path} ${body} ${reply.headers["x-request-id"] ?? "no echo"}`);
      }
      assert.deepEqual(answers, [
        "/api/in scoped-1 scoped-1",
        "/sibling <none> no echo",
        "/root <none> no echo",
        "/api/missing 404 no echo",
      ]);
    } finally {
      await own.close();
    }
  });

  it("pipelined requests on one keep-alive socket: a queued reply's onResponse sees the request whose write finished it, unless the server is wrapped (pinned)", async () => {
    // Fastify adds the response's `finish` listener, which runs onResponse,
    // before the plugin opens the Context; on HTTP/1 only a pipelined
    // request's `finish` comes from another request (HTTP/2 binds it: see
    // http2.test.ts). Rebinding it on every HTTP/1 request would cost about
    // 1.7 µs a request; withContext in a serverFactory covers it instead.
    for (const wrapped of [false, true]) {
      await pipelined(wrapped);
    }
  });

  async function pipelined(wrapped: boolean): Promise<void> {
    const own = wrapped
      ? Fastify({ serverFactory: (h) => createServer(withContext(h)) })
      : Fastify();
    await own.register(contextPlugin);
    const seen: string[] = [];
    let bothSeen = () => {};
    const done = new Promise<void>((resolve) => {
      bothSeen = resolve;
    });
    own.addHook("onResponse", async (request) => {
      seen.push(`${request.url} ${requestId.get("<none>")}`);
      if (seen.length === 2) bothSeen();
    });
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // /b's reply is queued behind /a's: Node writes it, and emits its
    // `finish`, from the end of /a's response.
    own.get("/a", async () => {
      await gate;
      return "a";
    });
    own.get("/b", async () => {
      setImmediate(release);
      return "b";
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const { hostname, port } = new URL(url);
      const socket = connect(Number(port), hostname);
      let text = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => {
        text += chunk;
      });
      socket.write(
        "GET /a HTTP/1.1\r\nHost: x\r\nx-request-id: pipelined-a\r\n\r\n" +
          "GET /b HTTP/1.1\r\nHost: x\r\nx-request-id: pipelined-b\r\nConnection: close\r\n\r\n",
      );
      await once(socket, "end");
      await done;
      assert.deepEqual(text.match(/x-request-id: [\w-]+/g), [
        "x-request-id: pipelined-a",
        "x-request-id: pipelined-b",
      ]);
      assert.deepEqual(seen, ["/a pipelined-a", `/b pipelined-${wrapped ? "b" : "a"}`]);
    } finally {
      await own.close();
    }
  }

  it("a seed that throws fails its request: the error handler answers it in the request, and no later hook or handler runs", async () => {
    const ran: string[] = [];
    const own = Fastify();
    await own.register(contextPlugin, {
      seed: () => {
        throw new Error("seed failed");
      },
    });
    own.addHook("onRequest", (_request, _reply, done) => {
      ran.push("onRequest");
      done();
    });
    own.setErrorHandler(async (error, _request, reply) => {
      await randomDelay();
      return reply.code(500).send(`${(error as Error).message} for ${requestId.get("<none>")}`);
    });
    own.get("/", async () => {
      ran.push("handler");
      return "never";
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "seed-1" } });
      assert.equal(reply.status, 500);
      assert.equal(reply.body, "seed failed for seed-1");
      assert.deepEqual(ran, []);
    } finally {
      await own.close();
    }
  });

  it("a preParsing hook that calls done from a queue drained outside any request: the handler is still in the request", async () => {
    const { queue, stop } = queueDrainedOutside();
    const own = Fastify();
    await own.register(contextPlugin, { seed });
    own.addHook("preParsing", (_request, _reply, payload, done) => {
      queue.push(() => done(null, payload));
    });
    own.post("/", async () => ({ id: requestId.get("<none>"), user: user.get("<none>") }));
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const reply = await send(url, "/", {
        headers: { "content-type": "application/json", "x-request-id": "q-1", "x-user": "quinn" },
        body: JSON.stringify({ n: 1 }),
      });
      assert.deepEqual(JSON.parse(reply.body), { id: "q-1", user: "quinn" });
    } finally {
      stop();
      await own.close();
    }
  });

  it("a preHandler hook that calls done from a queue drained outside any request hands the handler the queue's Context; one that awaits the queue keeps the request (pinned)", async () => {
    const { queue, stop } = queueDrainedOutside();
    const own = Fastify();
    await own.register(contextPlugin, { seed });
    const answer = async () => ({ id: requestId.get("<none>"), user: user.get("<none>") });
    // No hook of the plugin's runs between the last preHandler and the handler.
    own.get(
      "/callback",
      { preHandler: (_request, _reply, done) => void queue.push(() => done()) },
      answer,
    );
    own.get(
      "/async",
      { preHandler: async () => new Promise<void>((resolve) => void queue.push(resolve)) },
      answer,
    );
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const headers = { "x-request-id": "q-2", "x-user": "quinn" };
      const callback = await send(url, "/callback", { headers });
      assert.deepEqual(JSON.parse(callback.body), { id: "<none>", user: "<none>" });
      assert.equal(callback.headers["x-request-id"], "q-2", "echoed before the hook");
      const awaited = await send(url, "/async", { headers });
      assert.deepEqual(JSON.parse(awaited.body), { id: "q-2", user: "quinn" });
    } finally {
      stop();
      await own.close();
    }
  });

  for (const how of ["registered twice", "under withContext in a serverFactory"] as const) {
    it(`${how}: one Context per request`, async () => {
      const marker = new ContextVar<string>("marker");
      let token: Token<string> | undefined;
      const own =
        how === "registered twice"
          ? Fastify()
          : Fastify({ serverFactory: (handler) => createServer(withContext(handler)) });
      await own.register(contextPlugin, { seed });
      own.addHook("onRequest", async () => {
        await randomDelay();
        token = marker.set("between the plugins");
      });
      if (how === "registered twice") {
        await own.register(contextPlugin, { seed: () => stage.set("second seed") });
      }
      own.get("/", async () => {
        marker.reset(token as Token<string>); // throws if this is another Context
        return { id: requestId.get(), user: user.get(), stage: stage.get("none") };
      });
      const url = await own.listen({ port: 0, host: "127.0.0.1" });
      try {
        const reply = await send(url, "/", { headers: { "x-request-id": "f-1", "x-user": "fay" } });
        assert.equal(reply.status, 200, reply.body);
        const expected = how === "registered twice" ? "second seed" : "none";
        assert.deepEqual(JSON.parse(reply.body), { id: "f-1", user: "fay", stage: expected });
      } finally {
        await own.close();
      }
    });
  }

  it("handlerTimeout: its error reply and the abort of request.signal run outside the request unless the server is wrapped (pinned)", async () => {
    // Fastify arms the timer before the onRequest hooks, where the plugin
    // opens the Context; withContext in a serverFactory opens it earlier.
    for (const wrapped of [false, true]) {
      const own = wrapped
        ? Fastify({ handlerTimeout: 50, serverFactory: (h) => createServer(withContext(h)) })
        : Fastify({ handlerTimeout: 50 });
      await own.register(contextPlugin);
      const seen: string[] = [];
      own.setErrorHandler((_error, _request, reply) => {
        seen.push(`error handler: ${requestId.get("<none>")}`);
        reply.code(503).send("timed out");
      });
      own.addHook("onResponse", async () => {
        seen.push(`onResponse: ${requestId.get("<none>")}`);
      });
      own.get("/slow", (request, reply) => {
        request.signal.addEventListener("abort", () => {
          seen.push(`signal: ${requestId.get("<none>")}`);
        });
        setTimeout(() => {
          if (!reply.sent) reply.send("late");
        }, 200);
        return reply;
      });
      const url = await own.listen({ port: 0, host: "127.0.0.1" });
      try {
        const reply = await send(url, "/slow", { headers: { "x-request-id": "t-1" } });
        assert.equal(reply.status, 503);
        assert.equal(reply.headers["x-request-id"], "t-1", "echoed either way");
        while (seen.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
        const id = wrapped ? "t-1" : "<none>";
        assert.deepEqual(seen, [`signal: ${id}`, `error handler: ${id}`, `onResponse: ${id}`]);
      } finally {
        await own.close();
      }
    }
  });

  it("a malformed URL (FST_ERR_BAD_URL): no hook runs, the answer carries no id and frameworkErrors sees no request values, unless the server is wrapped (pinned)", async () => {
    // Fastify answers it before routing, so before the onRequest hook where
    // the plugin opens the Context; withContext in a serverFactory opens it earlier.
    for (const wrapped of [false, true]) {
      const seen: string[] = [];
      const options = {
        frameworkErrors: (error: Error & { code?: string }, _req: unknown, reply: FastifyReply) => {
          seen.push(`frameworkErrors ${error.code}: ${requestId.get("<none>")}`);
          reply.code(400).send("bad url");
        },
      };
      const own = wrapped
        ? Fastify({ ...options, serverFactory: (h) => createServer(withContext(h)) })
        : Fastify(options);
      await own.register(contextPlugin);
      for (const hook of ["onRequest", "preHandler", "onSend", "onResponse"] as const) {
        own.addHook(hook, async () => {
          seen.push(`${hook}: ${requestId.get("<none>")}`);
        });
      }
      own.get("/*", async () => "routed");
      const url = await own.listen({ port: 0, host: "127.0.0.1" });
      try {
        const reply = await sendRaw(url, [
          "GET /%E0%A4%A HTTP/1.1",
          "Host: x",
          "x-request-id: bad-1",
        ]);
        assert.equal(reply.status, 400);
        assert.equal(reply.headers["x-request-id"], wrapped ? "bad-1" : undefined);
        assert.deepEqual(seen, [
          `frameworkErrors FST_ERR_BAD_URL: ${wrapped ? "bad-1" : "<none>"}`,
        ]);
      } finally {
        await own.close();
      }
    }
  });

  it("handlerTimeout: request.signal listeners run in the request's Context when the client goes away, and not at all after a reply", async () => {
    // Fastify adds the listener that aborts request.signal on the request's
    // `close` before the onRequest hooks, where the plugin opens the Context.
    const own = Fastify({ handlerTimeout: 10_000 });
    await own.register(contextPlugin, { seed });
    const seen: string[] = [];
    let reached = () => {};
    const hanging = new Promise<void>((resolve) => {
      reached = resolve;
    });
    own.addHook("onRequest", async () => {
      await randomDelay();
      stage.set(`onRequest:${user.get()}`);
    });
    own.get("/:path", async (request) => {
      const path = (request.params as { path: string }).path;
      request.signal.addEventListener("abort", () => {
        seen.push(`${path} ${requestId.get("<none>")} ${stage.get("<none>")}`);
      });
      if (path !== "hang") return "answered";
      reached();
      return new Promise(() => {}); // never answers
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const reply = await send(url, "/ok", {
        headers: { "x-request-id": "to-1", "x-user": "tim" },
      });
      assert.equal(reply.body, "answered");
      const req = httpRequest(`${url}/hang`, {
        headers: { "x-request-id": "to-2", "x-user": "tom" },
      });
      req.on("error", () => {});
      req.end();
      await hanging;
      req.destroy();
      for (let i = 0; i < 100 && seen.length === 0; i++) await randomDelay(10);
      assert.deepEqual(seen, ["hang to-2 onRequest:tom"]);
    } finally {
      await own.close();
    }
  });

  it("a web ReadableStream reply: pulls after the handler returned, also those a socket drain starts, see the request's values, and their sets stay there", async () => {
    const producedBy = new ContextVar<string>("producedBy");
    const own = Fastify();
    await own.register(contextPlugin, { seed });
    const serverContext = new Context();
    serverContext.run(() => producedBy.set("unset"));
    const full = new Map<string, () => void>();
    const pulls: Record<string, string[]> = {};
    own.get("/web", (_request, reply) => {
      const id = requestId.get();
      pulls[id] = [];
      // Count the writes the socket could not take, so the test knows
      // later pulls came from the drain path.
      const write = reply.raw.write;
      reply.raw.write = function (this: typeof reply.raw, ...args: Parameters<typeof write>) {
        const taken = write.apply(this, args);
        if (!taken) full.get(id)?.();
        return taken;
      } as typeof write;
      let sent = 0;
      const body = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            pulls[id]?.push(
              `${requestId.get("<none>")}|${user.get("<none>")}|${producedBy.get("unset")}`,
            );
            producedBy.set(`body of ${requestId.get("<none>")}`);
            controller.enqueue(new Uint8Array(64 * 1024).fill(97));
            if (++sent === 8) controller.close();
          },
        },
        { highWaterMark: 0 },
      );
      return reply.type("application/octet-stream").send(body);
    });
    const url = await serverContext.run(() => own.listen({ port: 0, host: "127.0.0.1" }));
    try {
      const read = (id: string, name: string) =>
        new Promise<number>((resolve, reject) => {
          const filled = new Promise<void>((resolve) => full.set(id, resolve));
          const req = httpRequest(`${url}/web`, {
            headers: { "x-request-id": id, "x-user": name },
          });
          req.on("error", reject);
          req.on("response", (res) => {
            res.pause(); // read nothing until the server's writes have filled the socket
            let length = 0;
            res.on("data", (chunk: Buffer) => {
              length += chunk.length;
            });
            res.on("end", () => resolve(length));
            filled.then(() => res.resume());
          });
          req.end();
        });
      const lengths = await Promise.all([read("web-1", "ann"), read("web-2", "bob")]);
      assert.deepEqual(lengths, [8 * 64 * 1024, 8 * 64 * 1024]);
      for (const [id, name] of [
        ["web-1", "ann"],
        ["web-2", "bob"],
      ]) {
        assert.deepEqual(pulls[id], [
          `${id}|${name}|unset`,
          ...Array(7).fill(`${id}|${name}|body of ${id}`),
        ]);
      }
      assert.equal(
        serverContext.run(() => producedBy.get()),
        "unset",
      );
    } finally {
      await own.close();
    }
  });

  it("trustHeader: false, generateId(request): ids are generated from the FastifyRequest", async () => {
    const own = Fastify();
    const generateId = pathGenerator((request: FastifyRequest) => {
      assert.equal(typeof request.id, "string", "the FastifyRequest, not the raw request");
      return request.url;
    });
    await own.register(contextPlugin, { trustHeader: false, generateId });
    own.get("/id", async () => requestId.get());
    own.get("/bad", async () => requestId.get());
    own.get("/boom", async () => requestId.get());
    own.setErrorHandler((error: Error, _request, reply) => {
      reply.code(500).send(error.message);
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      await expectGeneratedIds(url);
    } finally {
      await own.close();
    }
  });

  it("generateId: (request) => request.id makes requestId Fastify's own id", async () => {
    let count = 0;
    const own = Fastify({ genReqId: () => `fastify-${++count}` });
    await own.register(contextPlugin, { generateId: (request) => request.id });
    own.get("/", async (request) => ({ id: requestId.get(), fastify: request.id }));
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const reply = await send(url, "/");
      const body = JSON.parse(reply.body) as { id: string; fastify: string };
      assert.match(body.id, /^fastify-\d+$/);
      assert.equal(body.id, body.fastify);
      assert.equal(reply.headers["x-request-id"], body.id);
      const passed = await send(url, "/", { headers: { "x-request-id": "from-client" } });
      assert.equal((JSON.parse(passed.body) as { id: string }).id, "from-client");
    } finally {
      await own.close();
    }
    // With Fastify's requestIdHeader, request.id is whatever the client sent:
    // a malformed one is replaced, as an incoming id would be.
    const headed = Fastify({ requestIdHeader: "x-request-id" });
    await headed.register(contextPlugin, {
      trustHeader: false,
      generateId: (request) => request.id,
    });
    headed.get("/", async (request) => ({ id: requestId.get(), fastify: request.id }));
    const headedUrl = await headed.listen({ port: 0, host: "127.0.0.1" });
    try {
      const same = await send(headedUrl, "/", { headers: { "x-request-id": "edge-7" } });
      assert.deepEqual(JSON.parse(same.body), { id: "edge-7", fastify: "edge-7" });
      const forged = await send(headedUrl, "/", { headers: { "x-request-id": "a b" } });
      const body = JSON.parse(forged.body) as { id: string; fastify: string };
      assert.equal(body.fastify, "a b");
      assert.match(body.id, UUID);
      assert.equal(forged.headers["x-request-id"], body.id);
    } finally {
      await headed.close();
    }
  });

  it("Fastify's logger with contextMixin: its 'incoming request' line comes before any onRequest hook, so has reqId and no request values; request.log and 'request completed' lines have them (pinned)", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const own = Fastify({
      loggerInstance: pino(
        { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user }) },
        { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
      ),
    });
    await own.register(contextPlugin, {
      trustHeader: false,
      generateId: (request) => request.id,
      seed,
    });
    own.get("/", async (request) => {
      await randomDelay();
      request.log.info("in handler");
      return "ok";
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => send(url, "/", { headers: { "x-user": `u${i}` } })),
      );
    } finally {
      await own.close();
    }
    const byMessage = (msg: string) => lines.filter((line) => line.msg === msg);
    assert.equal(byMessage("incoming request").length, 10);
    for (const line of byMessage("incoming request")) {
      assert.equal(typeof line.reqId, "string");
      assert.equal(line.requestId, undefined);
      assert.equal(line.user, undefined);
    }
    assert.deepEqual(
      byMessage("in handler")
        .map((line) => line.user)
        .sort(),
      Array.from({ length: 10 }, (_, i) => `u${i}`).sort(),
    );
    for (const msg of ["in handler", "request completed"]) {
      const some = byMessage(msg);
      assert.equal(some.length, 10, msg);
      for (const line of some) assert.equal(line.requestId, line.reqId, msg);
      assert.deepEqual(
        some.map((line) => `${line.reqId}:${line.user}`).sort(),
        byMessage("in handler")
          .map((line) => `${line.reqId}:${line.user}`)
          .sort(),
      );
    }
  });

  it("echo: false and a custom header; bad options fail register", async () => {
    const own = Fastify();
    await own.register(contextPlugin, { echo: false, header: "X-Correlation-Id" });
    own.get("/", async () => requestId.get());
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const reply = await send(url, "/", { headers: { "x-correlation-id": "c-3" } });
      assert.equal(reply.body, "c-3");
      assert.equal(reply.headers["x-correlation-id"], undefined);
    } finally {
      await own.close();
    }
    const bad = Fastify();
    await assert.rejects(async () => {
      await bad.register(contextPlugin, { echo: 1 as never });
    }, TypeError);
    for (const options of [{ trustHeader: "no" }, { generateId: "uuid" }]) {
      const wrong = Fastify();
      await assert.rejects(async () => {
        await wrong.register(contextPlugin, options as never);
      }, /options\.(trustHeader|generateId)/);
      await wrong.close().catch(() => {});
    }
    await bad.close().catch(() => {});
  });

  it("applies to the whole app, encapsulated plugins included, and is named for hasPlugin and dependencies", async () => {
    const own = Fastify();
    await own.register(contextPlugin);
    // An encapsulated child: an encapsulated contextPlugin's hooks would not reach it.
    await own.register(async (child) => {
      child.get("/child", async () => ({ id: requestId.get(), user: user.get("none") }));
    });
    // A plugin that declares contextvars as a dependency registers without error.
    const dependent = Object.assign(async () => {}, {
      [Symbol.for("skip-override")]: true,
      [Symbol.for("plugin-meta")]: { name: "needs-context", dependencies: ["contextvars"] },
    });
    await own.register(dependent);
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      assert.equal(own.hasPlugin("contextvars"), true);
      const reply = await send(url, "/child", { headers: { "x-request-id": "req-child" } });
      assert.deepEqual(JSON.parse(reply.body), { id: "req-child", user: "none" });
      assert.equal(reply.headers["x-request-id"], "req-child");
    } finally {
      await own.close();
    }
    // The declared Fastify range is checked by register, as fastify-plugin's would be.
    const meta = (contextPlugin as unknown as Record<symbol, unknown>)[Symbol.for("plugin-meta")];
    assert.deepEqual(meta, { fastify: "5.x", name: "contextvars" });
  });

  it("a plugin that depends on contextvars fails register when contextvars is missing", async () => {
    const own = Fastify();
    const dependent = Object.assign(async () => {}, {
      [Symbol.for("plugin-meta")]: { name: "needs-context", dependencies: ["contextvars"] },
    });
    await assert.rejects(async () => {
      await own.register(dependent);
    }, /contextvars/);
    await own.close().catch(() => {});
  });

  it("the client-gone signal of docs/integrations.md: POSTs whose clients wait finish their TaskGroups, a client that leaves cancels its own, each child in its own Context", async () => {
    // As the docs' snippet: a controller aborted from reply.raw's close, set
    // as a var by an onRequest hook after the plugin's. request.signal would
    // be aborted by then in every POST below (pinned in test/threads/requests.test.ts).
    const clientGone = new ContextVar<AbortSignal>("clientGone");
    const row = new ContextVar<string>("row");
    const own = Fastify();
    await own.register(contextPlugin, { seed });
    own.addHook("onRequest", (_request, reply, done) => {
      const controller = new AbortController();
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) controller.abort();
      });
      clientGone.set(controller.signal);
      done();
    });
    const cancelled: string[] = [];
    const outcomes = new Map<string, string>();
    let childrenStarted = () => {};
    const leaving = new Promise<void>((resolve) => {
      childrenStarted = resolve;
    });
    own.post("/import", { bodyLimit: 1 << 20 }, async (request) => {
      const rows = (request.body as { rows: string[] }).rows;
      const id = requestId.get();
      // Read at the start, as passing it to the group would (Fastify makes it when first read).
      const requestSignal = request.signal;
      try {
        await taskGroup(
          (group) => {
            for (const name of rows) {
              group.createTask(async (signal) => {
                row.set(name);
                signal.addEventListener("abort", () => {
                  cancelled.push(`${requestId.get()} ${row.get()} ${user.get()}`);
                });
                if (id === "leaves") childrenStarted();
                await sleep(id === "leaves" ? 10_000 : 20, undefined, { signal }).catch(() => {});
              });
            }
          },
          { signal: clientGone.get() },
        );
        outcomes.set(
          id,
          `imported ${rows.length}, request.signal aborted: ${requestSignal.aborted}`,
        );
        return { imported: rows.length };
      } catch (error) {
        outcomes.set(id, `${(error as Error).name} in ${requestId.get()} ${user.get()}`);
        throw error;
      }
    });
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    try {
      const body = (n: number) =>
        JSON.stringify({ rows: Array.from({ length: n }, (_, i) => `r${i}`) });
      const left = httpRequest(`${url}/import`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "leaves", "x-user": "lea" },
      });
      left.on("error", () => {});
      left.end(body(3));
      const waiting = Array.from({ length: 20 }, (_, i) =>
        send(url, "/import", {
          body: body(5),
          chunks: 2,
          headers: {
            "content-type": "application/json",
            "x-request-id": `waits-${i}`,
            "x-user": `u${i}`,
          },
        }),
      );
      await leaving;
      left.destroy();
      const replies = await Promise.all(waiting);
      for (const reply of replies) assert.equal(reply.body, JSON.stringify({ imported: 5 }));
      for (let i = 0; i < 200 && !outcomes.has("leaves"); i++) await sleep(5);
      assert.equal(outcomes.get("leaves"), "AbortError in leaves lea");
      assert.deepEqual(cancelled.sort(), ["leaves r0 lea", "leaves r1 lea", "leaves r2 lea"]);
      for (let i = 0; i < 20; i++) {
        assert.equal(outcomes.get(`waits-${i}`), "imported 5, request.signal aborted: true");
      }
    } finally {
      await own.close();
    }
  });
});
