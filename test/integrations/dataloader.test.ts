/**
 * DataLoader (docs/integrations.md, "GraphQL and tRPC"): in which Context
 * its batch function runs, and what that means for a loader made per
 * request and for one shared by every request. A node:http server under
 * `withContext` answers graphql-js queries whose `Post.author` resolver
 * loads through a loader; each author comes back stamped with the request
 * id and user its batch function (or, with the docs' fix, its per-key
 * work) ran under. Where requests must share a batch window, each request
 * waits at a latch until all have arrived, so the interleaving is the same
 * on every run:
 *
 *   - the batch function runs in the Context of the `load()` that started
 *     the batch, that Context itself: its `set` is seen there;
 *   - a loader per request: every batch holds that request's keys only and
 *     runs in its Context;
 *   - a loader shared by every request, `batchScheduleFn: (run) =>
 *     setTimeout(run, 5)`: one batch takes the keys of every request,
 *     loaded under the first request's id; its cache hands the first
 *     viewer's result to every later one;
 *   - the docs' fix, the batch function bound to a Context of its own and
 *     per-key work in the load()'s own Context: every key gets its own
 *     request's values, in a batch that spans every request;
 *   - DataLoader's default schedule: the batch is sent before the next
 *     timer or I/O callback, so requests arriving on their own sockets
 *     never share one; loads resumed by one promise that several requests
 *     await do.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { bind, Context, ContextVar, copyContext } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import DataLoader from "dataloader";
import {
  buildSchema,
  defaultFieldResolver,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLFieldResolver,
  graphql,
} from "graphql";
import { close, keepAliveAgent, listen, send } from "../helpers/http.ts";

const REQUESTS = 40;
const POSTS = 5; // per request: 200 authors in a round

const user = new ContextVar<string>("user", { default: "anonymous" });
/** What a batch function sets: must land where the docs say it does. */
const touched = new ContextVar<string>("touched", { default: "no" });

interface Author {
  id: string;
  /** The request id and user the row was made under. */
  requestId: string;
  user: string;
}

/** One call of a batch function: the requests its keys came from, and the request it ran in. */
interface Batch {
  readonly from: ReadonlySet<string>;
  readonly ranIn: string;
}

const schema = buildSchema(`
  type Author { id: ID!, requestId: String!, user: String! }
  type Post { id: ID!, author: Author! }
  type Query { posts: [Post!]! }
`);
const QUERY = "{ posts { id author { id requestId user } } }";

/** A row as the database would give it, stamped with where it was made. */
function row(id: string): Author {
  return { id, requestId: requestId.get("none"), user: user.get() };
}

/** A database round trip: the rows after an I/O turn. */
async function fetchAuthors(ids: readonly string[]): Promise<Author[]> {
  await new Promise((resolve) => setImmediate(resolve));
  return ids.map(row);
}

/** A key that says which request loaded it, for a loader with `cache: false`. */
interface TaggedKey {
  readonly id: string;
  readonly from: string;
}

/** The docs' key: the id and the Context of the load() that asked for it. */
interface ContextKey {
  readonly id: string;
  readonly context: Context;
}

type Mode = "per-request" | "shared" | "shared-cache" | "bound" | "default";

/** Per-round state: the loaders of a round, the batches they ran, the latch. */
interface Round {
  mode: Mode;
  latch: boolean;
  batches: Batch[];
  tagged?: DataLoader<TaggedKey, Author, string>;
  cached?: DataLoader<string, Author>;
  bound?: DataLoader<ContextKey, Author, string>;
  arrived: number;
  release: () => void;
  released: Promise<void>;
}

let round: Round;

function newRound(mode: Mode, latch: boolean): Round {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const batches: Batch[] = [];
  const next: Round = { mode, latch, batches, arrived: 0, release, released };
  const taggedBatch = async (keys: readonly TaggedKey[]) => {
    batches.push({ from: new Set(keys.map((k) => k.from)), ranIn: requestId.get("none") });
    touched.set("by a batch");
    return fetchAuthors(keys.map((k) => k.id));
  };
  if (mode === "shared") {
    next.tagged = new DataLoader(taggedBatch, {
      cache: false,
      batchScheduleFn: (run) => setTimeout(run, 5),
    });
  } else if (mode === "default") {
    next.tagged = new DataLoader(taggedBatch, { cache: false });
  } else if (mode === "shared-cache") {
    next.cached = new DataLoader(async (ids: readonly string[]) => {
      batches.push({ from: new Set([requestId.get("none")]), ranIn: requestId.get("none") });
      return fetchAuthors(ids);
    });
  } else if (mode === "bound") {
    // As docs/integrations.md gives it.
    next.bound = new DataLoader<ContextKey, Author, string>(
      bind(async (keys: readonly ContextKey[]) => {
        batches.push({
          from: new Set(keys.map((k) => k.context.get(requestId, "none"))),
          ranIn: requestId.get("none"),
        });
        touched.set("by a batch");
        await new Promise((resolve) => setImmediate(resolve));
        return keys.map((key) => key.context.run(() => row(key.id)));
      }, new Context()),
      { cacheKeyFn: (key) => key.id, cache: false, batchScheduleFn: (run) => setTimeout(run, 5) },
    );
  }
  return next;
}

interface GraphQLContext {
  /** This request's own loader, made with its context value. */
  users: DataLoader<TaggedKey, Author, string>;
}

/** `Post.author` through the round's loader; every other field as graphql-js resolves it. */
const fieldResolver: GraphQLFieldResolver<unknown, GraphQLContext> = (source, args, ctx, info) => {
  if (info.fieldName !== "author") return defaultFieldResolver(source, args, ctx, info);
  const post = source as { authorId: string };
  const from = requestId.get();
  switch (round.mode) {
    case "per-request":
      return ctx.users.load({ id: post.authorId, from });
    case "shared":
    case "default":
      return round.tagged?.load({ id: post.authorId, from });
    case "shared-cache":
      return round.cached?.load(post.authorId);
    case "bound":
      return round.bound?.load({ id: post.authorId, context: copyContext() });
  }
};

const rootValue = {
  posts: () => Array.from({ length: POSTS }, (_, i) => ({ id: `p${i}`, authorId: `a${i}` })),
};

let base: string;
let server: ReturnType<typeof createServer>;
const agent = keepAliveAgent();

before(async () => {
  server = createServer(
    withContext(
      async (_req, res) => {
        const current = round;
        if (current.latch) {
          // Held until every request of the round has arrived: they all
          // resume from this one promise.
          if (++current.arrived === REQUESTS) current.release();
          await current.released;
        }
        // One loader per request, as a `context` function makes it.
        const users = new DataLoader<TaggedKey, Author, string>(async (keys) => {
          current.batches.push({
            from: new Set(keys.map((k) => k.from)),
            ranIn: requestId.get("none"),
          });
          return fetchAuthors(keys.map((k) => k.id));
        });
        const result: ExecutionResult = await graphql({
          schema,
          source: QUERY,
          rootValue,
          fieldResolver,
          contextValue: { users } satisfies GraphQLContext,
        });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ ...result, touched: touched.get() }));
      },
      { seed: (req) => user.set(String(req.headers["x-user"])) },
    ),
  );
  base = await listen(server);
});

after(async () => {
  agent.destroy();
  await close(server);
});

interface Reply {
  id: string;
  user: string;
  authors: Author[];
  touched: string;
}

async function query(n: number): Promise<Reply> {
  const id = `req-${n}`;
  const reply = await send(base, "/graphql", {
    headers: { "x-request-id": id, "x-user": `user-${n}` },
    agent,
  });
  assert.equal(reply.status, 200, reply.body);
  const body = JSON.parse(reply.body) as {
    data?: { posts: { author: Author }[] };
    errors?: GraphQLError[];
    touched: string;
  };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return {
    id,
    user: `user-${n}`,
    authors: (body.data?.posts ?? []).map((p) => p.author),
    touched: body.touched,
  };
}

/** Sends a round's requests, all at once or one after another. */
async function runRound(mode: Mode, options: { latch?: boolean; serial?: boolean } = {}) {
  round = newRound(mode, options.latch ?? false);
  const replies: Reply[] = [];
  if (options.serial) for (let n = 0; n < REQUESTS; n++) replies.push(await query(n));
  else replies.push(...(await Promise.all(Array.from({ length: REQUESTS }, (_, n) => query(n)))));
  const authors = replies.flatMap((r) => r.authors.map((a) => ({ reply: r, author: a })));
  assert.equal(authors.length, REQUESTS * POSTS);
  return {
    replies,
    batches: round.batches,
    /** Authors made under another request's id, or with another user. */
    foreign: authors.filter(({ reply, author }) => author.requestId !== reply.id).length,
    otherUser: authors.filter(({ reply, author }) => author.user !== reply.user).length,
    spanning: round.batches.filter((b) => b.from.size > 1).length,
  };
}

describe("DataLoader under withContext", { timeout: 60_000 }, () => {
  it("runs the batch function in the Context of the load() that started the batch, that Context itself", async () => {
    const seen: string[] = [];
    const loader = new DataLoader<string, string>(async (keys) => {
      seen.push(user.get());
      touched.set("by a batch");
      return keys.map((k) => `${k} for ${user.get()}`);
    });
    const first = new Context();
    const second = new Context();
    first.run(() => user.set("first"));
    second.run(() => user.set("second"));
    const [a, b] = await Promise.all([
      first.run(() => loader.load("x")),
      second.run(() => loader.load("y")),
    ]);
    assert.deepEqual(seen, ["first"], "one batch, run in the first load()'s Context");
    assert.equal(a, "x for first");
    assert.equal(b, "y for first", "the second load got the first one's values");
    assert.equal(first.get(touched), "by a batch", "the batch's set landed in that Context");
    assert.equal(second.get(touched), undefined);
  });

  it("a loader per request: every batch holds its request's keys and runs in its Context", async () => {
    const { batches, foreign, otherUser, spanning, replies } = await runRound("per-request", {
      latch: true,
    });
    assert.equal(batches.length, REQUESTS, "one batch per request");
    assert.equal(spanning, 0);
    for (const batch of batches) assert.deepEqual([...batch.from], [batch.ranIn]);
    assert.equal(foreign, 0);
    assert.equal(otherUser, 0);
    assert.ok(replies.every((r) => r.touched === "no"));
  });

  it("a shared loader with a 5 ms window: one batch of every request's keys, under the first request's id", async () => {
    const { batches, foreign, otherUser, spanning, replies } = await runRound("shared", {
      latch: true,
    });
    assert.equal(batches.length, 1, "every request's keys in one batch");
    assert.equal(spanning, 1);
    assert.equal(batches[0]?.from.size, REQUESTS);
    // The request whose load() came first (the first to resume at the latch).
    const first = batches[0]?.ranIn;
    assert.match(String(first), /^req-/);
    // Its set landed in that request's Context, and in no other.
    assert.deepEqual(
      replies.filter((r) => r.touched !== "no").map((r) => r.id),
      [first],
    );
    // All but the first request's five authors were made under its id.
    assert.equal(foreign, (REQUESTS - 1) * POSTS);
    assert.equal(otherUser, (REQUESTS - 1) * POSTS);
  });

  it("a shared loader's cache hands the first viewer's result to every later one", async () => {
    const { batches, foreign, otherUser, spanning } = await runRound("shared-cache", {
      serial: true,
    });
    assert.equal(spanning, 0, "one request at a time");
    assert.equal(batches.length, 1, "the first request's batch filled the cache");
    assert.equal(foreign, (REQUESTS - 1) * POSTS);
    assert.equal(otherUser, (REQUESTS - 1) * POSTS);
  });

  it("the docs' fix: batch function bound to its own Context, per-key work in each load()'s Context", async () => {
    const { batches, foreign, otherUser, spanning, replies } = await runRound("bound", {
      latch: true,
    });
    assert.equal(spanning, 1, "one batch spans every request");
    assert.equal(batches[0]?.from.size, REQUESTS);
    assert.equal(batches[0]?.ranIn, "none", "the batch function runs in no request");
    assert.equal(foreign, 0);
    assert.equal(otherUser, 0);
    assert.ok(
      replies.every((r) => r.touched === "no"),
      "its set landed in no request",
    );
  });

  it("the default schedule: requests on their own sockets never share a batch", async () => {
    const { batches, foreign, spanning } = await runRound("default");
    assert.equal(batches.length, REQUESTS);
    assert.equal(spanning, 0);
    assert.equal(foreign, 0);
    for (const batch of batches) assert.deepEqual([...batch.from], [batch.ranIn]);
  });

  it("the default schedule: loads resumed by one promise that every request awaits share a batch", async () => {
    const { batches, foreign, spanning } = await runRound("default", { latch: true });
    assert.equal(batches.length, 1);
    assert.equal(spanning, 1);
    assert.equal(batches[0]?.from.size, REQUESTS);
    assert.equal(foreign, (REQUESTS - 1) * POSTS);
  });

  it("the default schedule sends a batch before the next timer or I/O callback", async () => {
    const order: string[] = [];
    const loader = new DataLoader<number, number>(async (keys) => {
      order.push(`batch ${keys.join(",")}`);
      return keys;
    });
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push("timer");
        resolve();
      }, 0),
    );
    const io = new Promise<void>((resolve) =>
      setImmediate(() => {
        order.push("immediate");
        resolve();
      }),
    );
    const loads = [loader.load(1), Promise.resolve().then(() => loader.load(2))];
    await Promise.all([...loads, timer, io]);
    assert.equal(order[0], "batch 1,2", "loads of one turn, promise jobs included, in one batch");
  });
});
