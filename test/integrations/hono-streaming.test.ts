/**
 * Hono 4 responses written after the handler returned, below
 * `contextMiddleware()`: the `stream()`, `streamText()` and `streamSSE()`
 * helpers of `hono/streaming` (their callbacks, `onError` and `onAbort`),
 * and a web `ReadableStream` body whose `pull` runs as the server reads it
 * (`new Response(readable)`, `c.body(readable)`). Served both ways the
 * middleware meets a request (test/helpers/hono-servers.ts), to real
 * clients: node:http, and fetch where one goes away mid-stream.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bind, Context, ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { Hono } from "hono";
import { stream, streamSSE, streamText } from "hono/streaming";
import { honoPaths, serveHono } from "../helpers/hono-servers.ts";
import { abortAfterFirstChunk, keepAliveAgent, randomDelay, send } from "../helpers/http.ts";
import { asyncStage, leak, seedUser, stage, user } from "../helpers/request-scenario.ts";

/** Set in the Context the server is made and listens in, and nowhere else. */
const where = new ContextVar<string>("hono-streaming.where");
/** Set by whatever produces a body, to see where its sets land. */
const producedBy = new ContextVar<string>("hono-streaming.producedBy");

/** The request's values where a chunk is written, and whether the handler had returned. */
function line(n: number, returned: boolean): string {
  return `${n}:${requestId.get("<none>")}|${user.get("<none>")}|${stage.get("<none>")}|${returned ? "after" : "before"}`;
}

/** Waits a random 0–2 ms, by a timer or an immediate. */
function pause(n: number): Promise<void> {
  return n % 2 === 0 ? randomDelay(2) : new Promise((resolve) => setImmediate(resolve));
}

/** What each `/abort/*` route's onAbort callback read, by request id. */
const aborted = new Map<string, Promise<string>>();

function buildApp(): Hono {
  const app = new Hono();
  app.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
  app.use("/streams/*", async (_c, next) => {
    await asyncStage();
    await next();
  });
  // Three lines each, with pauses before every write; the callbacks set
  // `leak` at the end, which must stay with their own request.
  app.get("/streams/stream", (c) => {
    let returned = false;
    const response = stream(c, async (out) => {
      for (let n = 0; n < 3; n++) {
        await pause(n);
        await out.write(`${line(n, returned)}\n`);
      }
      leak.set("set in a stream() callback");
    });
    returned = true;
    return response;
  });
  app.get("/streams/text", (c) => {
    let returned = false;
    const response = streamText(c, async (out) => {
      for (let n = 0; n < 3; n++) {
        await out.sleep(n);
        await pause(n + 1);
        await out.writeln(line(n, returned));
      }
      leak.set("set in a streamText() callback");
    });
    returned = true;
    return response;
  });
  app.get("/streams/sse", (c) => {
    let returned = false;
    const response = streamSSE(c, async (out) => {
      for (let n = 0; n < 3; n++) {
        await pause(n);
        await out.writeSSE({ data: line(n, returned) });
      }
      leak.set("set in a streamSSE() callback");
    });
    returned = true;
    return response;
  });
  app.get("/peek", (c) => c.text(`${leak.get("unset")}|${stage.get("unset")}`));

  // A throw after the first chunk: the onError callback writes what it reads.
  app.get("/streams/stream-error", (c) =>
    stream(
      c,
      async (out) => {
        await out.write(`${line(0, true)}\n`);
        await randomDelay(2);
        throw new Error("thrown in stream()");
      },
      async (error, out) => {
        await randomDelay(2);
        await out.write(`onError ${error.message}: ${line(1, true)}\n`);
      },
    ),
  );
  app.get("/streams/sse-error", (c) =>
    streamSSE(
      c,
      async (out) => {
        await out.writeSSE({ data: line(0, true) });
        await randomDelay(2);
        throw new Error("thrown in streamSSE()");
      },
      async (error, out) => {
        await randomDelay(2);
        await out.writeSSE({ event: "onError", data: `${error.message}: ${line(1, true)}` });
      },
    ),
  );

  // Writes until the client goes away; reports what onAbort read.
  for (const kind of ["text", "sse"] as const) {
    app.get(`/abort/${kind}`, (c) => {
      const id = requestId.get();
      let report = (_seen: string) => {};
      aborted.set(id, new Promise<string>((resolve) => (report = resolve)));
      const callback = async (
        out: {
          aborted: boolean;
          onAbort(fn: () => void): void;
          sleep(ms: number): Promise<unknown>;
        },
        write: () => Promise<unknown>,
      ) => {
        let seen = "(not called)";
        out.onAbort(() => {
          seen = `${requestId.get("<none>")}|${user.get("<none>")}`;
        });
        for (let i = 0; i < 1000 && !out.aborted; i++) {
          await write();
          await out.sleep(2);
        }
        report(seen);
      };
      return kind === "text"
        ? streamText(c, (out) => callback(out, () => out.writeln("x".repeat(64))))
        : streamSSE(c, (out) => callback(out, () => out.writeSSE({ data: "x".repeat(64) })));
    });
  }

  // Three lines, each made by a pull and setting `producedBy` there; the
  // first pull runs as the stream is made, the others as the server reads.
  const lazyBody = (bound = false) => {
    let sent = 0;
    const pull = (controller: ReadableStreamDefaultController<Uint8Array>) => {
      producedBy.set(`body of ${requestId.get("<none>")}`);
      controller.enqueue(
        new TextEncoder().encode(
          `${requestId.get("<none>")}|${user.get("<none>")}|${where.get("<none>")}\n`,
        ),
      );
      if (++sent === 3) controller.close();
    };
    return new ReadableStream<Uint8Array>({ pull: bound ? bind(pull) : pull });
  };
  app.get("/lazy/response", () => new Response(lazyBody()));
  app.get("/lazy/body", (c) => c.body(lazyBody()));
  app.get("/lazy/bound", (c) => c.body(lazyBody(true)));
  return app;
}

/** The three lines a streaming route answers, as the client reads them. */
function expectedLines(route: string, id: string, who: string): string {
  const lines = [0, 1, 2].map((n) => `${n}:${id}|${who}|mw:${who}|after`);
  return route === "/streams/sse"
    ? lines.map((l) => `data: ${l}\n\n`).join("")
    : lines.map((l) => `${l}\n`).join("");
}

/** A line the lazy body writes in the request's Context, or outside it. */
const IN_REQUEST = "lazy-1|lu|<none>\n";
const OUTSIDE = "<none>|<none>|the server's Context\n";

/**
 * Serves one /lazy request from a server made and listening in a Context of
 * its own where `where` is set; returns the body and what `producedBy` holds
 * in that Context afterwards.
 */
async function serveLazyBody(
  path: (typeof honoPaths)[number],
  route: string,
  wrapped: boolean,
): Promise<{ body: string; landed: string }> {
  const serverContext = new Context();
  const served = await serverContext.run(() => {
    where.set("the server's Context");
    return serveHono(buildApp(), path, wrapped ? withContext : undefined);
  });
  try {
    const reply = await send(served.base, route, {
      headers: { "x-request-id": "lazy-1", "x-user": "lu" },
    });
    assert.equal(reply.status, 200, reply.body);
    return { body: reply.body, landed: serverContext.run(() => producedBy.get("unset")) };
  } finally {
    await served.close();
  }
}

for (const path of honoPaths) {
  describe(`contextvars/hono streamed responses (${path})`, { timeout: 60_000 }, () => {
    it("stream(), streamText() and streamSSE(): 100 concurrent requests, every chunk written after awaits and timers, after the handler returned, sees its own request's values; what the callbacks set stays there", async () => {
      const served = await serveHono(buildApp(), path);
      const agent = keepAliveAgent(20);
      const routes = ["/streams/stream", "/streams/text", "/streams/sse"];
      try {
        const replies = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            send(served.base, routes[i % 3] as string, {
              agent,
              headers: { "x-request-id": `st-${i}`, "x-user": `u${i}` },
            }),
          ),
        );
        replies.forEach((reply, i) => {
          const route = routes[i % 3] as string;
          assert.equal(reply.status, 200, reply.body);
          assert.equal(reply.headers["x-request-id"], `st-${i}`);
          assert.equal(reply.body, expectedLines(route, `st-${i}`, `u${i}`), route);
        });
        // Later requests on the same sockets, and the test's own Context, see none of the callbacks' sets.
        const peeks = await Promise.all(
          Array.from({ length: 20 }, () => send(served.base, "/peek", { agent })),
        );
        for (const peek of peeks) assert.equal(peek.body, "unset|unset");
        assert.equal(leak.get("unset"), "unset");
      } finally {
        agent.destroy();
        await served.close();
      }
    });

    it("the onError callback of stream() and streamSSE() sees the request's values", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        const headers = { "x-request-id": "err-1", "x-user": "eu" };
        const plain = await send(served.base, "/streams/stream-error", { headers });
        assert.equal(
          plain.body,
          "0:err-1|eu|mw:eu|after\nonError thrown in stream(): 1:err-1|eu|mw:eu|after\n",
        );
        const sse = await send(served.base, "/streams/sse-error", { headers });
        assert.equal(
          sse.body,
          "data: 0:err-1|eu|mw:eu|after\n\n" +
            "event: onError\ndata: thrown in streamSSE(): 1:err-1|eu|mw:eu|after\n\n" +
            "event: error\ndata: thrown in streamSSE()\n\n",
        );
      } finally {
        await served.close();
      }
    });

    for (const route of ["/lazy/response", "/lazy/body"]) {
      it(`a web ReadableStream body (${route}): its first pull, made in the handler, sees the request's values`, async () => {
        const { body } = await serveLazyBody(path, route, false);
        assert.equal(body.split("\n").length, 4, body);
        assert.ok(body.startsWith(IN_REQUEST), body);
      });

      it(`a web ReadableStream body (${route}) without withContext: the pulls the server's reads make see the Context the server listens in, where their sets land (pinned)`, async () => {
        const { body, landed } = await serveLazyBody(path, route, false);
        // node-server reads the body after app.fetch has returned, outside
        // the request's run: the set lands in the server's Context, which no
        // request copies (they copy the root), but which is the root Context
        // itself for a server started at the top level.
        assert.equal(body, `${IN_REQUEST}${OUTSIDE}${OUTSIDE}`);
        assert.equal(landed, "body of <none>");
      });
    }

    it("a web ReadableStream body whose pull is bound in the handler: every pull sees the request, and its sets stay there", async () => {
      const { body, landed } = await serveLazyBody(path, "/lazy/bound", false);
      assert.equal(body, `${IN_REQUEST}${IN_REQUEST}${IN_REQUEST}`);
      assert.equal(landed, "unset");
    });

    // Both need Node's request and response, which only node-server's bindings give the middleware.
    if (path !== "node-server") return;

    it("a web ReadableStream body under withContext(getRequestListener(app.fetch)): every pull sees the request, and its sets stay there", async () => {
      for (const route of ["/lazy/response", "/lazy/body"]) {
        const { body, landed } = await serveLazyBody(path, route, true);
        assert.equal(body, `${IN_REQUEST}${IN_REQUEST}${IN_REQUEST}`, route);
        assert.equal(landed, "unset", route);
      }
    });

    // The abort comes from Node's response, whose listeners the middleware
    // binds; hono-native.test.ts pins what the fetch path's runtimes do.
    it("a client that goes away mid-stream: the onAbort callback of streamText() and streamSSE() runs in the request's Context", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        const ids = ["ab-text-1", "ab-text-2", "ab-sse-1", "ab-sse-2"];
        await Promise.all(
          ids.map((id) =>
            abortAfterFirstChunk(`${served.base}/abort/${id.includes("sse") ? "sse" : "text"}`, id),
          ),
        );
        for (const id of ids) assert.equal(await aborted.get(id), `${id}|anonymous`);
      } finally {
        await served.close();
      }
    });
  });
}
