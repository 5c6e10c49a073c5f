import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { createServer, request as httpRequest, IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Context, ContextVar, copyContext, type Token } from "contextvars";
import {
  type NodeRequestLike,
  type NodeResponseLike,
  requestId,
  withContext,
} from "contextvars/http";
import { close, listen, randomDelay, send, sendJson, UUID } from "../helpers/http.ts";
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
import { nodeMajor } from "../runtimes/runtime.ts";

// Set at the root before any server exists: every request's Context is a copy of the root.
const service = new ContextVar<string>("service");
service.set("orders-api");

function json(res: ServerResponse, value: unknown, status = 200): void {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(value));
}

async function routes(req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    if (req.url === "/reject") await setThenReject();
    await asyncStage();
    switch (req.url) {
      case "/concurrent":
        return json(res, await observe());
      case "/body": {
        const body: unknown = JSON.parse(await text(req));
        return json(res, { id: requestId.get(), user: user.get(), stage: stage.get(), body });
      }
      case "/raw": {
        const events: string[] = [];
        const seen = () => events.push(`${requestId.get()}|${user.get()}`);
        req.on("data", seen);
        req.on("end", () => {
          seen();
          json(res, { events });
        });
        return;
      }
      case "/id":
        return void res.end(requestId.get());
      case "/throw":
        return setThenThrow();
      case "/peek":
        return json(res, { leak: leak.get("unset") });
      case "/stream":
        res.on("finish", recordFinish);
        Readable.from(streamChunks()).pipe(res);
        return;
      case "/where":
        return json(res, { service: service.get(), leak: leak.get("unset") });
      default:
        return json(res, { error: "not found" }, 404);
    }
  } catch {
    json(res, { id: requestId.get(), leak: leak.get() }, 500);
  }
}

describe("contextvars/http withContext", { timeout: 60_000 }, () => {
  const seed = (req: IncomingMessage) => seedUser(req.headers["x-user"]);
  // Created and listening inside a run with `leak` set: requests must not see it.
  const server = leak.run("the server's own Context", () =>
    createServer(withContext(routes, { seed })),
  );
  let base = "";
  before(async () => {
    base = await leak.run("listen", () => listen(server));
  });
  after(() => close(server));

  it("1,000 concurrent requests each see only their own values", () => expectNoCrossTalk(base));
  it("a body read with await keeps the context", () => expectBodyKeepsContext(base));
  it("req 'data'/'end' listeners see the request's values", () => expectDataListeners(base));
  it("a throw or rejection leaves nothing for the next request", () => expectNothingLeaks(base));
  it("a piped stream and res 'finish' keep the context", () => expectStreaming(base));
  it("malformed ids are replaced, well-formed ones pass", () => expectIdHandling(base));

  it("each request runs in a copy of the root Context, not the server's", async () => {
    assert.deepEqual(await sendJson(base, "/where"), { service: "orders-api", leak: "unset" });
  });

  it("withContext(withContext(listener)) gives one Context per request", async () => {
    const marker = new ContextVar<string>("marker");
    const inner = withContext((_req, res) => {
      marker.reset(token as Token<string>); // throws ERR_TOKEN_CONTEXT_MISMATCH if this is another Context
      res.end(`${requestId.get()} ${user.get()} ${copyContext().has(marker)}`);
    });
    let token: Token<string> | undefined;
    const outer = createServer(
      withContext(
        (req, res) => {
          token = marker.set("outer");
          inner(req, res);
        },
        { seed },
      ),
    );
    const url = await listen(outer);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "twice", "x-user": "ann" } });
      assert.equal(reply.body, "twice ann false");
    } finally {
      await close(outer);
    }
  });

  it("echo: false and a custom header", async () => {
    const quiet = createServer(
      withContext((_req, res) => res.end(requestId.get()), { echo: false, header: "X-Trace" }),
    );
    const url = await listen(quiet);
    try {
      const reply = await send(url, "/", { headers: { "x-trace": "t-1", "x-request-id": "no" } });
      assert.equal(reply.body, "t-1");
      assert.equal(reply.headers["x-trace"], undefined);
      assert.equal(reply.headers["x-request-id"], undefined);
    } finally {
      await close(quiet);
    }
  });

  it("a listener after one that already answered runs in a Context, with no echo", async () => {
    const seen: string[] = [];
    const server = createServer((_req, res) => res.end("first"));
    server.on(
      "request",
      withContext(() => {
        seen.push(requestId.get());
      }),
    );
    const url = await listen(server);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "late-1" } });
      assert.equal(reply.body, "first");
      assert.equal(reply.headers["x-request-id"], undefined);
      assert.deepEqual(seen, ["late-1"]);
    } finally {
      await close(server);
    }
  });

  it("on Node 20, writeHead's flat array keeps only the last value of a repeated name once the id is echoed (nodejs/node#50387); an object with an array value, or echo: false, keeps them all (pinned)", async () => {
    const cookies = ["a=1", "b=2"];
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      const flat = cookies.flatMap((cookie) => ["set-cookie", cookie]);
      res.writeHead(200, req.url === "/flat" ? flat : { "set-cookie": cookies });
      res.end();
    };
    const servers = [
      createServer(withContext(listener)),
      createServer(withContext(listener, { echo: false })),
    ];
    const [echoed = "", quiet = ""] = await Promise.all(servers.map((s) => listen(s)));
    try {
      const sent = async (url: string, path: string) =>
        (await send(url, path)).headers["set-cookie"];
      assert.deepEqual(await sent(echoed, "/flat"), nodeMajor === 20 ? ["b=2"] : cookies);
      assert.deepEqual(await sent(echoed, "/object"), cookies);
      assert.deepEqual(await sent(quiet, "/flat"), cookies);
    } finally {
      await Promise.all(servers.map((s) => close(s)));
    }
  });

  it("trustHeader: false, generateId(req): ids are generated from the listener's req", async () => {
    const generateId = pathGenerator((req: IncomingMessage) => req.url ?? "");
    const own = createServer(
      withContext((_req, res) => res.end(requestId.get()), { trustHeader: false, generateId }),
    );
    const url = await listen(own);
    try {
      // node:http has no error handling: a throw from generateId leaves the
      // listener, as any throw from it would (tested below), so no /boom here.
      await expectGeneratedIds(url, false);
    } finally {
      await close(own);
    }
  });

  it("a throw from generateId leaves the listener, before anything runs or is echoed", () => {
    let ran = false;
    const boom = new Error("out of ids");
    const listener = withContext<NodeRequestLike, NodeResponseLike>(
      () => {
        ran = true;
      },
      {
        generateId: () => {
          throw boom;
        },
      },
    );
    const req = Object.assign(new EventEmitter(), { headers: {}, rawHeaders: [] });
    const headers = new Map<string, string>();
    const res = Object.assign(new EventEmitter(), {
      setHeader: (name: string, value: string) => headers.set(name, value),
    });
    assert.throws(
      () => listener(req, res),
      (error: unknown) => error === boom,
    );
    assert.equal(ran, false);
    assert.equal(headers.size, 0);
  });

  it("a request-like without rawHeaders: the id is read from req.headers and echoed", () => {
    let seen = "";
    const listener = withContext<NodeRequestLike, NodeResponseLike>(() => {
      seen = requestId.get();
    });
    const req = Object.assign(new EventEmitter(), { headers: { "x-request-id": "from-headers" } });
    const headers = new Map<string, string>();
    const res = Object.assign(new EventEmitter(), {
      setHeader: (name: string, value: string) => headers.set(name, value),
    });
    listener(req, res);
    assert.equal(seen, "from-headers");
    assert.equal(headers.get("x-request-id"), "from-headers");
  });

  it("an IncomingMessage built in process, its headers assigned and no rawHeaders: the id is read from req.headers", () => {
    // serverless-http assigns `headers` to an IncomingMessage it makes
    // itself: Node leaves its rawHeaders empty.
    const req = new IncomingMessage(new Socket());
    req.headers = { "x-request-id": "built-1" };
    const res = new ServerResponse(req);
    let seen = "";
    withContext(() => {
      seen = requestId.get();
    })(req, res);
    assert.equal(seen, "built-1");
    assert.equal(res.getHeader("x-request-id"), "built-1");
  });

  it("an id header sent twice, the first value empty, is malformed: a fresh UUID", () => {
    let seen = "";
    const listener = withContext<NodeRequestLike, NodeResponseLike>(() => {
      seen = requestId.get();
    });
    const req = Object.assign(new EventEmitter(), {
      headers: { "x-request-id": ", forged" },
      rawHeaders: ["X-Request-Id", "", "X-Request-Id", "forged"],
    });
    const res = Object.assign(new EventEmitter(), { setHeader: () => {} });
    listener(req, res);
    assert.match(seen, UUID);
  });

  it("a preflight naming the id header among the headers it asks for gets a fresh UUID, not the next header's name", async () => {
    // rawHeaders alternates names and values: a value that spells the header's
    // name, as Access-Control-Request-Headers does, is not a name.
    const server = createServer(withContext((_req, res) => res.end(requestId.get())));
    const url = await listen(server);
    try {
      const reply = await send(url, "/", {
        method: "OPTIONS",
        headers: { "access-control-request-headers": "x-request-id", origin: "http://a.test" },
      });
      assert.match(reply.body, UUID);
      assert.equal(reply.headers["x-request-id"], reply.body);
    } finally {
      await close(server);
    }
  });

  it("a res 'close' listener runs in the request's Context when the client aborts", async () => {
    const seen: string[] = [];
    let reached!: () => void;
    const inListener = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const server = createServer(
      withContext((_req, res) => {
        res.on("close", () => seen.push(requestId.get("<none>")));
        reached(); // never answers
      }),
    );
    const url = await listen(server);
    try {
      const req = httpRequest(url, { headers: { "x-request-id": "abort-1" } });
      req.on("error", () => {});
      req.end();
      await inListener;
      req.destroy();
      for (let i = 0; i < 100 && seen.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.deepEqual(seen, ["abort-1"]);
    } finally {
      await close(server);
    }
  });

  it("a request sent with Expect: 100-continue reaches a 'checkContinue' listener, which needs withContext too (as restify's does)", async () => {
    // Node emits checkContinue instead of request when the server listens for it.
    const listener = async (req: IncomingMessage, res: ServerResponse) => {
      if (req.headers.expect !== undefined) res.writeContinue();
      const body = await text(req);
      await randomDelay();
      stage.set(`mw:${user.get("<none>")}`);
      res.end(`${requestId.get("<none>")}|${user.get("<none>")}|${stage.get("<none>")}|${body}`);
    };
    const post = (url: string, i: number) =>
      new Promise<string>((resolve, reject) => {
        const expect = i % 2 === 0;
        const req = httpRequest(`${url}/`, {
          method: "POST",
          headers: {
            "x-request-id": `c-${i}`,
            "x-user": `u${i}`,
            ...(expect ? { expect: "100-continue" } : {}),
          },
        });
        req.on("response", (res) => text(res).then(resolve, reject));
        req.on("error", reject);
        if (expect) req.on("continue", () => req.end(`b${i}`));
        else req.end(`b${i}`);
      });
    const listening = new Context();
    const run = async (wrapBoth: boolean) => {
      const server = createServer(withContext(listener, { seed }));
      server.on("checkContinue", wrapBoth ? withContext(listener, { seed }) : listener);
      const url = await listening.run(() => listen(server));
      try {
        return await Promise.all(Array.from({ length: 60 }, (_, i) => post(url, i)));
      } finally {
        await close(server);
      }
    };
    const own = (i: number) => `c-${i}|u${i}|mw:u${i}|b${i}`;
    assert.deepEqual(
      await run(true),
      Array.from({ length: 60 }, (_, i) => own(i)),
    );
    assert.equal(listening.size, 0);
    // Only `request` wrapped: the 30 Expect requests run in the Context the server listens in.
    const replies = await run(false);
    replies.forEach((reply, i) => {
      if (i % 2 === 1) assert.equal(reply, own(i));
      else assert.match(reply, new RegExp(`^<none>\\|<none>\\|mw:<none>\\|b${i}$`));
    });
    assert.equal(listening.get(stage), "mw:<none>", "their sets landed where the server listens");
  });

  it("returns what the listener returns", async () => {
    const boom = new Error("boom");
    let returned: unknown;
    const server = createServer((req, res) => {
      returned = withContext(async () => {
        await null;
        res.end();
        throw boom;
      })(req, res);
      (returned as Promise<unknown>).catch(() => {}); // looked at below, after the reply
    });
    const url = await listen(server);
    try {
      await send(url, "/");
      assert.ok(returned instanceof Promise);
      await assert.rejects(returned as Promise<unknown>, (e) => e === boom);
    } finally {
      await close(server);
    }
  });

  it("under captureRejections, a rejected listener is answered 500, as without withContext", async () => {
    // In a child process: captureRejections is process-wide, read when a server is made.
    const script = `import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import { withContext } from "contextvars/http";
EventEmitter.captureRejections = true;
const listener = async () => { await null; throw new Error("boom"); };
const statuses = [];
for (const server of [createServer(listener), createServer(withContext(listener))]) {
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const response = await fetch(\`http://127.0.0.1:\${server.address().port}/\`, { signal: AbortSignal.timeout(5000) });
  statuses.push(response.status);
  server.closeAllConnections();
  server.close();
}
console.log(JSON.stringify(statuses));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module", "-e", script],
      { cwd: fileURLToPath(new URL("../..", import.meta.url)) },
    );
    assert.deepEqual(JSON.parse(stdout), [500, 500]);
  });

  it("rejects bad options and a non-function listener", () => {
    assert.throws(() => withContext(42 as never), TypeError);
    assert.throws(() => withContext(routes, { header: "bad header" }), TypeError);
    assert.throws(() => withContext(routes, { echo: "yes" as never }), TypeError);
    assert.throws(() => withContext(routes, { seed: "user" as never }), TypeError);
    assert.throws(() => withContext(routes, { trustHeader: 0 as never }), /options\.trustHeader/);
    assert.throws(
      () => withContext(routes, { generateId: "uuid" as never }),
      /options\.generateId/,
    );
  });
});
