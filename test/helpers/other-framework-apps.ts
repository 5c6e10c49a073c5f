/**
 * The apps of docs/integrations.md's "Other frameworks", for
 * test/integrations/other-frameworks.test.ts: itty-router (on whichever
 * adapter serves its `fetch`), polka 0.5 and restify, each with the same
 * routes. Each seeds `user` in its first hook, sets `stage` in a middleware
 * after an await and `handled` in the handler of GET /concurrent; what the
 * hooks saw is pushed to `stale` and `seen`, which a test empties first.
 *
 *   GET  /concurrent  the values after awaits (after-response hooks record)
 *   POST /body        the JSON body, read with the framework's own reader
 *   GET  /throw       a throw; GET /reject: a middleware's rejection
 *   GET  /peek        `leak` as this request sees it
 *   GET  /latch       waits for `held.wait()`, then answers `user`
 *   GET  /stream      five chunks, streamed after the handler returned
 *   GET|POST /store   what a bare AsyncLocalStorage (`inStore`) kept
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { AutoRouter, json } from "itty-router";
import polka from "polka";
import restify from "restify";
import { randomDelay } from "./http.ts";
import { latch } from "./latch.ts";
import {
  asyncStage,
  leak,
  type Observed,
  observe,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
} from "./request-scenario.ts";

export type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Set by each app's handler for GET /concurrent; the after-response hooks read it. */
const handled = new ContextVar<string>("handled");

/** What a request's first hook found already set (by an earlier request), if anything. */
export const stale: string[] = [];

/** `<hook>:<requestId>|<user>|<handled>`, as each hook after the handler saw them. */
export const seen: string[] = [];

/** The first hook of every app: nothing may be set yet, then `user` from x-user. */
function firstHook(header: string | string[] | undefined | null): void {
  const found = [user, stage, handled, leak]
    .map((v) => v.get("unset"))
    .filter((v) => v !== "unset");
  if (found.length > 0) stale.push(found.join(","));
  seedUser(header);
}

export function record(hook: string): void {
  seen.push(`${hook}:${requestId.get("<none>")}|${user.get("unset")}|${handled.get("unset")}`);
  if (hook === "finish") recordFinish();
}

/** GET /concurrent in every app: values read after awaits, then `handled` set. */
async function handle(): Promise<Observed> {
  const got = await observe();
  handled.set(`h:${got.id}`);
  return got;
}

/**
 * For the comparison with a bare AsyncLocalStorage: each request's id, from
 * `store.run` around the listener in place of withContext.
 */
export const store = new AsyncLocalStorage<string>();

export function inStore<L extends Listener>(listener: L): Listener {
  return (req, res) => store.run(String(req.headers["x-request-id"]), () => listener(req, res));
}

function storeSeen(): { store: string } {
  return { store: store.getStore() ?? "<lost>" };
}

/** What GET /latch awaits; each test that sends to it sets a new one. */
export const held = { wait: latch(0) };

/** The chunks of GET /stream as a web stream, pulled after the handler returned. */
function streamBody(): ReadableStream<Uint8Array> {
  const chunks = streamChunks();
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await randomDelay(2);
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(encoder.encode(next.value));
    },
  });
}

/** Work handed to @whatwg-node/server's waitUntil, awaited by the test. */
export const pending: Promise<void>[] = [];

/** itty-router's app; `resOf` finds the node response in the args the adapter passes. */
export function ittyRouter(resOf: (args: unknown[]) => ServerResponse | undefined) {
  const router = AutoRouter({
    before: [
      (request, ...args) => {
        resOf(args)?.once("finish", () => record("finish"));
        firstHook(request.headers.get("x-user"));
      },
      async (request) => {
        if (new URL(request.url).pathname === "/reject") await setThenReject();
        await asyncStage();
      },
    ],
    catch: () => json({ id: requestId.get(), leak: leak.get("unset") }, { status: 500 }),
    finally: [
      () => {
        record("finally");
      },
    ],
  });
  router.get(
    "/concurrent",
    async (_request, context?: { waitUntil?: (p: Promise<void>) => void }) => {
      const got = await handle();
      if (context?.waitUntil) {
        const work = (async () => {
          await randomDelay();
          await randomDelay();
          record("waitUntil");
        })();
        pending.push(work);
        context.waitUntil(work);
      }
      return got;
    },
  );
  router.post("/body", async (request) => {
    const body: unknown = await request.json();
    return { id: requestId.get(), user: user.get(), stage: stage.get(), body };
  });
  router.get("/throw", () => setThenThrow());
  router.get("/reject", () => "not reached");
  router.get("/peek", () => ({ leak: leak.get("unset") }));
  router.get("/latch", async () => {
    await held.wait();
    return { user: user.get("unset") };
  });
  router.get("/stream", () => new Response(streamBody()));
  router.get("/store", async () => {
    await randomDelay();
    return storeSeen();
  });
  router.post("/store", async (request) => {
    await request.json();
    return storeSeen();
  });
  return router;
}

function sendJsonTo(res: ServerResponse, value: unknown, status = 200): void {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(value));
}

/** polka 0.5: middleware call `next`, errors reach `onError` through `next(error)`. */
export function polkaApp(): polka.Polka {
  const app = polka({
    onError: (_error, _req, res) =>
      sendJsonTo(res, { id: requestId.get(), leak: leak.get("unset") }, 500),
  });
  app.use((req, res, next) => {
    res.once("finish", () => record("finish"));
    firstHook(req.headers["x-user"]);
    next();
  });
  app.use(async (req, _res, next) => {
    try {
      if (req.path === "/reject") await setThenReject();
      await asyncStage();
    } catch (error) {
      next(error as Error);
      return;
    }
    next();
  });
  app.get("/concurrent", (_req, res) => {
    void handle().then((got) => sendJsonTo(res, got));
  });
  app.post("/body", (req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
    });
    req.on("end", () => {
      const body: unknown = JSON.parse(text);
      sendJsonTo(res, { id: requestId.get(), user: user.get(), stage: stage.get(), body });
    });
  });
  app.get("/throw", (_req, _res, next) => {
    try {
      setThenThrow();
    } catch (error) {
      next(error as Error);
    }
  });
  app.get("/reject", (_req, res) => res.end("not reached"));
  app.get("/peek", (_req, res) => sendJsonTo(res, { leak: leak.get("unset") }));
  app.get("/latch", (_req, res) => {
    void held.wait().then(() => sendJsonTo(res, { user: user.get("unset") }));
  });
  app.get("/stream", async (_req, res) => {
    for await (const chunk of streamChunks()) res.write(chunk);
    res.end();
  });
  app.get("/store", async (_req, res) => {
    await randomDelay();
    sendJsonTo(res, storeSeen());
  });
  app.post("/store", (req, res) => {
    req.resume();
    req.on("end", () => sendJsonTo(res, storeSeen()));
  });
  return app;
}

/** restify: `pre` seeds, an async `use` middleware sets `stage`, then its bodyParser. */
export function restifyApp(): restify.Server {
  const app = restify.createServer();
  app.pre((req: restify.Request, res: restify.Response, next: restify.Next) => {
    res.once("finish", () => record("finish"));
    firstHook(req.headers["x-user"]);
    next();
  });
  app.use(async (req: restify.Request) => {
    if (req.path() === "/reject") await setThenReject();
    await asyncStage();
  });
  app.use(restify.plugins.bodyParser());
  app.on("after", () => record("after"));
  app.on("restifyError", (_req, res: restify.Response, _error, callback: () => void) => {
    res.send(500, { id: requestId.get(), leak: leak.get("unset") });
    callback();
  });
  app.get("/concurrent", async (_req: restify.Request, res: restify.Response) => {
    res.send(await handle());
  });
  app.post("/body", async (req: restify.Request, res: restify.Response) => {
    res.send({ id: requestId.get("<none>"), user: user.get(), stage: stage.get(), body: req.body });
  });
  app.get("/throw", async () => setThenThrow());
  app.get("/reject", async (_req: restify.Request, res: restify.Response) => {
    res.send("not reached");
  });
  app.get("/peek", async (_req: restify.Request, res: restify.Response) => {
    res.send({ leak: leak.get("unset") });
  });
  app.get("/latch", async (_req: restify.Request, res: restify.Response) => {
    await held.wait();
    res.send({ user: user.get("unset") });
  });
  app.get("/stream", async (_req: restify.Request, res: restify.Response) => {
    res.setHeader("content-type", "text/plain");
    for await (const chunk of streamChunks()) res.write(chunk);
    res.end();
  });
  app.get("/store", async (_req: restify.Request, res: restify.Response) => {
    await randomDelay();
    res.send(storeSeen());
  });
  app.post("/store", async (_req: restify.Request, res: restify.Response) => {
    res.send(storeSeen());
  });
  return app;
}

/** The recipe for restify: the listeners it added to its server, each in withContext. */
export function wrapListeners(
  server: Server,
  events = ["request", "checkContinue"],
  wrap: (listener: Listener) => Listener = withContext,
): void {
  for (const event of events) {
    for (const listener of server.listeners(event) as Listener[]) {
      server.off(event, listener);
      server.on(event, wrap(listener));
    }
  }
}
