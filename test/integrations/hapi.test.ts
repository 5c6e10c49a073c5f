/**
 * @hapi/hapi 21, which has no integration of its own: the `request` and
 * `checkContinue` listeners hapi adds to its node server, wrapped in
 * `withContext` where they are, as docs/integrations.md#other-frameworks
 * shows. An async `onRequest` extension sets `user`, awaits and sets
 * `stage` before hapi reads the payload; each must reach route `pre`
 * methods, the handler, a streamed body, `onPreResponse` and the server's
 * `response` event, and nothing else. `server.inject` calls hapi's
 * dispatcher itself, past the listener: it runs in its caller's Context.
 */
import assert from "node:assert/strict";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { server as hapiServer, type Request, type ResponseToolkit, type Server } from "@hapi/hapi";
import { ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { randomDelay, send, UUID } from "../helpers/http.ts";
import {
  asyncStage,
  expectBodyKeepsContext,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  finished,
  leak,
  observe,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
} from "../helpers/request-scenario.ts";

/** Set in the Context the server is made and started in, and nowhere else. */
const where = new ContextVar<string>("hapi.where");

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** The recipe: hapi's own listeners, each in withContext. */
function wrapListeners(app: Server): void {
  for (const event of ["request", "checkContinue"]) {
    for (const listener of app.listener.listeners(event) as Listener[]) {
      app.listener.off(event, listener);
      app.listener.on(event, withContext(listener));
    }
  }
}

function values(): string {
  return `${requestId.get()}|${user.get()}|${stage.get()}`;
}

function buildApp(): Server {
  const app = hapiServer({ host: "127.0.0.1", port: 0, debug: false });
  app.ext("onRequest", async (request: Request, h: ResponseToolkit) => {
    const header: unknown = request.headers["x-user"];
    seedUser(typeof header === "string" ? header : undefined);
    if (request.path === "/reject") await setThenReject();
    await asyncStage();
    return h.continue;
  });
  app.ext("onPreResponse", (request: Request, h: ResponseToolkit) => {
    const response = request.response;
    if ("isBoom" in response && response.isBoom) {
      return h.response({ id: requestId.get(), leak: leak.get("unset") }).code(500);
    }
    return h.continue;
  });
  app.events.on("response", () => recordFinish());
  app.route({
    method: "GET",
    path: "/concurrent",
    options: {
      pre: [
        {
          method: async () => {
            await randomDelay();
            return values();
          },
          assign: "seen",
        },
      ],
    },
    handler: async (request) => {
      const got = await observe();
      assert.equal(request.pre.seen, values(), "the route's pre method saw the request's values");
      return got;
    },
  });
  app.route({
    method: "POST",
    path: "/body",
    handler: (request) => ({
      id: requestId.get(),
      user: user.get(),
      stage: stage.get(),
      body: request.payload,
    }),
  });
  app.route({ method: "GET", path: "/id", handler: () => requestId.get() });
  app.route({ method: "GET", path: "/throw", handler: () => setThenThrow() });
  app.route({ method: "GET", path: "/reject", handler: () => "not reached" });
  app.route({ method: "GET", path: "/peek", handler: () => ({ leak: leak.get("unset") }) });
  app.route({ method: "GET", path: "/where", handler: () => ({ where: where.get("unset") }) });
  app.route({
    method: "GET",
    path: "/stream",
    // hapi answers an object-mode stream with a 500.
    handler: () => Readable.from(streamChunks(), { objectMode: false }),
  });
  app.route({
    method: "GET",
    path: "/set",
    handler: () => {
      leak.set("set by an injected request");
      return values();
    },
  });
  return app;
}

describe("@hapi/hapi 21 with its listeners under withContext", { timeout: 60_000 }, () => {
  const app = where.run("the server's own Context", buildApp);
  wrapListeners(app);
  let base = "";
  before(async () => {
    await where.run("start", () => app.start());
    base = app.info.uri;
  });
  after(() => app.stop({ timeout: 1_000 }));

  it("1,000 concurrent requests: onRequest's sets reach the pre method and the handler, each its own", () =>
    expectNoCrossTalk(base));
  it("hapi's payload parsing keeps the context (bodies sent in pieces)", () =>
    expectBodyKeepsContext(base));
  it("onPreResponse sees the failed request's values; nothing leaks into the next request on the socket", () =>
    expectNothingLeaks(base));
  it("a Readable body streamed after the handler returned, and the server's response event, see the request's values", async () => {
    finished.length = 0;
    await expectStreaming(base);
  });
  it("each request runs in a copy of the root Context, not the server's", async () => {
    const reply = await send(base, "/where");
    assert.deepEqual(JSON.parse(reply.body), { where: "unset" });
  });
  it("a request sent with Expect: 100-continue reaches the checkContinue listener, in its own Context", async () => {
    const post = (i: number) =>
      new Promise<string>((resolve, reject) => {
        const req = httpRequest(`${base}/body`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            expect: "100-continue",
            "x-request-id": `expect-${i}`,
            "x-user": `waiter-${i}`,
          },
        });
        req.on("response", (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve(text));
        });
        req.on("error", reject);
        req.on("continue", () => req.end(JSON.stringify({ n: i })));
      });
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => post(i)));
    replies.forEach((reply, i) => {
      assert.deepEqual(JSON.parse(reply), {
        id: `expect-${i}`,
        user: `waiter-${i}`,
        stage: `mw:waiter-${i}`,
        body: { n: i },
      });
    });
  });
  it("server.inject runs in its caller's Context: requestId.run gives each injected request its own", async () => {
    // Past the listener: no requestId, and a set lands in the caller's Context.
    const bare = await app.inject({ url: "/set", headers: { "x-user": "inj" } });
    assert.equal(bare.statusCode, 500);
    assert.equal(leak.get("unset"), "set by an injected request");
    leak.set("unset");
    const replies = await Promise.all(
      [0, 1, 2].map((i) =>
        requestId.run(`inject-${i}`, () =>
          app.inject({ url: "/set", headers: { "x-user": `i${i}` } }),
        ),
      ),
    );
    assert.deepEqual(
      replies.map((reply) => reply.payload),
      [0, 1, 2].map((i) => `inject-${i}|i${i}|mw:i${i}`),
    );
    assert.equal(leak.get("unset"), "unset", "the injected requests' sets stayed in their copies");
    assert.match((await send(base, "/id")).body, UUID);
  });
});
