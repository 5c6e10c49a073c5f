/**
 * HTTP/2: many requests multiplexed as streams over one session, one TCP
 * connection (cleartext h2c on 127.0.0.1, a real `http2.connect` client).
 * The session reads and writes its socket outside any request, and
 * node:http2 emits a request's `data`/`end` and a response's
 * `finish`/`close` from there: the sharpest test that every request still
 * runs in its own Context. The same checks run on node:http2's
 * compatibility API under `withContext`, Fastify with `http2: true`, Hono on
 * @hono/node-server with `createServer: http2.createServer`, and Koa on the
 * compatibility API (`http2.createServer(app.callback())`). Express does not
 * run there (its `req` takes node:http's IncomingMessage prototype, whose
 * stream reads fail on an Http2ServerRequest with an unhandled `error` that
 * ends the process), so it has no test here.
 *
 * Every app serves the routes of helpers/request-scenario.ts (`/body`,
 * `/raw`, `/id`, `/throw`, `/reject`, `/peek`), in its own idiom, with the
 * async middleware on every route, and:
 *
 *   GET /together   waits until `together` has all its requests in a
 *                   handler at once, then answers `observe()`
 *   GET /listeners  adds `finish` and `close` listeners to Node's response
 *                   and `close` to its request, which log to `events`; the
 *                   `finish` one sets `leak`
 *   GET /where      answers { service, leak }: what the request's Context
 *                   took from the root
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import type { EventEmitter } from "node:events";
import {
  type ClientHttp2Session,
  connect,
  createServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
} from "node:http2";
import type { AddressInfo } from "node:net";
import { text } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createAdaptorServer, type Http2Bindings } from "@hono/node-server";
import { bodyParser } from "@koa/bodyparser";
import { bind, ContextVar } from "contextvars";
import { contextPlugin } from "contextvars/fastify";
import * as honoIntegration from "contextvars/hono";
import { requestId, withContext } from "contextvars/http";
import * as koaIntegration from "contextvars/koa";
import Fastify, { type FastifyRequest } from "fastify";
import { Hono } from "hono";
import Koa from "koa";
import { randomDelay, UUID } from "../helpers/http.ts";
import {
  asyncStage,
  leak,
  type Observed,
  observe,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  user,
  type Values,
} from "../helpers/request-scenario.ts";
import { runtime } from "../runtimes/runtime.ts";

// Set at the root before any server exists: every request's Context is a copy of the root.
const service = new ContextVar<string>("service");
service.set("orders-api");

/** The id options each app is built with (seed is always `seedUser`). */
interface IdOptions {
  header?: string;
  echo?: boolean;
  trustHeader?: boolean;
}

type FrameworkName = "http" | "fastify" | "hono" | "koa";

// --- Gates: no fixed sleeps wait for anything below ----------------------

/** Every `arrive()` resolves once `count` requests have arrived: that many in a handler at once. */
function barrier(count: number): { arrive(): Promise<void> } {
  let arrived = 0;
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    arrive() {
      if (++arrived >= count) open();
      return opened;
    },
  };
}

let together = barrier(1);

/** Lines logged by request listeners and hooks, by request id; `until` waits for them. */
const events = new Map<string, string[]>();
const waiting = new Set<() => void>();

function record(key: string, line: string): void {
  const lines = events.get(key) ?? [];
  lines.push(line);
  events.set(key, lines);
  for (const check of [...waiting]) check();
}

function until(key: string, count: number): Promise<string[]> {
  return new Promise((resolve) => {
    const check = () => {
      const lines = events.get(key) ?? [];
      if (lines.length < count) return;
      waiting.delete(check);
      resolve([...lines].sort());
    };
    waiting.add(check);
    check();
  });
}

// --- What every app does with Node's own request and response ------------

/** GET /listeners: each listener logs what it sees; `finish` sets `leak` in the request's Context. */
function watchLifecycle(req: EventEmitter, res: EventEmitter): void {
  const id = requestId.get();
  const seen = (event: string) => `${event} ${requestId.get("<none>")} ${user.get("<none>")}`;
  res.on("finish", () => {
    record(id, `${seen("finish")} ${leak.get("unset")}`);
    leak.set(`set by finish of ${requestId.get("<none>")}`);
  });
  // After `finish`, in the same Context: it sees what `finish` set.
  res.once("close", () => record(id, `${seen("close")} ${leak.get("unset")}`));
  req.on("close", () => record(id, seen("request close")));
}

/** What GET /listeners logs for a request, sorted. */
function lifecycleOf(id: string, who: string): string[] {
  return [
    `close ${id} ${who} set by finish of ${id}`,
    `finish ${id} ${who} unset`,
    `request close ${id} ${who}`,
  ];
}

/** POST /raw: what `data` and `end` listeners on the request see. */
function rawEvents(req: EventEmitter): Promise<{ events: string[] }> {
  const seen: string[] = [];
  const push = () => seen.push(`${requestId.get()}|${user.get()}`);
  return new Promise((resolve) => {
    req.on("data", push);
    req.on("end", () => {
      push();
      resolve({ events: seen });
    });
  });
}

const where = () => ({ service: service.get("<none>"), leak: leak.get("unset") });
const failure = () => ({ id: requestId.get(), leak: leak.get() });
const bodyValues = (body: unknown) => ({
  id: requestId.get(),
  user: user.get(),
  stage: stage.get(),
  body,
});

async function arriveThenObserve(): Promise<Observed> {
  await together.arrive();
  return observe();
}

// --- The four apps ------------------------------------------------------

function httpApp(options: IdOptions): Http2Server {
  const json = (res: Http2ServerResponse, value: unknown, status = 200) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(value));
  };
  async function routes(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    try {
      await asyncStage();
      switch (req.url) {
        case "/together":
          return json(res, await arriveThenObserve());
        case "/body":
          return json(res, bodyValues(JSON.parse(await text(req))));
        case "/raw":
          return json(res, await rawEvents(req));
        case "/id":
          return void res.end(requestId.get());
        case "/throw":
          return setThenThrow();
        case "/reject":
          return await setThenReject(); // awaited: inside the try, so its rejection is caught
        case "/peek":
          return json(res, { leak: leak.get("unset") });
        case "/listeners":
          watchLifecycle(req, res);
          return void res.end("ok");
        case "/where":
          return json(res, where());
        default:
          return json(res, { error: "not found" }, 404);
      }
    } catch {
      json(res, failure(), 500);
    }
  }
  return createServer(
    withContext(routes, { ...options, seed: (req) => seedUser(req.headers["x-user"]) }),
  );
}

/** Set by the Fastify app's preHandler hook. Its hooks log under `hooks <x-request-id>`. */
const checked = new ContextVar<string>("checked");

async function fastifyApp(options: IdOptions): Promise<Http2Server> {
  const app = Fastify({ http2: true });
  const seed = (request: FastifyRequest) => seedUser(request.headers["x-user"]);
  await app.register(contextPlugin, { ...options, seed });
  app.setErrorHandler((_error, _request, reply) => {
    void reply.code(500).send(failure());
  });
  app.addHook("onRequest", asyncStage);
  app.addHook("preHandler", async () => {
    await randomDelay();
    checked.set(`preHandler:${stage.get()}`);
  });
  app.addHook("onSend", async (request, _reply, payload) => {
    await randomDelay();
    const id = requestId.get("<none>");
    record(`hooks ${request.headers["x-request-id"]}`, `onSend ${id} ${checked.get("<none>")}`);
    return payload;
  });
  // Fastify runs onResponse from its own response `finish` listener, added
  // before any onRequest hook; a var set here must stay in the request (set
  // on /together only: /listeners checks what its own `finish` listener sees).
  app.addHook("onResponse", async (request) => {
    const id = requestId.get("<none>");
    record(`hooks ${request.headers["x-request-id"]}`, `onResponse ${id} ${checked.get("<none>")}`);
    if (request.url === "/together") leak.set(`set by onResponse of ${id}`);
  });
  // A custom parser that listens on the request stream itself.
  app.addContentTypeParser("text/plain", (_request, payload, done) => {
    void rawEvents(payload).then((body) => done(null, body));
  });
  app.get("/together", arriveThenObserve);
  app.post("/body", { bodyLimit: 1 << 20 }, async (request) => bodyValues(request.body));
  app.post("/raw", { bodyLimit: 1 << 20 }, async (request) => request.body);
  app.get("/id", async () => requestId.get());
  app.get("/throw", setThenThrow);
  app.get("/reject", { preHandler: setThenReject }, async () => "unreachable");
  app.get("/peek", async () => ({ leak: leak.get("unset") }));
  app.get("/listeners", async (request, reply) => {
    watchLifecycle(request.raw, reply.raw);
    return "ok";
  });
  app.get("/where", async () => where());
  await app.ready();
  return app.server;
}

function honoApp(options: IdOptions): Http2Server {
  type Env = { Bindings: Http2Bindings };
  const app = new Hono<Env>();
  app.use(
    honoIntegration.contextMiddleware<Env>({
      ...options,
      seed: (c) => seedUser(c.req.header("x-user")),
    }),
  );
  app.onError((_error, c) => c.json(failure(), 500));
  app.use(async (_c, next) => {
    await asyncStage();
    await next();
  });
  app.get("/together", async (c) => c.json(await arriveThenObserve()));
  app.post("/body", async (c) => c.json(bodyValues(await c.req.json())));
  app.post("/raw", async (c) => c.json(await rawEvents(c.env.incoming)));
  app.get("/id", (c) => c.text(requestId.get()));
  app.get("/throw", setThenThrow);
  app.get("/reject", setThenReject);
  app.get("/peek", (c) => c.json({ leak: leak.get("unset") }));
  app.get("/listeners", (c) => {
    watchLifecycle(c.env.incoming, c.env.outgoing);
    return c.text("ok");
  });
  app.get("/where", (c) => c.json(where()));
  return createAdaptorServer({ fetch: app.fetch, createServer }) as Http2Server;
}

function koaApp(options: IdOptions): Http2Server {
  const app = new Koa();
  app.silent = true;
  app.use(
    koaIntegration.contextMiddleware({
      ...options,
      seed: (ctx) => seedUser(ctx.get("x-user") || undefined),
    }),
  );
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch {
      ctx.status = 500;
      ctx.body = failure();
    }
  });
  app.use(async (ctx, next) => {
    await asyncStage();
    if (ctx.path === "/raw") ctx.body = await rawEvents(ctx.req);
    else await next();
  });
  app.use(bodyParser({ jsonLimit: "1mb" }));
  app.use(async (ctx) => {
    switch (ctx.path) {
      case "/together":
        ctx.body = await arriveThenObserve();
        return;
      case "/body":
        ctx.body = bodyValues(ctx.request.body);
        return;
      case "/id":
        ctx.body = requestId.get();
        return;
      case "/throw":
        return setThenThrow();
      case "/reject":
        return setThenReject();
      case "/peek":
        ctx.body = { leak: leak.get("unset") };
        return;
      case "/listeners":
        watchLifecycle(ctx.req, ctx.res);
        ctx.body = "ok";
        return;
      case "/where":
        ctx.body = where();
        return;
    }
  });
  // Koa's types (@types/koa 3) take the compatibility API's request and response too.
  return createServer(app.callback());
}

const builders: Record<FrameworkName, (options: IdOptions) => Http2Server | Promise<Http2Server>> =
  { http: httpApp, fastify: fastifyApp, hono: honoApp, koa: koaApp };

// --- Servers and an HTTP/2 client --------------------------------------

interface RunningH2 {
  readonly base: string;
  /** The sessions the server has accepted: one per client connection. */
  readonly sessions: Set<ServerHttp2Session>;
  close(): Promise<void>;
}

/** Starts the app on 127.0.0.1, port 0, and closes every session it accepted on close. */
async function start(name: FrameworkName, options: IdOptions = {}): Promise<RunningH2> {
  const server = await builders[name](options);
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session: ServerHttp2Session) => sessions.add(session));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, () => resolve());
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async () => {
    for (const session of sessions) session.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { base, sessions, close };
}

async function open(base: string): Promise<ClientHttp2Session> {
  const session = connect(base);
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}

function shut(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed) resolve();
    else session.close(() => resolve());
  });
}

interface H2Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request as a new stream on `session`: GET, or POST when there is a body. */
function request(
  session: ClientHttp2Session,
  path: string,
  init: { headers?: OutgoingHttpHeaders; body?: string } = {},
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const method = init.body === undefined ? "GET" : "POST";
    const stream = session.request({ ":method": method, ":path": path, ...init.headers });
    let headers: IncomingHttpHeaders = {};
    let body = "";
    stream.on("response", (received) => {
      headers = received;
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      body += chunk;
    });
    stream.on("end", () => resolve({ status: Number(headers[":status"]), headers, body }));
    stream.on("error", reject);
    stream.end(init.body);
  });
}

async function requestJson<T>(
  session: ClientHttp2Session,
  path: string,
  init?: { headers?: OutgoingHttpHeaders; body?: string },
): Promise<T> {
  const reply = await request(session, path, init);
  assert.equal(reply.status, 200, `${path}: ${reply.body}`);
  return JSON.parse(reply.body) as T;
}

// --- The checks, on every app ------------------------------------------

for (const name of ["http", "fastify", "hono", "koa"] as const) {
  describe(`HTTP/2, ${name}: streams multiplexed on one session`, { timeout: 60_000 }, () => {
    let app: RunningH2;
    let session: ClientHttp2Session;
    before(async () => {
      // Made and listening inside a run with `leak` set: requests must not see it.
      app = await leak.run("the server's own Context", () => start(name));
      session = await open(app.base);
    });
    after(async () => {
      await shut(session);
      await app.close();
    });

    it("50 concurrent streams, all in a handler at once, each see only their own values", async () => {
      together = barrier(50);
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          request(session, "/together", {
            headers: { "x-request-id": `h2-${i}`, "x-user": `user-${i}` },
          }),
        ),
      );
      replies.forEach((reply, i) => {
        assert.equal(reply.status, 200, reply.body);
        assert.equal(reply.headers["x-request-id"], `h2-${i}`);
        const own: Values = { id: `h2-${i}`, user: `user-${i}`, stage: `mw:user-${i}` };
        assert.deepEqual(JSON.parse(reply.body), { ...own, deep: own });
      });
      assert.equal(app.sessions.size, 1, "every stream went over the one session");
    });

    it("bodies read with await keep the context, their frames interleaved", async () => {
      const pad = "x".repeat(40_000); // several DATA frames per stream
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          requestJson(session, "/body", {
            headers: {
              "content-type": "application/json",
              "x-request-id": `body-${i}`,
              "x-user": `poster-${i}`,
            },
            body: JSON.stringify({ n: i, pad }),
          }),
        ),
      );
      replies.forEach((got, i) => {
        assert.deepEqual(got, {
          id: `body-${i}`,
          user: `poster-${i}`,
          stage: `mw:poster-${i}`,
          body: { n: i, pad },
        });
      });
    });

    it("req 'data'/'end' listeners see the request's values, on every frame", async () => {
      const replies = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          requestJson<{ events: string[] }>(session, "/raw", {
            headers: {
              "content-type": "text/plain",
              "x-request-id": `raw-${i}`,
              "x-user": `u${i}`,
            },
            body: "y".repeat(200_000),
          }),
        ),
      );
      replies.forEach(({ events: seen }, i) => {
        assert.ok(seen.length >= 2, "at least one data event and the end event");
        assert.deepEqual(new Set(seen), new Set([`raw-${i}|u${i}`]));
      });
    });

    it("a throw or rejection leaves nothing for the next stream on the session", async () => {
      for (const path of ["/throw", "/reject"]) {
        const reply = await request(session, path, { headers: { "x-request-id": `fail${path}` } });
        assert.equal(reply.status, 500, path);
        assert.equal(reply.headers["x-request-id"], `fail${path}`, "the id is echoed on errors");
        assert.deepEqual(JSON.parse(reply.body), { id: `fail${path}`, leak: `set by ${path}` });
        assert.deepEqual(await requestJson(session, "/peek"), { leak: "unset" });
      }
      assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
      assert.equal(requestId.get("unset"), "unset");
    });

    it("response 'finish'/'close' and request 'close' listeners run in the request's own Context", async () => {
      const ids = Array.from({ length: 20 }, (_, i) => `${name}-life-${i}`);
      const replies = await Promise.all(
        ids.map((id, i) =>
          request(session, "/listeners", { headers: { "x-request-id": id, "x-user": `l${i}` } }),
        ),
      );
      for (const reply of replies) assert.equal(reply.status, 200, reply.body);
      for (const [i, id] of ids.entries()) {
        assert.deepEqual(await until(id, 3), lifecycleOf(id, `l${i}`));
      }
      // What `finish` set stayed in its request: not in the session's Context, not in the next request's.
      assert.deepEqual(await requestJson(session, "/peek"), { leak: "unset" });
      assert.equal(leak.get("unset"), "unset");
    });

    it("each request runs in a copy of the root Context, not the server's or the session's", async () => {
      assert.deepEqual(await requestJson(session, "/where"), {
        service: "orders-api",
        leak: "unset",
      });
    });

    it("malformed ids are replaced, well-formed ones pass and are echoed", async () => {
      const ok = ["abc-123", "0af7651916cd43dd8448eb211c80319c", "a.b:c=d+e/f_g", "x".repeat(200)];
      for (const id of ok) {
        const reply = await request(session, "/id", { headers: { "X-Request-Id": id } });
        assert.equal(reply.body, id);
        assert.equal(reply.headers["x-request-id"], id);
      }
      // Those with DEL or edge whitespace are dropped by the server's HTTP/2
      // layer, so reach the app as no id; so are CR and LF, where the client
      // sends them (Node's; Bun's refuses to: then they are never sent).
      const bad: (string | string[])[] = [
        "x".repeat(201),
        "abc\tdef",
        "abc def",
        '"quoted"',
        "caf\xe9",
        ["one", "two"],
        "",
        " padded ",
        "del\x7f",
      ];
      const unsendable = ["abc\ndef", "abc\r\nx-injected: 1"];
      for (const value of [...bad, ...unsendable]) {
        const sent = request(session, "/id", { headers: { "x-request-id": value } });
        const reply = await sent.catch((error: NodeJS.ErrnoException) => {
          if (!unsendable.includes(value as string)) throw error;
          assert.equal(error.code, "ERR_HTTP2_INVALID_HEADER_VALUE", "refused by the client");
          return undefined;
        });
        if (reply === undefined) continue;
        assert.equal(reply.status, 200, JSON.stringify(value));
        assert.match(reply.body, UUID, `replaced: ${JSON.stringify(value)}`);
        assert.equal(reply.headers["x-request-id"], reply.body);
      }
    });

    it("a custom header in any case, echo: false, trustHeader: false", async () => {
      const variants: [IdOptions, OutgoingHttpHeaders, (reply: H2Reply) => void][] = [
        [
          { header: "X-Correlation-Id" },
          { "x-correlation-id": "c-1", "x-request-id": "not-this" },
          (reply) => {
            assert.equal(reply.body, "c-1");
            assert.equal(reply.headers["x-correlation-id"], "c-1");
            assert.equal(reply.headers["x-request-id"], undefined);
          },
        ],
        [
          { header: "X-Trace", echo: false },
          { "x-trace": "t-1" },
          (reply) => {
            assert.equal(reply.body, "t-1");
            assert.equal(reply.headers["x-trace"], undefined);
          },
        ],
        [
          { trustHeader: false },
          { "x-request-id": "client-chosen" },
          (reply) => {
            assert.match(reply.body, UUID);
            assert.equal(reply.headers["x-request-id"], reply.body);
          },
        ],
      ];
      for (const [options, headers, check] of variants) {
        const own = await start(name, options);
        const client = await open(own.base);
        try {
          const reply = await request(client, "/id", { headers });
          assert.equal(reply.status, 200, reply.body);
          check(reply);
        } finally {
          await shut(client);
          await own.close();
        }
      }
    });
  });
}

// --- What only one integration has --------------------------------------

describe("HTTP/2, fastify: hooks", { timeout: 60_000 }, () => {
  let app: RunningH2;
  let session: ClientHttp2Session;
  before(async () => {
    app = await start("fastify");
    session = await open(app.base);
  });
  after(async () => {
    await shut(session);
    await app.close();
  });

  it("onRequest, preHandler, onSend and onResponse see the request's values; onResponse's sets stay in it", async () => {
    // Fastify adds the response listener that runs onResponse before any
    // onRequest hook; node:http2 emits its `finish` from the session.
    together = barrier(50);
    const ids = Array.from({ length: 50 }, (_, i) => `hook-${i}`);
    const replies = await Promise.all(
      ids.map((id, i) =>
        request(session, "/together", { headers: { "x-request-id": id, "x-user": `h${i}` } }),
      ),
    );
    for (const reply of replies) assert.equal(reply.status, 200, reply.body);
    for (const [i, id] of ids.entries()) {
      assert.deepEqual(await until(`hooks ${id}`, 2), [
        `onResponse ${id} preHandler:mw:h${i}`,
        `onSend ${id} preHandler:mw:h${i}`,
      ]);
    }
    assert.deepEqual(await requestJson(session, "/peek"), { leak: "unset" });
    assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
  });

  it("under withContext in a serverFactory: one Context per request, onResponse in it", async () => {
    const seen: string[] = [];
    const own = Fastify({
      http2: true,
      serverFactory: (handler) => createServer(withContext(handler)),
    });
    await own.register(contextPlugin, { seed: () => stage.set("plugin seed") });
    own.addHook("onResponse", async () => {
      seen.push(`${requestId.get("<none>")} ${stage.get("<none>")}`);
    });
    own.get("/", async () => ({ id: requestId.get(), stage: stage.get() }));
    const url = await own.listen({ port: 0, host: "127.0.0.1" });
    const client = await open(url);
    try {
      const reply = await request(client, "/", { headers: { "x-request-id": "f-1" } });
      assert.deepEqual(JSON.parse(reply.body), { id: "f-1", stage: "plugin seed" });
      assert.equal(reply.headers["x-request-id"], "f-1");
    } finally {
      await shut(client);
      await own.close();
    }
    // The stream, and so onResponse, was over once the server had closed.
    assert.deepEqual(seen, ["f-1 plugin seed"]);
  });
});

describe("HTTP/2, withContext: the echo, the session's own objects", { timeout: 60_000 }, () => {
  it("a listener after one that already answered runs in a Context, with no echo", async () => {
    const seen: string[] = [];
    const server = createServer((_req, res) => res.end("first"));
    server.on(
      "request",
      withContext((_req: Http2ServerRequest, _res: Http2ServerResponse) => {
        seen.push(requestId.get());
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = await open(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const reply = await request(client, "/", { headers: { "x-request-id": "late-1" } });
      assert.equal(reply.body, "first");
      assert.equal(reply.headers["x-request-id"], undefined);
      assert.deepEqual(seen, ["late-1"]);
    } finally {
      await shut(client);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("listeners on req.stream are the session's, outside the request; bind() gives them its values (pinned)", async () => {
    // docs/integrations.md, HTTP/2: only req and res are bound. An unbound
    // stream listener sees no request on Node; test/runtimes/differences.test.ts
    // pins where it runs on each runtime.
    const seen: string[] = [];
    const server = createServer(
      withContext((req: Http2ServerRequest, res: Http2ServerResponse) => {
        const log = (what: string) => () => seen.push(`${what} ${requestId.get("<none>")}`);
        req.stream.once("close", log("stream"));
        req.stream.once("close", bind(log("bound")));
        req.once("close", log("req"));
        res.end();
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = await open(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      await request(client, "/", { headers: { "x-request-id": "s-1" } });
    } finally {
      await shut(client);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.deepEqual(seen.sort(), ["bound s-1", "req s-1", "stream <none>"]);
  });

  it("Express does not run on the compatibility API: its req fails as a stream, an unhandled error ends the process (pinned)", {
    skip:
      runtime === "node"
        ? false
        : "pins Node's node:http2; the fixture is started with Node's flags",
  }, async () => {
    const fixture = fileURLToPath(new URL("./fixtures/express-http2.ts", import.meta.url));
    const ran = await promisify(execFile)(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", fixture],
      { timeout: 30_000 },
    ).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (error: Error & { code?: number; stdout?: string; stderr?: string }) => ({
        code: error.code,
        stdout: error.stdout ?? "",
        stderr: error.stderr ?? "",
      }),
    );
    assert.equal(ran.stdout, "", "no answer");
    assert.notEqual(ran.code, 0);
    assert.match(ran.stderr, /Unhandled 'error' event/);
    assert.match(ran.stderr, /on IncomingMessage instance/);
  });

  it("the header cannot be one HTTP/2 refuses on a response: every integration rejects it at setup", async () => {
    // Each would make setHeader throw ERR_HTTP2_INVALID_CONNECTION_HEADERS on every request.
    for (const header of ["Connection", "keep-alive", "Transfer-Encoding", "upgrade", "TE"]) {
      assert.throws(() => withContext(() => {}, { header }), /options\.header/);
      assert.throws(() => honoIntegration.contextMiddleware({ header }), /options\.header/);
      assert.throws(() => koaIntegration.contextMiddleware({ header }), /options\.header/);
      const fastify = Fastify({ http2: true });
      await assert.rejects(async () => {
        await fastify.register(contextPlugin, { header });
      }, /options\.header/);
      await fastify.close().catch(() => {});
    }
  });
});
