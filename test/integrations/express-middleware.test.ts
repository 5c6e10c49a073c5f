/**
 * Real Express middleware mounted after contextMiddleware: which of them hand
 * the rest of the chain the request's Context. Express calls the next layer
 * synchronously from wherever `next()` is called, so a middleware that calls
 * it from a callback running in another Context (pg's callback API calls back
 * where the connection's socket was opened) hands every later middleware and
 * the handler that Context. The sessions live in PGlite, served over the
 * Postgres wire protocol by pglite-socket on 127.0.0.1, read with `pg`.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import compression from "compression";
import connectPgSimple from "connect-pg-simple";
import { bind, ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import cors from "cors";
import express, { type NextFunction, type Request, type Response } from "express";
import session, { type SessionData, Store } from "express-session";
import helmet from "helmet";
import multer from "multer";
import passport from "passport";
import { Strategy as LocalStrategy } from "passport-local";
import pg from "pg";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

const beforeSession = new ContextVar<string>("beforeSession");
const afterSession = new ContextVar<string>("afterSession");
const inHandler = new ContextVar<string>("inHandler");
const UNSET = "<unset>";
const REQUESTS = 60;

declare module "express-session" {
  interface SessionData {
    user: string;
    visits: number;
  }
}

/**
 * A session store on pg's callback API, as connect-pg-simple 6.2.1 is
 * (`pool.query(text, params, callback)`); connect-pg-simple 7.0.0 to 10.0.0
 * await `pool.query` and call back from the promise.
 */
class CallbackPgStore extends Store {
  readonly #pool: pg.Pool;
  constructor(pool: pg.Pool) {
    super();
    this.#pool = pool;
  }
  override get(sid: string, callback: (error: unknown, session?: SessionData | null) => void) {
    this.#pool.query<{ sess: SessionData }>(
      "SELECT sess FROM session WHERE sid = $1",
      [sid],
      (error, result) => callback(error, result?.rows[0]?.sess ?? null),
    );
  }
  override set(sid: string, sess: SessionData, callback?: (error?: unknown) => void) {
    this.#pool.query(
      "INSERT INTO session (sid, sess, expire) VALUES ($1, $2, now() + interval '1 hour') ON CONFLICT (sid) DO UPDATE SET sess = $2",
      [sid, JSON.stringify(sess)],
      (error) => callback?.(error),
    );
  }
  override destroy(sid: string, callback?: (error?: unknown) => void) {
    this.#pool.query("DELETE FROM session WHERE sid = $1", [sid], (error) => callback?.(error));
  }
}

interface Seen {
  id: string;
  beforeSession: string;
  afterSession: string;
  user: string | undefined;
}

interface Round {
  /** What each handler read, by the request's id. */
  handler: Map<string, Seen>;
  /** What each `finish` listener read: the id, afterSession and inHandler. */
  finish: Map<string, [string, string, string]>;
}

type Fix = "none" | "mount again" | "bind(next)";

/**
 * An app with contextMiddleware first, a middleware that sets a var (and adds
 * a `finish` listener) before the session middleware, one that sets a var
 * after it, and a handler that reads both and sets a third.
 */
function sessionApp(store: Store | undefined, fix: Fix, round: Round): express.Express {
  const app = express();
  app.use(contextMiddleware());
  app.use(async (req: Request, res: Response, next: NextFunction) => {
    const id = requestId.get();
    beforeSession.set(`before:${id}`);
    res.on("finish", () => {
      round.finish.set(id, [requestId.get(UNSET), afterSession.get(UNSET), inHandler.get(UNSET)]);
    });
    await randomDelay();
    void req;
    next();
  });
  const sessions = session({ store, secret: "s", resave: false, saveUninitialized: false });
  if (fix === "bind(next)") {
    app.use((req: Request, res: Response, next: NextFunction) => sessions(req, res, bind(next)));
  } else {
    app.use(sessions);
  }
  if (fix === "mount again") app.use(contextMiddleware());
  app.use(async (_req: Request, _res: Response, next: NextFunction) => {
    afterSession.set(`after:${requestId.get(UNSET)}`);
    await randomDelay();
    next();
  });
  app.get("/login", (req, res) => {
    req.session.user = req.get("x-user") ?? "";
    res.send("ok");
  });
  app.get("/me", async (req, res) => {
    const id = req.get("x-request-id") ?? "";
    round.handler.set(id, {
      id: requestId.get(UNSET),
      beforeSession: beforeSession.get(UNSET),
      afterSession: afterSession.get(UNSET),
      user: req.session.user,
    });
    inHandler.set(`handler:${requestId.get(UNSET)}`);
    await randomDelay();
    req.session.visits = 1; // changed: the store's set runs as the response ends
    res.send("ok");
  });
  return app;
}

/** REQUESTS logins at once, then REQUESTS requests at once, each with its login's cookie. */
async function runRound(store: Store | undefined, fix: Fix): Promise<Round> {
  const round: Round = { handler: new Map(), finish: new Map() };
  const server = createServer(sessionApp(store, fix, round));
  const base = await listen(server);
  const agent = keepAliveAgent(32);
  try {
    const cookies = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const login = await send(base, "/login", {
          agent,
          headers: { "x-request-id": `login-${i}`, "x-user": `user-${i}` },
        });
        assert.equal(login.status, 200);
        return String(login.headers["set-cookie"]).split(";")[0] ?? "";
      }),
    );
    await Promise.all(
      cookies.map(async (cookie, i) => {
        const reply = await send(base, "/me", {
          agent,
          headers: { "x-request-id": `me-${i}`, cookie },
        });
        assert.equal(reply.status, 200, reply.body);
      }),
    );
  } finally {
    agent.destroy();
    await close(server);
  }
  // The session itself is always the request's own.
  for (let i = 0; i < REQUESTS; i++) assert.equal(round.handler.get(`me-${i}`)?.user, `user-${i}`);
  return round;
}

/** How many handlers read their own request's values for all three reads. */
function ownInHandler(round: Round): number {
  let own = 0;
  for (const [id, seen] of round.handler) {
    if (
      seen.id === id &&
      seen.beforeSession === `before:${id}` &&
      seen.afterSession === `after:${id}`
    ) {
      own++;
    }
  }
  return own;
}

/** What the `finish` listeners of the /me requests read, counted. */
function finishReads(round: Round): { id: number; afterSession: number; inHandler: number } {
  const counts = { id: 0, afterSession: 0, inHandler: 0 };
  for (const [id, [seenId, seenAfter, seenHandler]] of round.finish) {
    if (!id.startsWith("me-")) continue;
    if (seenId === id) counts.id++;
    if (seenAfter === `after:${id}`) counts.afterSession++;
    if (seenHandler === `handler:${id}`) counts.inHandler++;
  }
  return counts;
}

describe("express-session after contextMiddleware, sessions in Postgres", {
  timeout: 60_000,
}, () => {
  let db: PGlite;
  let wire: PGLiteSocketServer;
  let port: number;
  const pools: pg.Pool[] = [];

  before(async () => {
    db = await PGlite.create();
    await db.exec(
      "CREATE TABLE session (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)",
    );
    wire = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 16 });
    await wire.start();
    port = Number(wire.getServerConn().split(":").at(-1));
  });

  after(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    await wire.stop();
    await db.close();
  });

  /** A pool of two connections; "startup" opens both before any request. */
  async function openPool(open: "startup" | "lazily"): Promise<pg.Pool> {
    const pool = new pg.Pool({
      host: "127.0.0.1",
      port,
      user: "postgres",
      database: "postgres",
      max: 2,
      idleTimeoutMillis: 0,
    });
    pools.push(pool);
    if (open === "startup") {
      const clients = await Promise.all([pool.connect(), pool.connect()]);
      for (const client of clients) client.release();
    }
    return pool;
  }

  it("MemoryStore: every handler and finish listener reads its own request's values", async () => {
    const round = await runRound(new session.MemoryStore(), "none");
    assert.equal(ownInHandler(round), REQUESTS);
    assert.deepEqual(finishReads(round), {
      id: REQUESTS,
      afterSession: REQUESTS,
      inHandler: REQUESTS,
    });
  });

  it("connect-pg-simple (pg's promise API): every handler reads its own request's values", async () => {
    const PgStore = connectPgSimple(session);
    for (const open of ["startup", "lazily"] as const) {
      const store = new PgStore({ pool: await openPool(open), pruneSessionInterval: false });
      const round = await runRound(store, "none");
      assert.equal(ownInHandler(round), REQUESTS, open);
      assert.equal(finishReads(round).inHandler, REQUESTS, open);
    }
  });

  it("a store on pg's callback API, connections opened at startup: no handler reads a request value", async () => {
    const round = await runRound(new CallbackPgStore(await openPool("startup")), "none");
    for (const seen of round.handler.values()) {
      assert.equal(seen.id, UNSET);
      assert.equal(seen.beforeSession, UNSET);
      // Set after the session middleware, outside any request.
      assert.equal(seen.afterSession, `after:${UNSET}`);
    }
    // finish listeners run in the request's Context, which the handler's set never reached.
    const finish = finishReads(round);
    assert.equal(finish.id, REQUESTS);
    assert.equal(finish.inHandler, 0);
  });

  it("a store on pg's callback API, connections opened lazily: handlers read the request that opened the connection", async () => {
    const round = await runRound(new CallbackPgStore(await openPool("lazily")), "none");
    for (const seen of round.handler.values()) {
      assert.match(seen.id, /^login-\d+$/);
      assert.equal(seen.beforeSession, `before:${seen.id}`);
    }
    assert.equal(finishReads(round).inHandler, 0);
  });

  it("contextMiddleware() mounted again after the session middleware re-enters the request's Context", async () => {
    for (const open of ["startup", "lazily"] as const) {
      const round = await runRound(new CallbackPgStore(await openPool(open)), "mount again");
      assert.equal(ownInHandler(round), REQUESTS, open);
      assert.deepEqual(
        finishReads(round),
        { id: REQUESTS, afterSession: REQUESTS, inHandler: REQUESTS },
        open,
      );
    }
  });

  it("bind(next): the handler reads its own values, but sets made after it stay in the copy", async () => {
    const round = await runRound(new CallbackPgStore(await openPool("startup")), "bind(next)");
    assert.equal(ownInHandler(round), REQUESTS);
    assert.deepEqual(finishReads(round), { id: REQUESTS, afterSession: 0, inHandler: 0 });
  });
});

describe("passport, multer, compression, cors and helmet after contextMiddleware", {
  timeout: 60_000,
}, () => {
  let uploads: string;
  before(async () => {
    uploads = await mkdtemp(join(tmpdir(), "contextvars-multer-"));
  });
  after(async () => {
    await rm(uploads, { recursive: true, force: true });
  });

  it("values set before them reach their callbacks, the handler and finish listeners", async () => {
    // Each entry: where a read happened, and whether it saw its request's id and beforeSession.
    const reads: string[] = [];
    const read = (where: string, id: string) => {
      const own = requestId.get(UNSET) === id && beforeSession.get(UNSET) === `before:${id}`;
      reads.push(`${where}:${own ? "own" : `${requestId.get(UNSET)}`}`);
    };
    const users = new passport.Passport();
    users.use(
      new LocalStrategy((username, _password, done) => {
        read("verify", username);
        setTimeout(() => done(null, { username }), Math.random() * 4);
      }),
    );
    users.serializeUser((user, done) => {
      const { username } = user as { username: string };
      read("serializeUser", username);
      process.nextTick(done, null, username);
    });
    users.deserializeUser((username: string, done) => {
      setImmediate(() => done(null, { username }));
    });
    const upload = multer({
      storage: multer.diskStorage({
        destination: (req, _file, callback) => {
          read("destination", req.get("x-request-id") ?? "");
          callback(null, uploads);
        },
        filename: (req, _file, callback) => {
          read("filename", req.get("x-request-id") ?? "");
          setTimeout(() => callback(null, `${req.get("x-request-id")}.txt`), Math.random() * 3);
        },
      }),
      fileFilter: (req, _file, callback) => {
        read("fileFilter", req.get("x-request-id") ?? "");
        callback(null, true);
      },
    });

    const app = express();
    app.use(contextMiddleware());
    app.use(async (req: Request, res: Response, next: NextFunction) => {
      const id = requestId.get();
      beforeSession.set(`before:${id}`);
      res.on("finish", () => {
        const own = inHandler.get(UNSET) === `handler:${id}` && requestId.get(UNSET) === id;
        reads.push(`finish ${req.path}:${own ? "own" : inHandler.get(UNSET)}`);
      });
      await randomDelay();
      next();
    });
    app.use(helmet());
    app.use(cors());
    app.use(express.urlencoded({ extended: false }));
    app.use(session({ secret: "s", resave: false, saveUninitialized: false }));
    app.use(users.session());
    const handler = (req: Request, res: Response) => {
      read(`handler ${req.path}`, req.get("x-request-id") ?? "");
      inHandler.set(`handler:${requestId.get(UNSET)}`);
      res.send("x".repeat(req.path === "/compressed" ? 20_000 : 10));
    };
    app.post("/login", users.authenticate("local"), handler);
    app.get("/me", handler);
    app.post("/upload", upload.single("file"), handler);
    app.get("/compressed", compression(), handler);

    const server = createServer(app);
    const base = await listen(server);
    const agent = keepAliveAgent(32);
    const clients = 30;
    try {
      await Promise.all(
        Array.from({ length: clients }, async (_, i) => {
          const id = `user-${i}`;
          const login = await send(base, "/login", {
            agent,
            headers: { "x-request-id": id, "content-type": "application/x-www-form-urlencoded" },
            body: `username=${id}&password=p`,
          });
          assert.equal(login.status, 200, login.body);
          const cookie = String(login.headers["set-cookie"]).split(";")[0] ?? "";
          assert.equal(
            (await send(base, "/me", { agent, headers: { "x-request-id": id, cookie } })).status,
            200,
          );
          const boundary = `boundary${i}`;
          const body =
            `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n` +
            `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n` +
            `Content-Type: text/plain\r\n\r\n${"y".repeat(50_000)}\r\n--${boundary}--\r\n`;
          const uploaded = await send(base, "/upload", {
            agent,
            headers: {
              "x-request-id": id,
              "content-type": `multipart/form-data; boundary=${boundary}`,
            },
            body,
            chunks: 4,
          });
          assert.equal(uploaded.status, 200, uploaded.body);
          const compressed = await send(base, "/compressed", {
            agent,
            headers: { "x-request-id": id, "accept-encoding": "gzip" },
          });
          assert.equal(compressed.headers["content-encoding"], "gzip");
        }),
      );
    } finally {
      agent.destroy();
      await close(server);
    }
    const counts: Record<string, number> = {};
    for (const entry of reads) counts[entry] = (counts[entry] ?? 0) + 1;
    const each = [
      "verify",
      "serializeUser",
      "handler /login",
      "handler /me",
      "destination",
      "filename",
      "fileFilter",
      "handler /upload",
      "handler /compressed",
      "finish /login",
      "finish /me",
      "finish /upload",
      "finish /compressed",
    ];
    assert.deepEqual(counts, Object.fromEntries(each.map((where) => [`${where}:own`, clients])));
  });
});
