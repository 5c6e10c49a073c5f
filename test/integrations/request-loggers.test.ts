/**
 * The request-logging middleware servers mount, with `contextMixin` as the
 * mixin of the pino logger behind it (morgan: tokens that read the vars):
 * pino-http on Express 5 and on node:http, Fastify 5's own logger,
 * morgan, hono-pino and Hono's `logger()` on @hono/node-server, and
 * koa-pino-logger. Each test sends 400 concurrent requests, each with its
 * own `x-request-id` and `x-user`, through random awaits in middleware and
 * handler (or 400 clients that go away once the headers arrive), and checks
 * every line written to an in-memory stream: which lines carry their own
 * request's values, mounted after the integration and mounted before it.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { contextMiddleware as expressContext } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { contextMiddleware as honoContext } from "contextvars/hono";
import { requestId, withContext } from "contextvars/http";
import { contextMiddleware as koaContext } from "contextvars/koa";
import { contextMixin } from "contextvars/pino";
import express from "express";
import Fastify, { type FastifyInstance } from "fastify";
import { Hono } from "hono";
import { logger as honoLogger } from "hono/logger";
import { type PinoLogger, pinoLogger } from "hono-pino";
import Koa from "koa";
import koaPinoLogger from "koa-pino-logger";
import morgan from "morgan";
import pino from "pino";
import { pinoHttp } from "pino-http";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";
import { user } from "../helpers/logging.ts";

const COUNT = 400;

/** A real Writable that keeps each line written to it (pino's destination, morgan's stream). */
function memoryStream() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line !== "") lines.push(line);
      done();
    },
  });
  return {
    stream,
    lines,
    json: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** A pino logger with `contextMixin({ requestId, user })`, writing to `stream`. */
function mixinLogger(stream: Writable): pino.Logger {
  return pino(
    { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user }) },
    stream,
  );
}

/** The `n` of a request's URL (`/orders?n=12`). */
function nOf(url: string | undefined): number {
  return Number(new URL(url ?? "/", "http://x").searchParams.get("n"));
}

/**
 * Sends `COUNT` concurrent requests on 50 keep-alive sockets: request `n`
 * has `x-request-id: id-n`, `x-user: user-n` and the URL `/orders?n=n`;
 * each must answer 200 with its own id.
 */
async function drive(base: string): Promise<void> {
  const agent = keepAliveAgent(50);
  try {
    await Promise.all(
      Array.from({ length: COUNT }, async (_, n) => {
        const reply = await send(base, `/orders?n=${n}`, {
          headers: { "x-request-id": `id-${n}`, "x-user": `user-${n}` },
          agent,
        });
        assert.equal(reply.status, 200, reply.body);
        assert.equal(reply.body, `id-${n}`);
      }),
    );
  } finally {
    agent.destroy();
  }
}

async function serve(listener: (req: IncomingMessage, res: ServerResponse) => void): Promise<{
  base: string;
  stop(): Promise<void>;
}> {
  const server = createServer(listener);
  const base = await listen(server);
  return { base, stop: () => close(server) };
}

/** How many of a message's lines carry another request's values, and how many carry none. */
interface Tally {
  lines: number;
  wrong: number;
  missing: number;
}

/** A line, reduced to the request it belongs to (`n`, from the line's own URL or header) and the values it carries. */
interface Seen {
  msg: string;
  n: number;
  requestId?: unknown;
  user?: unknown;
}

/** Tallies the lines by message. A value of `"-"` (a token's fallback) counts as none. */
function tally(lines: readonly Seen[]): Record<string, Tally> {
  const out: Record<string, Tally> = {};
  for (const line of lines) {
    const counts = out[line.msg] ?? { lines: 0, wrong: 0, missing: 0 };
    out[line.msg] = counts;
    counts.lines++;
    const values = [line.requestId, line.user];
    if (values.some((value) => value === undefined || value === "-")) counts.missing++;
    else if (line.requestId !== `id-${line.n}` || line.user !== `user-${line.n}`) counts.wrong++;
  }
  return out;
}

/** Every one of the `COUNT` requests wrote one line of each message, each with its own values. */
function allOwn(...messages: string[]): Record<string, Tally> {
  return Object.fromEntries(messages.map((msg) => [msg, { lines: COUNT, wrong: 0, missing: 0 }]));
}

/** pino-http's lines: `req` is bound on each, so its URL tells the request. */
interface PinoHttpLine extends Seen {
  req: { id: unknown; url: string };
  seenUser?: unknown;
}

function pinoHttpLines(raw: readonly Record<string, unknown>[]): PinoHttpLine[] {
  return raw.map((line) => {
    const req = line.req as PinoHttpLine["req"];
    return { ...(line as unknown as PinoHttpLine), n: nOf(req.url) };
  });
}

const seedUser = (headers: IncomingMessage["headers"]) => user.set(String(headers["x-user"]));

describe("pino-http on Express 5", { timeout: 60_000 }, () => {
  /** contextMiddleware and pino-http in `order`, a middleware and a handler that await, two `req.log` lines. */
  async function run(order: "after" | "before"): Promise<PinoHttpLine[]> {
    const { stream, json } = memoryStream();
    const app = express();
    const context = expressContext({ seed: (req) => seedUser(req.headers) });
    const httpLogger = pinoHttp({
      logger: mixinLogger(stream),
      // Outside the request's Context requestId has no value: pino-http's own kind of id then.
      genReqId: (req) => requestId.get(`own-${nOf(req.url)}`),
      customProps: () => ({ seenUser: user.get("-") }),
    });
    if (order === "after") app.use(context, httpLogger);
    else app.use(httpLogger, context);
    app.use(async (_req, _res, next) => {
      await randomDelay();
      next();
    });
    app.get("/orders", async (req, res) => {
      req.log.info("handler");
      await randomDelay();
      req.log.info("handler after await");
      res.send(requestId.get());
    });
    const { base, stop } = await serve(app);
    try {
      await drive(base);
    } finally {
      await stop();
    }
    return pinoHttpLines(json());
  }

  it("mounted after contextMiddleware: every line its own request's; req.id is requestId; customProps see the request", async () => {
    const lines = await run("after");
    assert.deepEqual(tally(lines), allOwn("handler", "handler after await", "request completed"));
    assert.equal(lines.filter((l) => l.req.id === `id-${l.n}`).length, COUNT * 3);
    // customProps runs twice: as pino-http starts (its bindings ride on req.log) and at 'finish'.
    assert.equal(lines.filter((l) => l.seenUser === `user-${l.n}`).length, COUNT * 3);
  });

  it("mounted before: lines still carry the values, but req.id is pino-http's own and customProps see none as it starts", async () => {
    const lines = await run("before");
    // The mixin reads where each line is written: req.log in the handler, and
    // 'finish', which Node emits where the handler's res.send wrote the response.
    assert.deepEqual(tally(lines), allOwn("handler", "handler after await", "request completed"));
    assert.equal(lines.filter((l) => l.req.id === `own-${l.n}`).length, COUNT * 3);
    const seen = (msg: string) =>
      lines.filter((l) => l.msg === msg && l.seenUser === `user-${l.n}`).length;
    assert.deepEqual(
      [seen("handler"), seen("handler after await"), seen("request completed")],
      [0, 0, COUNT],
    );
  });

  /**
   * `COUNT` clients that go away as the response's headers arrive: pino-http
   * writes `request aborted` from the response's `close`, which Node emits
   * from the socket, not from anything the handler called.
   */
  async function clientsGoAway(order: "after" | "before"): Promise<PinoHttpLine[]> {
    const { stream, json } = memoryStream();
    const onClose: Array<() => void> = [];
    const closed = Array.from(
      { length: COUNT },
      (_, n) => new Promise<void>((resolve) => (onClose[n] = resolve)),
    );
    const app = express();
    const context = expressContext({ seed: (req) => seedUser(req.headers) });
    const httpLogger = pinoHttp({ logger: mixinLogger(stream) });
    if (order === "after") app.use(context, httpLogger);
    else app.use(httpLogger, context);
    app.get("/orders", async (req, res) => {
      await randomDelay();
      res.writeHead(200).flushHeaders();
      // Added after pino-http's: when it runs, the line is written.
      await once(res, "close");
      onClose[nOf(req.url)]?.();
    });
    const { base, stop } = await serve(app);
    try {
      await Promise.all(
        Array.from(
          { length: COUNT },
          (_, n) =>
            new Promise<void>((resolve, reject) => {
              const headers = { "x-request-id": `id-${n}`, "x-user": `user-${n}` };
              const outgoing = request(`${base}/orders?n=${n}`, { headers, agent: false });
              outgoing.on("response", () => outgoing.destroy());
              outgoing.on("close", resolve);
              outgoing.on("error", (error) => (outgoing.destroyed ? resolve() : reject(error)));
              outgoing.end();
            }),
        ),
      );
      await Promise.all(closed);
    } finally {
      await stop();
    }
    return pinoHttpLines(json());
  }

  it("a client that goes away, pino-http mounted after contextMiddleware: 'request aborted' has its request's values", async () => {
    assert.deepEqual(tally(await clientsGoAway("after")), allOwn("request aborted"));
  });

  it("a client that goes away, pino-http mounted before: 'request aborted' has none", async () => {
    assert.deepEqual(tally(await clientsGoAway("before")), {
      "request aborted": { lines: COUNT, wrong: 0, missing: COUNT },
    });
  });

  it("on node:http, called inside withContext's listener", async () => {
    const { stream, json } = memoryStream();
    const httpLogger = pinoHttp({ logger: mixinLogger(stream), genReqId: () => requestId.get() });
    const { base, stop } = await serve(
      withContext(
        async (req, res) => {
          httpLogger(req, res);
          await randomDelay();
          req.log.info("handler");
          await randomDelay();
          res.end(requestId.get());
        },
        { seed: (req) => seedUser(req.headers) },
      ),
    );
    try {
      await drive(base);
    } finally {
      await stop();
    }
    const lines = pinoHttpLines(json());
    assert.deepEqual(tally(lines), allOwn("handler", "request completed"));
    assert.equal(lines.filter((l) => l.req.id === `id-${l.n}`).length, COUNT * 2);
  });
});

describe("koa-pino-logger (pino-http) on Koa 3", { timeout: 60_000 }, () => {
  async function run(order: "after" | "before"): Promise<Seen[]> {
    const { stream, json } = memoryStream();
    const app = new Koa();
    const context = koaContext({ seed: (ctx) => seedUser(ctx.headers) });
    const log = koaPinoLogger({ logger: mixinLogger(stream), genReqId: () => requestId.get("-") });
    if (order === "after") app.use(context).use(log);
    else app.use(log).use(context);
    app.use(async (ctx) => {
      await randomDelay();
      (ctx as typeof ctx & { log: pino.Logger }).log.info("handler");
      await randomDelay();
      ctx.body = requestId.get();
    });
    const { base, stop } = await serve(app.callback());
    try {
      await drive(base);
    } finally {
      await stop();
    }
    return pinoHttpLines(json());
  }

  it("mounted after contextMiddleware: every line its own request's", async () => {
    assert.deepEqual(tally(await run("after")), allOwn("handler", "request completed"));
  });

  it("mounted before: 'request completed' has no values (Koa writes the response after the chain)", async () => {
    assert.deepEqual(tally(await run("before")), {
      handler: { lines: COUNT, wrong: 0, missing: 0 },
      "request completed": { lines: COUNT, wrong: 0, missing: COUNT },
    });
  });
});

describe("Fastify 5's own logger with contextPlugin", { timeout: 60_000 }, () => {
  const variants = {
    "logger: { mixin, stream }": (stream: Writable) =>
      Fastify({
        logger: {
          base: undefined,
          timestamp: false,
          mixin: contextMixin({ requestId, user }),
          stream,
        },
        requestIdHeader: "x-request-id",
      }),
    "loggerInstance: pino(…)": (stream: Writable) =>
      Fastify({ loggerInstance: mixinLogger(stream), requestIdHeader: "x-request-id" }),
    "loggerInstance, serverFactory with withContext": (stream: Writable) =>
      Fastify({
        loggerInstance: mixinLogger(stream),
        requestIdHeader: "x-request-id",
        serverFactory: (handler) =>
          createServer(withContext(handler, { seed: (req) => seedUser(req.headers) })),
      }),
  };

  async function run(make: (typeof variants)[keyof typeof variants]): Promise<Seen[]> {
    const { stream, json } = memoryStream();
    // The three differ in their logger's type parameter only.
    const app = make(stream) as unknown as FastifyInstance;
    await app.register(contextPlugin, { seed: (request) => seedUser(request.headers) });
    app.addHook("onRequest", async (request) => {
      await randomDelay();
      request.log.info("onRequest hook");
    });
    app.get("/orders", async (request) => {
      await randomDelay();
      request.log.info("handler");
      return requestId.get();
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      await drive(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
    } finally {
      await app.close();
    }
    // Each request line carries Fastify's reqId, here the incoming x-request-id (requestIdHeader).
    return (json() as unknown as Array<Seen & { reqId?: string }>)
      .filter((line) => line.reqId !== undefined)
      .map((line) => ({ ...line, n: Number(String(line.reqId).slice(3)) }));
  }

  for (const [name, make] of Object.entries(variants).slice(0, 2)) {
    it(`${name}: every line but 'incoming request' its own request's; that one has none`, async () => {
      assert.deepEqual(tally(await run(make)), {
        ...allOwn("onRequest hook", "handler", "request completed"),
        "incoming request": { lines: COUNT, wrong: 0, missing: COUNT },
      });
    });
  }

  it("loggerInstance, serverFactory with withContext: 'incoming request' too", async () => {
    const make = variants["loggerInstance, serverFactory with withContext"];
    assert.deepEqual(
      tally(await run(make)),
      allOwn("incoming request", "onRequest hook", "handler", "request completed"),
    );
  });

  it("requestIdHeader and generateId: (request) => request.id: reqId and requestId agree unless the header is malformed", async () => {
    const { stream, json } = memoryStream();
    const app = Fastify({ loggerInstance: mixinLogger(stream), requestIdHeader: "x-request-id" });
    await app.register(contextPlugin, { generateId: (request) => request.id });
    app.get("/orders", async (request) => {
      await randomDelay();
      request.log.info("handler");
      return requestId.get();
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const agent = keepAliveAgent(50);
    const kinds = ["no header", "well-formed", "malformed"] as const;
    try {
      await Promise.all(
        Array.from({ length: COUNT }, async (_, n) => {
          const kind = kinds[n % 3];
          const headers: Record<string, string> =
            kind === "well-formed"
              ? { "x-request-id": `id-${n}` }
              : kind === "malformed"
                ? { "x-request-id": `a b ${n}` }
                : {};
          const reply = await send(base, `/orders?n=${n}`, { headers, agent });
          assert.equal(reply.status, 200);
        }),
      );
    } finally {
      agent.destroy();
      await app.close();
    }
    const agree: Record<string, [number, number]> = {};
    for (const line of json()) {
      if (line.msg !== "handler") continue;
      const reqId = String(line.reqId);
      const kind = reqId.startsWith("id-")
        ? "well-formed"
        : reqId.startsWith("a b")
          ? "malformed"
          : "no header";
      const counts = agree[kind] ?? [0, 0];
      counts[line.requestId === reqId ? 0 : 1]++;
      agree[kind] = counts;
    }
    // [agree, disagree]: a malformed id is Fastify's reqId as sent, and a fresh UUID as requestId.
    assert.deepEqual(agree, {
      "no header": [134, 0],
      "well-formed": [133, 0],
      malformed: [0, 133],
    });
  });
});

describe("morgan on Express 5", { timeout: 60_000 }, () => {
  morgan.token("rid", () => requestId.get("-"));
  morgan.token("user", () => user.get("-"));

  async function run(order: "after" | "before", immediate: boolean): Promise<Seen[]> {
    const { stream, lines } = memoryStream();
    const app = express();
    const context = expressContext({ seed: (req) => seedUser(req.headers) });
    const log = morgan(":rid :user :url", { stream, immediate });
    if (order === "after") app.use(context, log);
    else app.use(log, context);
    app.use(async (_req, _res, next) => {
      await randomDelay();
      next();
    });
    app.get("/orders", async (_req, res) => {
      await randomDelay();
      res.send(requestId.get());
    });
    const { base, stop } = await serve(app);
    try {
      await drive(base);
    } finally {
      await stop();
    }
    return lines.map((line) => {
      const [rid, name, url] = line.split(" ");
      return { msg: "line", n: nOf(url), requestId: rid, user: name };
    });
  }

  for (const immediate of [false, true]) {
    const when = immediate ? "immediate: true" : "at the response's end";
    it(`${when}, mounted after contextMiddleware: every line its own request's`, async () => {
      assert.deepEqual(tally(await run("after", immediate)), allOwn("line"));
    });
    it(`${when}, mounted before: no line has values`, async () => {
      assert.deepEqual(tally(await run("before", immediate)), {
        line: { lines: COUNT, wrong: 0, missing: COUNT },
      });
    });
  }
});

describe("Hono 4 on @hono/node-server", { timeout: 60_000 }, () => {
  type Env = { Variables: { logger?: PinoLogger } };

  async function serveApp(app: Hono<Env>) {
    app.use(async (_c, next) => {
      await randomDelay();
      await next();
    });
    app.get("/orders", async (c) => {
      await randomDelay();
      c.var.logger?.info("handler");
      return c.text(requestId.get());
    });
    const { base, stop } = await serve(getRequestListener(app.fetch));
    try {
      await drive(base);
    } finally {
      await stop();
    }
  }

  async function honoPino(order: "after" | "before"): Promise<Seen[]> {
    const { stream, json } = memoryStream();
    const app = new Hono<Env>();
    const context = honoContext({ seed: (c) => user.set(c.req.header("x-user") ?? "-") });
    const log = pinoLogger({
      pino: mixinLogger(stream),
      http: { reqId: () => requestId.get("-") },
    });
    if (order === "after") app.use(context, log);
    else app.use(log, context);
    await serveApp(app);
    // hono-pino's req.url is the path alone: the request's own header tells which it is.
    return (json() as unknown as Array<Seen & { req: { headers: Record<string, string> } }>).map(
      (line) => ({
        ...line,
        n: Number(String(line.req.headers["x-request-id"]).slice(3)),
      }),
    );
  }

  it("hono-pino mounted after contextMiddleware: every line its own request's; its reqId is requestId", async () => {
    const lines = await honoPino("after");
    assert.deepEqual(tally(lines), allOwn("handler", "Request completed"));
    // http.reqId is read as the middleware starts; hono-pino puts it on its own two lines, not on c.var.logger's.
    const reqIds = lines.filter((l) => (l as Seen & { reqId?: unknown }).reqId === `id-${l.n}`);
    assert.deepEqual(
      reqIds.map((l) => l.msg),
      Array.from({ length: COUNT }, () => "Request completed"),
    );
  });

  it("hono-pino mounted before: 'Request completed' (after await next()) has no values", async () => {
    assert.deepEqual(tally(await honoPino("before")), {
      handler: { lines: COUNT, wrong: 0, missing: 0 },
      "Request completed": { lines: COUNT, wrong: 0, missing: COUNT },
    });
  });

  async function honoLog(order: "after" | "before"): Promise<Seen[]> {
    const printed: string[] = [];
    const app = new Hono<Env>();
    const context = honoContext({ seed: (c) => user.set(c.req.header("x-user") ?? "-") });
    const log = honoLogger((message) =>
      printed.push(`${requestId.get("-")} ${user.get("-")} ${message}`),
    );
    if (order === "after") app.use(context, log);
    else app.use(log, context);
    await serveApp(app);
    return printed.map((line) => {
      const [rid, name, arrow, , url] = line.split(" ");
      return { msg: String(arrow), n: nOf(url), requestId: rid, user: name };
    });
  }

  it("logger() with a print function that reads the vars, mounted after contextMiddleware", async () => {
    assert.deepEqual(tally(await honoLog("after")), allOwn("<--", "-->"));
  });

  it("logger() mounted before: neither line has values", async () => {
    const none = { lines: COUNT, wrong: 0, missing: COUNT };
    assert.deepEqual(tally(await honoLog("before")), { "<--": none, "-->": none });
  });
});
