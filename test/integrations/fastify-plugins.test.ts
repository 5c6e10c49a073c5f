/**
 * @fastify/session with a store on pg's callback API, and
 * @fastify/rate-limit, after contextPlugin: a callback-style onRequest hook
 * whose `done` pg calls hands the hooks after it the Context where the
 * connection was opened, up to the plugin's preValidation hook. Sessions live
 * in PGlite, served over TCP by pglite-socket, read with `pg`.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import fastifyCookie from "@fastify/cookie";
import rateLimit from "@fastify/rate-limit";
import fastifySession from "@fastify/session";
import { contextPlugin, requestId } from "contextvars/fastify";
import { withContext } from "contextvars/http";
import Fastify from "fastify";
import pg from "pg";
import { keepAliveAgent, randomDelay, send } from "../helpers/http.ts";

const UNSET = "<unset>";
const REQUESTS = 40;

type Callback = (error?: unknown, session?: unknown) => void;

/** A session store on pg's callback API, as connect-pg-simple 6.2.1 is. */
function callbackStore(pool: pg.Pool) {
  return {
    get(sid: string, callback: Callback) {
      pool.query<{ sess: unknown }>(
        "SELECT sess FROM session WHERE sid = $1",
        [sid],
        (error, result) => callback(error, result?.rows[0]?.sess ?? null),
      );
    },
    set(sid: string, sess: unknown, callback: Callback) {
      pool.query(
        "INSERT INTO session (sid, sess) VALUES ($1, $2) ON CONFLICT (sid) DO UPDATE SET sess = $2",
        [sid, JSON.stringify(sess)],
        (error) => callback(error),
      );
    },
    destroy(sid: string, callback: Callback) {
      pool.query("DELETE FROM session WHERE sid = $1", [sid], (error) => callback(error));
    },
  };
}

describe("@fastify/session with a store on pg's callback API, and @fastify/rate-limit", {
  timeout: 60_000,
}, () => {
  let db: PGlite;
  let wire: PGLiteSocketServer;
  let pool: pg.Pool;

  before(async () => {
    db = await PGlite.create();
    await db.exec("CREATE TABLE session (sid varchar PRIMARY KEY, sess json NOT NULL)");
    wire = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 8 });
    await wire.start();
    const port = Number(wire.getServerConn().split(":").at(-1));
    pool = new pg.Pool({ host: "127.0.0.1", port, user: "postgres", database: "postgres", max: 2 });
    // Opened at startup, outside any request.
    const clients = await Promise.all([pool.connect(), pool.connect()]);
    for (const client of clients) client.release();
  });

  after(async () => {
    await pool.end();
    await wire.stop();
    await db.close();
  });

  /** Counts, for the requests with a session cookie, the reads that saw their own id. */
  async function run(fixed: boolean) {
    const own = { keyGenerator: 0, handler: 0, onResponse: 0 };
    const mine = (request: { headers: Record<string, unknown> }) =>
      request.headers["x-request-id"] === requestId.get(UNSET) &&
      String(request.headers["x-request-id"]).startsWith("me-");
    const app = fixed
      ? Fastify({ serverFactory: (handler) => createServer(withContext(handler)) })
      : Fastify();
    await app.register(contextPlugin);
    await app.register(rateLimit, {
      max: 1000,
      timeWindow: 60_000,
      keyGenerator: (request) => {
        if (mine(request)) own.keyGenerator++;
        return String(request.headers["x-request-id"]);
      },
    });
    await app.register(fastifyCookie);
    await app.register(fastifySession, {
      secret: "a".repeat(32),
      cookie: { secure: false },
      saveUninitialized: false,
      store: callbackStore(pool) as never,
    });
    if (fixed) await app.register(contextPlugin);
    app.addHook("onResponse", async (request) => {
      if (mine(request)) own.onResponse++;
    });
    app.get("/login", async (request) => {
      request.session.set("user" as never, String(request.headers["x-user"]) as never);
      return "ok";
    });
    app.get("/me", async (request) => {
      if (mine(request)) own.handler++;
      await randomDelay();
      return String(request.session.get("user" as never));
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const agent = keepAliveAgent(32);
    try {
      const cookies = await Promise.all(
        Array.from({ length: REQUESTS }, async (_, i) => {
          const login = await send(base, "/login", {
            agent,
            headers: { "x-request-id": `login-${i}`, "x-user": `user-${i}` },
          });
          assert.equal(login.status, 200, login.body);
          return String(login.headers["set-cookie"]).split(";")[0] ?? "";
        }),
      );
      await Promise.all(
        cookies.map(async (cookie, i) => {
          const me = await send(base, "/me", {
            agent,
            headers: { "x-request-id": `me-${i}`, cookie },
          });
          assert.equal(me.body, `user-${i}`);
        }),
      );
    } finally {
      agent.destroy();
      await app.close();
    }
    return own;
  }

  it("the handler keeps the request's Context; rate-limit's keyGenerator and onResponse do not", async () => {
    assert.deepEqual(await run(false), { keyGenerator: 0, handler: REQUESTS, onResponse: 0 });
  });

  it("contextPlugin registered again after the session plugin, and withContext around the server, keep it everywhere", async () => {
    assert.deepEqual(await run(true), {
      keyGenerator: REQUESTS,
      handler: REQUESTS,
      onResponse: REQUESTS,
    });
  });
});
