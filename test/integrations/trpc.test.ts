/**
 * tRPC 11 served through each integration, to tRPC's own client over real
 * sockets on 127.0.0.1: on Express (`contextMiddleware` and
 * `createExpressMiddleware`), on node:http under `withContext`
 * (`createHTTPHandler`), on Fastify (`contextPlugin` and tRPC's Fastify
 * plugin) and on Hono (@hono/trpc-server behind `contextMiddleware`, or
 * served under `withContext`), with batched calls (`httpBatchLink`) and
 * Server-Sent Events subscriptions (`httpSubscriptionLink`, with the
 * `eventsource` package's EventSource, which Node 20 lacks); and over
 * tRPC's WebSocket adapter on a `ws` server under `withUpgradeContext`.
 *
 * Concurrency here is made, not hoped for: each test holds its calls at a
 * barrier until every one of them has arrived, so a set can only be read
 * by a call it was not meant for if the calls share a Context.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { trpcServer } from "@hono/trpc-server";
import {
  createTRPCClient,
  createWSClient,
  httpBatchLink,
  httpSubscriptionLink,
  splitLink,
  wsLink,
} from "@trpc/client";
import { initTRPC } from "@trpc/server";
import { createExpressMiddleware } from "@trpc/server/adapters/express";
import { fastifyTRPCPlugin } from "@trpc/server/adapters/fastify";
import { createHTTPHandler } from "@trpc/server/adapters/standalone";
import { applyWSSHandler } from "@trpc/server/adapters/ws";
import { type Context, ContextVar, copyContext } from "contextvars";
import { contextMiddleware as expressContext } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { contextMiddleware as honoContext } from "contextvars/hono";
import { requestId, withContext } from "contextvars/http";
import { EventSource } from "eventsource";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { WebSocket, WebSocketServer } from "ws";
import { type HonoPath, honoListener } from "../helpers/hono-servers.ts";
import { close, listen, randomDelay } from "../helpers/http.ts";
import { barriers } from "../helpers/latch.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import { listenWs, upgradeServer } from "../helpers/websocket-scenario.ts";

/** Set in createContext after an await: calls must still see it. */
const verified = new ContextVar<string>("trpc.verified");
/** The procedure's path, as a tRPC middleware sets it. */
const procedure = new ContextVar<string>("trpc.procedure");

/** What a call reads: `<id>|<user>|<verified>|<stage>|<leak>`. */
function values(): string {
  return [
    requestId.get("<none>"),
    user.get("<none>"),
    verified.get("<none>"),
    stage.get("<none>"),
    leak.get("unset"),
  ].join("|");
}

/** What call `i`'s request must see everywhere once the tRPC middleware has run. */
function expectedOf(id: string, name: string, seenStage = `mw:${name}`): string {
  return `${id}|${name}|ok:${name}|${seenStage}|unset`;
}

/** The gate every test sets before it calls; one key for the whole test, or one per request. */
let gate = barriers(1);

/**
 * Each step of `iterator` in `context`: the docs' recipe for a subscription
 * whose async generator must see what the middleware around it set
 * (docs/integrations.md, "A subscription's async generator runs where the
 * server calls `next()`").
 */
function iterateIn<T>(context: Context, iterator: AsyncIterator<T>): AsyncIterableIterator<T> {
  return {
    next: (...args) => context.run(() => iterator.next(...args)),
    return: (value) =>
      context.run(async () => (await iterator.return?.(value)) ?? { done: true, value }),
    throw: (error) =>
      context.run(async () => {
        if (iterator.throw) return iterator.throw(error);
        throw error;
      }),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

/** A type, not an interface: @hono/trpc-server takes a Record<string, unknown>. */
type TrpcContext = {
  /** What createContext read after its await and its set. */
  readonly created: string;
};

/** createContext: awaits, then sets `verified`; the calls of the request must see it. */
async function createContext(): Promise<TrpcContext> {
  await randomDelay();
  verified.set(`ok:${user.get("<none>")}`);
  return { created: values() };
}

const t = initTRPC.context<TrpcContext>().create();

/** A tRPC middleware: awaits, sets `stage`, and passes on what it read. */
const staged = t.middleware(async ({ ctx, next }) => {
  await randomDelay();
  stage.set(`mw:${user.get("<none>")}`);
  return next({ ctx: { ...ctx, middleware: values() } });
});

/** The docs' mistake: the path set in the batch's one Context. */
const setPath = t.middleware(({ path, next }) => {
  procedure.set(path);
  return next();
});

/** The docs' fix: the rest of the call in a Context of its own. */
const runPath = t.middleware(({ path, next }) => procedure.run(path, () => next()));

/** A procedure that waits for its batch's siblings, then reads the path. */
const held = (middleware: typeof setPath) =>
  t.procedure.use(middleware).query(async () => {
    await gate.arrive(requestId.get());
    await randomDelay();
    return procedure.get("<none>");
  });

async function* ticks(count: number): AsyncGenerator<string> {
  await gate.arrive("subscriptions");
  for (let n = 0; n < count; n++) {
    await randomDelay();
    yield `${n}:${values()}|${procedure.get("<none>")}`;
  }
}

const router = t.router({
  who: t.procedure.use(staged).query(async ({ ctx }) => {
    await gate.arrive("calls");
    await randomDelay();
    await new Promise((resolve) => setImmediate(resolve));
    return { created: ctx.created, middleware: ctx.middleware, procedure: values() };
  }),
  ticks: t.procedure.use(staged).subscription(() => ticks(3)),
  set: t.router({
    a: held(setPath),
    b: held(setPath),
    c: held(setPath),
    d: held(setPath),
    e: held(setPath),
  }),
  run: t.router({
    a: held(runPath),
    b: held(runPath),
    c: held(runPath),
    d: held(runPath),
    e: held(runPath),
  }),
  // Over WebSockets: a call that sets `user`, and one that reads it.
  login: t.procedure
    .input((name) => String(name))
    .mutation(({ input }) => {
      user.set(input);
      return values();
    }),
  whoami: t.procedure.query(() => values()),
  // The path a middleware's run() gives, seen by a query and by subscription events.
  path: t.procedure.use(runPath).query(() => procedure.get("<none>")),
  pathTicks: t.procedure.use(runPath).subscription(() => ticks(3)),
  pathTicksIn: t.procedure.use(runPath).subscription(() => iterateIn(copyContext(), ticks(3))),
});

type AppRouter = typeof router;

const seedFromHeader = (header: string | string[] | undefined | null) => seedUser(header);

/** The four ways tRPC meets an integration here; each resolves to its tRPC URL. */
const servers: readonly {
  name: string;
  serve(): Promise<{ url: string; stop(): Promise<void> }>;
}[] = [
  {
    name: "Express: contextMiddleware, createExpressMiddleware",
    async serve() {
      const app = express();
      app.use(expressContext({ seed: (req) => seedFromHeader(req.headers["x-user"]) }));
      app.use("/trpc", createExpressMiddleware({ router, createContext }));
      return serveNode(createServer(app));
    },
  },
  {
    name: "node:http: withContext(createHTTPHandler)",
    async serve() {
      const handler = createHTTPHandler({ router, createContext, basePath: "/trpc/" });
      return serveNode(
        createServer(
          withContext(handler, { seed: (req) => seedFromHeader(req.headers["x-user"]) }),
        ),
      );
    },
  },
  {
    name: "Fastify: contextPlugin, fastifyTRPCPlugin",
    async serve() {
      const app = leak.run("the server's own Context", () => Fastify());
      await app.register(contextPlugin, {
        seed: (request) => seedFromHeader(request.headers["x-user"]),
      });
      await app.register(fastifyTRPCPlugin, {
        prefix: "/trpc",
        trpcOptions: { router, createContext },
      });
      const base = await leak.run("listen", () => app.listen({ port: 0, host: "127.0.0.1" }));
      return { url: `${base}/trpc`, stop: () => app.close() };
    },
  },
  ...(["node-server", "fetch path"] as const).map((path: HonoPath) => ({
    name: `Hono (${path}): contextMiddleware, @hono/trpc-server`,
    async serve() {
      const app = new Hono();
      app.use(honoContext({ seed: (c) => seedFromHeader(c.req.header("x-user")) }));
      app.use("/trpc/*", trpcServer({ router, createContext }));
      return serveNode(createServer(honoListener(app, path)));
    },
  })),
  {
    name: "Hono: withContext(getRequestListener(app.fetch)), @hono/trpc-server",
    async serve() {
      const app = new Hono();
      app.use("/trpc/*", trpcServer({ router, createContext }));
      const listener = honoListener(app, "node-server");
      return serveNode(
        createServer(
          withContext(listener, { seed: (req) => seedFromHeader(req.headers["x-user"]) }),
        ),
      );
    },
  },
];

async function serveNode(server: Server): Promise<{ url: string; stop(): Promise<void> }> {
  const base = await leak.run("listen", () => listen(server));
  return { url: `${base}/trpc`, stop: () => close(server) };
}

/** A client whose every request carries `headers`: batched calls, and subscriptions over SSE. */
function httpClient(url: string, headers: Record<string, string>) {
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === "subscription",
        true: httpSubscriptionLink({
          url,
          EventSource,
          eventSourceOptions: {
            fetch: (input, init) =>
              fetch(input, { ...init, headers: { ...init?.headers, ...headers } }),
          },
        }),
        false: httpBatchLink({ url, headers }),
      }),
    ],
  });
}

/** Every event of one subscription, once the server has ended it. */
function collect(
  subscribe: (handlers: {
    onData(data: string): void;
    onError(error: unknown): void;
    onComplete(): void;
  }) => { unsubscribe(): void },
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const events: string[] = [];
    const subscription = subscribe({
      onData: (data) => events.push(data),
      onError: (error) => {
        subscription.unsubscribe();
        reject(error);
      },
      onComplete: () => resolve(events),
    });
  });
}

for (const { name, serve } of servers) {
  describe(`tRPC 11 on ${name}`, { timeout: 60_000 }, () => {
    let url = "";
    let stop = async () => {};
    before(async () => {
      ({ url, stop } = await serve());
    });
    after(() => stop());

    it("40 concurrent batched calls, held until all arrived: createContext, middleware and procedure see only their own request", async () => {
      const count = 40;
      gate = barriers(count * 2);
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          await randomDelay();
          const client = httpClient(url, { "x-request-id": `call-${i}`, "x-user": `user-${i}` });
          // One HTTP request: both calls in one batch.
          return Promise.all([client.who.query(), client.who.query()]);
        }),
      );
      for (const [i, batch] of replies.entries()) {
        const own = expectedOf(`call-${i}`, `user-${i}`);
        for (const reply of batch) {
          assert.deepEqual(reply, {
            created: expectedOf(`call-${i}`, `user-${i}`, "<none>"),
            middleware: own,
            procedure: own,
          });
        }
      }
    });

    it("the procedures of one batched call share its Context: a middleware's set reaches the siblings, run() keeps it to one", async () => {
      const count = 40;
      const paths = ["a", "b", "c", "d", "e"] as const;
      // Every procedure of a batch waits until all five of that batch have passed the middleware.
      gate = barriers(paths.length);
      const batches = await Promise.all(
        Array.from({ length: count }, (_, i) => {
          const client = httpClient(url, { "x-request-id": `batch-${i}`, "x-user": `user-${i}` });
          const mode = i % 2 === 0 ? "set" : "run";
          return Promise.all(paths.map((p) => client[mode][p].query())).then((read) => ({
            mode,
            read,
          }));
        }),
      );
      let wrongWithSet = 0;
      for (const { mode, read } of batches) {
        const own = paths.map((p) => `${mode}.${p}`);
        if (mode === "run") assert.deepEqual(read, own, "run(): each procedure read its own path");
        else {
          // All five read the one path set last in their batch: four of five read a sibling's.
          assert.equal(new Set(read).size, 1, String(read));
          wrongWithSet += read.filter((seen, n) => seen !== own[n]).length;
        }
      }
      assert.equal(wrongWithSet, (count / 2) * (paths.length - 1));
    });

    it("40 concurrent SSE subscriptions, held until all started: every event sees its own request", async () => {
      const count = 40;
      gate = barriers(count);
      const seen = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          await randomDelay();
          const client = httpClient(url, { "x-request-id": `sse-${i}`, "x-user": `user-${i}` });
          return collect((handlers) => client.ticks.subscribe(undefined, handlers));
        }),
      );
      for (const [i, events] of seen.entries()) {
        const own = expectedOf(`sse-${i}`, `user-${i}`);
        assert.deepEqual(
          events,
          [0, 1, 2].map((n) => `${n}:${own}|<none>`),
        );
      }
    });
  });
}

/**
 * tRPC's WebSocket adapter on a `ws` server under withUpgradeContext;
 * `bound` binds each socket with bindEmitter before tRPC's connection
 * listener adds its own. Records the id every createContext saw.
 */
function serveWs(bound: boolean): { readonly base: string; readonly created: string[] } {
  const served = { base: "", created: [] as string[] };
  const wss = new WebSocketServer({ noServer: true });
  const handler = applyWSSHandler({
    wss,
    router,
    createContext: () => {
      served.created.push(requestId.get("<none>"));
      return createContext();
    },
  });
  const server = upgradeServer(wss, bound);
  before(async () => {
    served.base = await listenWs(server);
  });
  after(async () => {
    handler.broadcastReconnectNotification();
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    await close(server);
  });
  return served;
}

/** A tRPC client over one WebSocket whose upgrade request carries `headers`. */
function wsClient(url: string, headers: Record<string, string>) {
  class WithHeaders extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols, { headers });
    }
  }
  const socket = createWSClient({
    url,
    WebSocket: WithHeaders as unknown as typeof globalThis.WebSocket,
  });
  const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: socket })] });
  return { client, close: () => socket.close() };
}

// Bound first: where `ws` is Bun's own, the unbound suite's calls run in the root
// Context, and their sets would be read by whatever runs after them.
for (const bound of [true, false]) {
  const how = bound ? "each socket bound with bindEmitter" : "alone";
  describe(`tRPC 11's WebSocket adapter on ws under withUpgradeContext, ${how}`, {
    timeout: 60_000,
  }, () => {
    const served = serveWs(bound);
    // createContext ran in the upgrade's Context, after bindEmitter took its snapshot.
    const verifiedOf = (name: string) => (bound ? "<none>" : `ok:${name}`);

    it("createContext runs once per connection; 30 connections' calls, held until all 90 arrived, see their own upgrade", async () => {
      const count = 30;
      gate = barriers(count * 3);
      served.created.length = 0;
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          await randomDelay();
          const headers = { "x-request-id": `conn-${i}`, "x-user": `user-${i}` };
          const { client, close } = wsClient(served.base, headers);
          try {
            return await Promise.all([client.who.query(), client.who.query(), client.who.query()]);
          } finally {
            close();
          }
        }),
      );
      assert.deepEqual(
        served.created.sort(),
        Array.from({ length: count }, (_, i) => `conn-${i}`).sort(),
      );
      for (const [i, calls] of replies.entries()) {
        const own = `conn-${i}|user-${i}|${verifiedOf(`user-${i}`)}|mw:user-${i}|unset`;
        for (const reply of calls) {
          assert.deepEqual(reply, {
            created: expectedOf(`conn-${i}`, `user-${i}`, "<none>"),
            middleware: own,
            procedure: own,
          });
        }
      }
    });

    it(`a call that sets user: the calls after it on the connection ${bound ? "do not see" : "see"} it`, async () => {
      const count = 30;
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          await randomDelay();
          const headers = { "x-request-id": `login-${i}`, "x-user": `user-${i}` };
          const { client, close } = wsClient(served.base, headers);
          try {
            const before = await client.whoami.query();
            const login = await client.login.mutate(`name-${i}`);
            const after = await Promise.all([
              client.whoami.query(),
              client.whoami.query(),
              client.whoami.query(),
            ]);
            return { before, login, after };
          } finally {
            close();
          }
        }),
      );
      for (const [i, { before, login, after }] of replies.entries()) {
        const seen = (name: string) => `login-${i}|${name}|${verifiedOf(`user-${i}`)}|<none>|unset`;
        assert.equal(before, seen(`user-${i}`));
        assert.equal(login, seen(`name-${i}`));
        assert.deepEqual(after, Array(3).fill(seen(bound ? `user-${i}` : `name-${i}`)));
      }
    });

    it("a middleware's run(path, next) reaches a query but not a subscription's events; iterateIn(copyContext(), gen) does", async () => {
      const count = 20;
      gate = barriers(count * 2);
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          await randomDelay();
          const headers = { "x-request-id": `sub-${i}`, "x-user": `user-${i}` };
          const { client, close } = wsClient(served.base, headers);
          try {
            const [query, plain, wrapped] = await Promise.all([
              client.path.query(),
              collect((handlers) => client.pathTicks.subscribe(undefined, handlers)),
              collect((handlers) => client.pathTicksIn.subscribe(undefined, handlers)),
            ]);
            return { query, plain, wrapped };
          } finally {
            close();
          }
        }),
      );
      for (const [i, { query, plain, wrapped }] of replies.entries()) {
        const own = `sub-${i}|user-${i}|${verifiedOf(`user-${i}`)}|<none>|unset`;
        assert.equal(query, "path");
        assert.deepEqual(
          plain,
          [0, 1, 2].map((n) => `${n}:${own}|<none>`),
        );
        assert.deepEqual(
          wrapped,
          [0, 1, 2].map((n) => `${n}:${own}|pathTicksIn`),
        );
      }
    });
  });
}
