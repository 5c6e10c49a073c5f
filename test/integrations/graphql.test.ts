/**
 * GraphQL servers on the framework integrations, with real servers on
 * 127.0.0.1 and real clients: Apollo Server 5 through `expressMiddleware`
 * (@as-integrations/express5) behind `contextMiddleware`, and through
 * `startStandaloneServer`, which has no place to mount one; graphql-yoga
 * under `withContext`, behind Hono's `contextMiddleware` and on Fastify
 * under `contextPlugin`; mercurius on Fastify under `contextPlugin`, with
 * its `loaders` and its WebSocket subscriptions.
 *
 * Each query's `context` function sets `user`, waits until every query of
 * the round has arrived (so all of them are in flight at once, whatever the
 * timing), then sets `role`; nested async resolvers read both after awaits
 * of their own. Where requests share a Context, the hold makes the leak
 * exact: every query reads the `user` the last one set.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { expressMiddleware } from "@as-integrations/express5";
import { getRequestListener } from "@hono/node-server";
import { Context, ContextVar, isolated } from "contextvars";
import { contextMiddleware as expressContext, requestId } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { contextMiddleware as honoContext } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import express from "express";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { createSchema, createYoga } from "graphql-yoga";
import { Hono } from "hono";
import mercurius from "mercurius";
import { WebSocket } from "ws";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";
import { latch } from "../helpers/latch.ts";
import { type Entry, pinoToMemory } from "../helpers/logging.ts";

/** Set in the `context` function before its await. */
const user = new ContextVar<string>("graphql.user");
/** Set in the `context` function after its await. */
const role = new ContextVar<string>("graphql.role");
/** Set by each sibling field's resolver, then read after an await. */
const label = new ContextVar<string>("graphql.label");

const typeDefs = /* GraphQL */ `
  type Query {
    viewer: Viewer!
    a: String!
    b: String!
    c: String!
    d: String!
    e: String!
    isolatedA: String!
    isolatedB: String!
    isolatedC: String!
    isolatedD: String!
    isolatedE: String!
  }
  type Viewer {
    seen: String!
    posts: [Post!]!
  }
  type Post {
    n: Int!
    seen: String!
    author: Author!
  }
  type Author {
    seen: String!
    loadedAs: String
  }
  type Subscription {
    ticks: String!
  }
`;

/** What one query asks: seven reads, at three levels of nested async resolvers. */
const VIEWER = "{ viewer { seen posts { n seen author { seen loadedAs } } } }";

/** The values a resolver reads: the request's id, and what `context` set. */
function values(): string {
  return `${requestId.get("<none>")}|${user.get("<none>")}|${role.get("<none>")}`;
}

/** A resolver that reads the values after two awaits. */
async function seen(): Promise<string> {
  await new Promise((resolve) => setImmediate(resolve));
  await randomDelay(2);
  return values();
}

/**
 * Runs `fn` (a server's listen) in a new empty Context: what reaches the
 * Context a server listens in stays with that server, out of the test's.
 */
function apart<T>(fn: () => T): T {
  return new Context().run(fn);
}

/** Resolves every `arrive()` once `count` have arrived. */
function hold(count: number): { arrive(): Promise<void> } {
  return { arrive: latch(count) };
}

/** The GraphQL context object every server's `context` function returns. */
interface GraphQLContext {
  /** Holds the five sibling fields of one query until all have started. */
  readonly siblings: { arrive(): Promise<void> };
}

/**
 * A sibling field: sets `label` to its name, waits until all five siblings
 * have set theirs, then reads `label`.
 */
function sibling(name: string) {
  return async (_parent: unknown, _args: unknown, context: GraphQLContext): Promise<string> => {
    label.set(name);
    await context.siblings.arrive();
    return label.get();
  };
}

/** The resolvers, logging one pino line per query from `Viewer.seen`. */
function resolvers(log: { info(message: string): void }) {
  return {
    Query: {
      viewer: async () => {
        await randomDelay(2);
        return {};
      },
      ...Object.fromEntries(["a", "b", "c", "d", "e"].map((name) => [name, sibling(name)])),
      ...Object.fromEntries(
        ["A", "B", "C", "D", "E"].map((name) => [
          `isolated${name}`,
          isolated(sibling(name.toLowerCase())),
        ]),
      ),
    },
    Viewer: {
      seen: async () => {
        const read = await seen();
        log.info("viewer resolved");
        return read;
      },
      posts: async () => {
        await randomDelay(2);
        return [{ n: 0 }, { n: 1 }, { n: 2 }];
      },
    },
    Post: {
      seen,
      author: async () => {
        await randomDelay(2);
        return {};
      },
    },
    Author: { seen },
    Subscription: {
      ticks: {
        // Three events, each read after awaits, where the server asks for it.
        subscribe: async function* ticks() {
          for (let n = 0; n < 3; n++) {
            await randomDelay(2);
            yield { ticks: `${n}:${values()}` };
          }
        },
      },
    },
  };
}

/**
 * The `context` function's work, the same on every server: `user` from the
 * `x-user` header, an await (held until the whole round is in), then `role`.
 */
async function setContext(
  header: string | string[] | null | undefined,
  round: { arrive(): Promise<void> },
): Promise<GraphQLContext> {
  user.set(typeof header === "string" ? header : "anonymous");
  await round.arrive();
  role.set(`role:${user.get()}`);
  return { siblings: hold(5) };
}

/** The seven strings one viewer query's answer holds, in order. */
function readsOf(data: unknown): string[] {
  const { viewer } = data as {
    viewer: { seen: string; posts: { seen: string; author: { seen: string } }[] };
  };
  return [viewer.seen, ...viewer.posts.flatMap((post) => [post.seen, post.author.seen])];
}

/** What query i's resolvers read in its own request's Context. */
function own(i: number): string {
  return `q-${i}|user-${i}|role:user-${i}`;
}

/**
 * Sends `count` POSTed queries at once, query i with id `q-i` and user
 * `user-i`; resolves with each answer's `data`.
 */
async function postQueries(url: string, count: number, query: string): Promise<unknown[]> {
  const agent = keepAliveAgent();
  try {
    const { origin, pathname } = new URL(url);
    const replies = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        send(origin, pathname, {
          agent,
          headers: {
            "content-type": "application/json",
            "x-request-id": `q-${i}`,
            "x-user": `user-${i}`,
          },
          body: JSON.stringify({ query }),
        }),
      ),
    );
    return replies.map((reply) => {
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as { data?: unknown; errors?: unknown };
      assert.equal(body.errors, undefined, reply.body);
      return body.data;
    });
  } finally {
    agent.destroy();
  }
}

/** Each of `count` concurrent queries' seven reads, and its pino line, are its own. */
async function expectOwnReads(url: string, count: number, lines: Entry[]): Promise<void> {
  lines.length = 0;
  const answers = await postQueries(url, count, VIEWER);
  answers.forEach((data, i) => {
    assert.deepEqual(readsOf(data), Array(7).fill(own(i)), `query ${i}`);
  });
  assert.equal(lines.length, count);
  const logged = lines.map((line) => `${line.requestId}|${line.user}`).sort();
  const expected = answers.map((_, i) => `q-${i}|user-${i}`).sort();
  assert.deepEqual(logged, expected, "each query's line carries its own id and user");
}

/**
 * `count` queries of five sibling fields (plain or isolated): returns how
 * many fields of how many read another field's `label`, and how many read
 * the label of the field set last (`e`).
 */
async function siblingReads(url: string, count: number, isolatedFields: boolean) {
  const names = isolatedFields
    ? ["isolatedA", "isolatedB", "isolatedC", "isolatedD", "isolatedE"]
    : ["a", "b", "c", "d", "e"];
  const answers = await postQueries(url, count, `{ ${names.join(" ")} }`);
  let wrong = 0;
  let last = 0;
  for (const data of answers) {
    names.forEach((name) => {
      const read = (data as Record<string, string>)[name];
      if (read !== name.slice(-1).toLowerCase()) wrong++;
      if (read === "e") last++;
    });
  }
  return { wrong, last, of: count * names.length };
}

/** GraphQL over SSE: the payloads of every `next` event of one subscription. */
async function subscribeOverSse(base: string, path: string, i: number): Promise<string[]> {
  const query = encodeURIComponent("subscription { ticks }");
  const reply = await send(base, `${path}?query=${query}`, {
    headers: { accept: "text/event-stream", "x-request-id": `s-${i}`, "x-user": `sub-${i}` },
  });
  assert.equal(reply.status, 200, reply.body);
  return reply.body
    .split("\n\n")
    .filter((event) => event.includes("event: next"))
    .map((event) => {
      const data = /^data: (.*)$/m.exec(event)?.[1];
      return (JSON.parse(data ?? "null") as { data: { ticks: string } }).data.ticks;
    });
}

/** What `count` concurrent subscriptions' events read, by subscription. */
function subscribeAll(base: string, path: string, count: number): Promise<string[][]> {
  return Promise.all(Array.from({ length: count }, (_, i) => subscribeOverSse(base, path, i)));
}

const COUNT = 40;
const SUBSCRIPTIONS = 20;

describe("Apollo Server 5 through expressMiddleware behind contextMiddleware", () => {
  const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });
  let round = hold(COUNT);
  let apollo: ApolloServer<GraphQLContext>;
  let server: Server;
  let url = "";

  before(async () => {
    apollo = new ApolloServer<GraphQLContext>({ typeDefs, resolvers: resolvers(logger) });
    await apollo.start();
    const app = express();
    app.use(expressContext());
    app.use(
      "/graphql",
      express.json(),
      expressMiddleware(apollo, {
        context: ({ req }) => setContext(req.get("x-user"), round),
      }),
    );
    server = createServer(app);
    url = `${await apart(() => listen(server))}/graphql`;
  });
  after(async () => {
    await apollo.stop();
    await close(server);
  });

  it("every resolver reads its own query's values, set before and after the context function's await", async () => {
    round = hold(COUNT);
    await expectOwnReads(url, COUNT, lines);
  });

  it("sibling fields share the query's Context; isolated(resolver) gives each its own", async () => {
    round = hold(COUNT);
    // The five fields set `label` in turn, then read it: the last set wins.
    assert.deepEqual(await siblingReads(url, COUNT, false), {
      wrong: 4 * COUNT,
      last: 5 * COUNT,
      of: 5 * COUNT,
    });
    round = hold(COUNT);
    assert.deepEqual(await siblingReads(url, COUNT, true), {
      wrong: 0,
      last: COUNT,
      of: 5 * COUNT,
    });
  });
});

describe("graphql-yoga 5", () => {
  const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });
  let round = hold(COUNT);
  const yoga = createYoga<{ req?: FastifyRequest; reply?: FastifyReply }, GraphQLContext>({
    schema: createSchema({ typeDefs, resolvers: resolvers(logger) }),
    context: ({ request }) => setContext(request.headers.get("x-user"), round),
    logging: false,
  });
  const hono = new Hono();
  hono.use(honoContext());
  hono.on(["GET", "POST"], "/graphql", (c) => yoga.fetch(c.req.raw));
  const servers = {
    "under withContext": createServer(withContext(yoga)),
    "behind Hono's contextMiddleware": createServer(getRequestListener(hono.fetch)),
    "behind Hono's contextMiddleware, under withContext": createServer(
      withContext(getRequestListener(hono.fetch)),
    ),
  };
  const bases = new Map<string, string>();
  let fastify: FastifyInstance;

  before(async () => {
    for (const [name, server] of Object.entries(servers))
      bases.set(name, await apart(() => listen(server)));
    // yoga's Fastify recipe, under contextPlugin.
    fastify = Fastify();
    await fastify.register(contextPlugin);
    fastify.addContentTypeParser("multipart/form-data", {}, (_request, _payload, done) =>
      done(null),
    );
    fastify.route({
      url: yoga.graphqlEndpoint,
      method: ["GET", "POST", "OPTIONS"],
      handler: (req, reply) => yoga.handleNodeRequestAndResponse(req, reply, { req, reply }),
    });
    bases.set(
      "on Fastify under contextPlugin",
      await apart(() => fastify.listen({ host: "127.0.0.1", port: 0 })),
    );
  });
  after(async () => {
    await fastify.close();
    for (const server of Object.values(servers)) await close(server);
  });

  for (const name of [
    "under withContext",
    "behind Hono's contextMiddleware",
    "on Fastify under contextPlugin",
  ]) {
    it(`${name}: every resolver reads its own query's values`, async () => {
      round = hold(COUNT);
      await expectOwnReads(`${bases.get(name)}/graphql`, COUNT, lines);
    });
  }

  for (const name of [
    "under withContext",
    "behind Hono's contextMiddleware",
    "behind Hono's contextMiddleware, under withContext",
    "on Fastify under contextPlugin",
  ]) {
    // @hono/node-server reads the SSE body, a web ReadableStream, outside
    // the request: the subscription's generator steps where it is read.
    const outside = name === "behind Hono's contextMiddleware";
    it(`${name}: subscription events over SSE ${outside ? "see no request value" : "each see their own"}`, async () => {
      round = hold(SUBSCRIPTIONS);
      const events = await subscribeAll(bases.get(name) as string, "/graphql", SUBSCRIPTIONS);
      events.forEach((ticks, i) => {
        const read = outside ? "<none>|<none>|<none>" : `s-${i}|sub-${i}|role:sub-${i}`;
        assert.deepEqual(
          ticks,
          [0, 1, 2].map((n) => `${n}:${read}`),
          `subscription ${i}`,
        );
      });
    });
  }
});

/**
 * One graphql-transport-ws subscription to `ticks` on its own connection,
 * with id `w-i` and user `ws-i` on the upgrade; the payloads of its events.
 */
async function subscribeOverWebSocket(url: string, i: number): Promise<string[]> {
  const socket = new WebSocket(url, "graphql-transport-ws", {
    headers: { "x-request-id": `w-${i}`, "x-user": `ws-${i}` },
  });
  const ticks: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`subscription ${i} closed early`)));
    socket.on("message", (raw) => {
      const message = JSON.parse(String(raw)) as {
        type: string;
        payload?: { data?: { ticks: string } };
      };
      if (message.type === "connection_ack") {
        socket.send(
          JSON.stringify({
            id: "1",
            type: "subscribe",
            payload: { query: "subscription { ticks }" },
          }),
        );
      } else if (message.type === "next") {
        ticks.push(message.payload?.data?.ticks ?? JSON.stringify(message));
      } else if (message.type === "complete") {
        resolve();
      } else {
        reject(new Error(`subscription ${i}: ${String(raw)}`));
      }
    });
  });
  socket.on("open", () => socket.send(JSON.stringify({ type: "connection_init" })));
  try {
    await done;
  } finally {
    socket.removeAllListeners("close");
    socket.terminate();
  }
  return ticks;
}

describe("mercurius on Fastify 5 under contextPlugin", () => {
  const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });
  let round = hold(COUNT);
  /** What each loader call read, and how many keys it had. */
  const batches: string[] = [];
  let app: FastifyInstance;
  let base = "";

  before(async () => {
    app = Fastify();
    await app.register(contextPlugin);
    await app.register(mercurius, {
      schema: typeDefs,
      resolvers: resolvers(logger),
      // One loader per request: each batch holds that request's keys.
      loaders: {
        Post: {
          author: async (queries: unknown[]) => {
            await randomDelay(2);
            const read = values();
            batches.push(`${queries.length}:${read}`);
            return queries.map(() => ({ loadedAs: read }));
          },
        },
      },
      context: (request) => setContext(request.headers["x-user"], round),
      subscription: {
        context: (_socket, request) => setContext(request.headers["x-user"], round),
      },
    });
    base = await apart(() => app.listen({ host: "127.0.0.1", port: 0 }));
  });
  after(() => app.close());

  it("every resolver and every loader batch reads its own query's values", async () => {
    round = hold(COUNT);
    batches.length = 0;
    await expectOwnReads(`${base}/graphql`, COUNT, lines);
    const expected = Array.from({ length: COUNT }, (_, i) => `3:${own(i)}`);
    assert.deepEqual(batches.sort(), expected.sort());
  });

  it("subscription events over WebSocket each see their own connection's values", async () => {
    round = hold(SUBSCRIPTIONS);
    const url = `${base.replace("http", "ws")}/graphql`;
    const events = await Promise.all(
      Array.from({ length: SUBSCRIPTIONS }, (_, i) => subscribeOverWebSocket(url, i)),
    );
    events.forEach((ticks, i) => {
      const read = `w-${i}|ws-${i}|role:ws-${i}`;
      assert.deepEqual(
        ticks,
        [0, 1, 2].map((n) => `${n}:${read}`),
        `subscription ${i}`,
      );
    });
  });
});

// Last in the file: where a server's listeners run in the root Context
// (Deno's node:http), these sets land there, for every later test to read.
describe("Apollo's startStandaloneServer: no Context per request", () => {
  const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user }) });
  let round = hold(COUNT);
  const apollo = new ApolloServer<GraphQLContext>({ typeDefs, resolvers: resolvers(logger) });
  const listening = new Context();
  let url = "";

  before(async () => {
    ({ url } = await listening.run(() =>
      startStandaloneServer(apollo, {
        listen: { host: "127.0.0.1", port: 0 },
        context: ({ req }) => setContext(req.headers["x-user"], round),
      }),
    ));
  });
  after(() => apollo.stop());

  it("a var set in `context` lands in the Context the server listens in, not the test's", async () => {
    round = hold(1);
    const [data] = await postQueries(url, 1, VIEWER);
    assert.deepEqual(readsOf(data), Array(7).fill("<none>|user-0|role:user-0"));
    assert.equal(listening.get(user), "user-0");
    assert.equal(user.get("unset"), "unset");
  });

  it("every query reads the user the last one set in `context`", async () => {
    round = hold(COUNT);
    lines.length = 0;
    const answers = await postQueries(url, COUNT, VIEWER);
    const users = answers.flatMap((data) => readsOf(data).map((read) => read.split("|")[1]));
    // Every query set `user`, then waited for all the others: each read
    // the one set last, in the one Context they all share.
    const last = users[0] as string;
    assert.deepEqual(users, Array(7 * COUNT).fill(last), "every read saw the same user");
    const others = users.filter((read, n) => read !== `user-${Math.floor(n / 7)}`).length;
    assert.equal(others, (COUNT - 1) * 7, `${others} of ${users.length} reads saw another's user`);
    assert.ok(
      answers.every((data) => readsOf(data).every((read) => read.startsWith("<none>|"))),
      "no request id anywhere",
    );
    assert.equal(lines.length, COUNT);
    assert.ok(lines.every((line) => line.user === last && line.requestId === undefined));
  });
});
