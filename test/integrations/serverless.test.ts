/**
 * Serverless function handlers: Google Cloud Functions Framework 5 (its own
 * Express app on a real HTTP server, HTTP and CloudEvent functions, driven by
 * concurrent requests) and AWS Lambda-style handlers invoked one after
 * another in one warm process as the Lambda runtime does (plain handlers,
 * callback handlers, serverless-http over Express, @fastify/aws-lambda).
 */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import awsLambdaFastify from "@fastify/aws-lambda";
import * as functions from "@google-cloud/functions-framework";
import { getTestServer } from "@google-cloud/functions-framework/testing";
import middy from "@middy/core";
import { context, trace } from "@opentelemetry/api";
import { Context, ContextVar, isolated } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import express from "express";
import Fastify from "fastify";
import serverlessHttp from "serverless-http";
import { close, keepAliveAgent, listen, randomDelay, send, UUID } from "../helpers/http.ts";

context.setGlobalContextManager(new ContextVarsContextManager().enable());

const user = new ContextVar<string>("user");
const carry = contextPropagation({ "user.id": user });
const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const traceparent = (i: number) => `00-${TRACE_ID}-${i.toString(16).padStart(16, "1")}-01`;
const activeSpanId = () => trace.getSpanContext(context.active())?.spanId;

/** A barrier: resolves once `count` callers have arrived, so every request has set its var before any reads it. */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return () => {
    if (++arrived === count) open();
    return opened;
  };
}

describe("Cloud Functions Framework: HTTP functions", { timeout: 60_000 }, () => {
  const N = 100;
  const arrive = barrier(N);
  const finished: { header: string; user: string; id: string }[] = [];
  let wrappedServer: Server;
  let wrapped: string;

  functions.http(
    "wrapped",
    withContext(
      async (req: functions.Request, res: functions.Response) => {
        await arrive(); // every request has run its seed and set its vars
        await randomDelay();
        const header = String(req.headers["x-user"]);
        res.on("finish", () => finished.push({ header, user: user.get(), id: requestId.get() }));
        res.json({
          user: user.get("anonymous"),
          id: requestId.get(),
          span: activeSpanId(),
          body: req.body,
        });
      },
      {
        seed: (req) => {
          carry.extractInto(req.headers); // traceparent and baggage
          if (req.headers["x-user"] !== undefined) user.set(String(req.headers["x-user"]));
        },
      },
    ),
  );

  before(async () => {
    wrappedServer = getTestServer("wrapped");
    wrapped = await listen(wrappedServer);
  });
  after(() => close(wrappedServer));

  it("withContext around the handler: each of 100 concurrent invocations has its own Context", async () => {
    const agent = keepAliveAgent();
    const replies = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        send(wrapped, "/", {
          agent,
          headers: {
            "content-type": "application/json",
            "x-user": `u${i}`,
            ...(i % 2 === 0 ? { "x-request-id": `req-${i}` } : {}),
            traceparent: traceparent(i),
            baggage: `user.id=b${i}`,
          },
          body: JSON.stringify({ i }),
        }),
      ),
    );
    agent.destroy();
    replies.forEach((reply, i) => {
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as {
        user: string;
        id: string;
        span: string;
        body: unknown;
      };
      assert.equal(body.user, `u${i}`, "x-user, set in seed after the baggage's user.id");
      assert.deepEqual(body.body, { i }, "the framework's body parser ran before the handler");
      assert.equal(
        body.span,
        traceparent(i).split("-")[2],
        "traceparent made active by extractInto",
      );
      if (i % 2 === 0) assert.equal(body.id, `req-${i}`);
      else assert.match(body.id, UUID);
      assert.equal(reply.headers["x-request-id"], body.id);
    });
    assert.equal(finished.length, N);
    for (const f of finished)
      assert.equal(f.user, f.header, "res listeners run in the invocation's Context");
    assert.equal(user.get("unset"), "unset", "nothing reached the test's Context");
  });

  it("X-Cloud-Trace-Context alone makes no trace active: extractInto reads traceparent", async () => {
    const reply = await send(wrapped, "/", {
      headers: { "x-cloud-trace-context": `${TRACE_ID}/1234;o=1` },
    });
    assert.equal(JSON.parse(reply.body).span, undefined);
  });

  it("the baggage sets user.id where no x-user header overrides it", async () => {
    const reply = await send(wrapped, "/", { headers: { baggage: "user.id=from-baggage" } });
    assert.equal(JSON.parse(reply.body).user, "from-baggage");
  });
});

describe("Cloud Functions Framework: an Express app as the HTTP function", {
  timeout: 60_000,
}, () => {
  const N = 60;
  const arrive = barrier(N);
  const finished: { header: string; user: string }[] = [];
  let server: Server;
  let base: string;

  // The framework calls the function with (req, res); an Express app is
  // such a function, and contextMiddleware mounts in it as in any app.
  const app = express();
  app.use(contextMiddleware({ seed: (req) => carry.extractInto(req.headers) }));
  app.use(async (req, res, next) => {
    await sleep(1);
    user.set(req.get("x-user") ?? "anonymous");
    const header = String(req.get("x-user"));
    res.on("finish", () => finished.push({ header, user: user.get() }));
    next();
  });
  app.post("/orders", async (req, res) => {
    await arrive();
    await randomDelay();
    res.json({ user: user.get(), id: requestId.get(), span: activeSpanId(), body: req.body });
  });
  // The cast: @koa/bodyparser, installed for the Koa tests, declares a
  // rawBody of its own type on every IncomingMessage, at odds with the
  // framework's Buffer; without it the app is an HttpFunction as it is.
  functions.http("app", app as unknown as functions.HttpFunction);

  before(async () => {
    server = getTestServer("app");
    base = await listen(server);
  });
  after(() => close(server));

  it("each of 60 concurrent invocations has its own Context, from middleware to res listeners", async () => {
    const agent = keepAliveAgent();
    const replies = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        send(base, "/orders", {
          agent,
          headers: {
            "content-type": "application/json",
            "x-user": `u${i}`,
            "x-request-id": `req-${i}`,
            traceparent: traceparent(i),
          },
          body: JSON.stringify({ i }),
        }),
      ),
    );
    agent.destroy();
    replies.forEach((reply, i) => {
      assert.equal(reply.status, 200, reply.body);
      assert.deepEqual(JSON.parse(reply.body), {
        user: `u${i}`,
        id: `req-${i}`,
        span: traceparent(i).split("-")[2],
        body: { i },
      });
      assert.equal(reply.headers["x-request-id"], `req-${i}`);
    });
    assert.equal(finished.length, N);
    for (const f of finished) assert.equal(f.user, f.header);
  });
});

describe("Cloud Functions Framework: an HTTP function without a wrapper", {
  timeout: 60_000,
}, () => {
  const N = 20;
  const arrive = barrier(N);
  const first: string[] = [];
  let server: Server;
  let base: string;

  // Every invocation runs in the one Context the framework's server handles
  // requests in: a set there is seen by the concurrent ones and the next.
  functions.http("bare", async (req, res) => {
    first.push(user.get("none"));
    user.set(String(req.headers["x-user"]));
    await arrive();
    res.json({ user: user.get() });
  });

  // The server listens in a Context of its own here; started at a module's
  // top level, as the framework's CLI starts it, that is the root Context.
  const serverContext = new Context();
  before(async () => {
    server = getTestServer("bare");
    base = await serverContext.run(() => listen(server));
  });
  after(() => close(server));

  it("shares one Context between concurrent invocations, and keeps the last value", async () => {
    const replies = await Promise.all(
      Array.from({ length: N }, (_, i) => send(base, "/", { headers: { "x-user": `u${i}` } })),
    );
    const wrong = replies.filter((reply, i) => JSON.parse(reply.body).user !== `u${i}`).length;
    assert.equal(wrong, N - 1, "all but the last to set read another invocation's user");
    const later = await send(base, "/", { headers: { "x-user": "next" } });
    assert.equal(later.status, 200);
    assert.match(
      first.at(-1) ?? "",
      /^u\d+$/,
      "the next invocation starts with the last one's value",
    );
    assert.equal(
      serverContext.get(user),
      "next",
      "which stays in the Context the server listens in",
    );
  });
});

describe("Cloud Functions Framework: CloudEvent functions", { timeout: 60_000 }, () => {
  const N = 50;
  const arrive = barrier(N);
  const seen = new Map<
    string,
    { id: string; user: string; span: string | undefined; later: string }
  >();
  let server: Server;
  let base: string;
  let callbackServer: Server;
  let callbackBase: string;

  // A CloudEvent function gets the event alone, no req: isolated gives each
  // call its own copy of the Context it is called in, and the handler sets
  // its vars from the event.
  functions.cloudEvent<{ user: string }>(
    "event",
    isolated(async (event: functions.CloudEvent<{ user: string }>) => {
      requestId.set(event.id);
      if (event.traceparent !== undefined)
        carry.extractInto({ traceparent: String(event.traceparent) });
      user.set(event.data?.user ?? "anonymous");
      await arrive();
      await randomDelay();
      const entry = { id: requestId.get(), user: user.get(), span: activeSpanId(), later: "" };
      seen.set(event.id, entry);
      // Work left running after the function returns stays in its Context.
      setTimeout(() => {
        entry.later = user.get();
      }, 5);
    }),
  );

  // With two parameters the framework passes a callback; isolated keeps the
  // function's length, so the framework still sees a callback function.
  const withCallback: functions.CloudEventFunctionWithCallback<{ user: string }> = (
    event,
    callback,
  ) => {
    user.set(event.data?.user ?? "anonymous");
    setTimeout(() => {
      seen.set(event.id, { id: event.id, user: user.get(), span: undefined, later: "" });
      callback();
    }, 1);
  };
  functions.cloudEvent("event-callback", isolated(withCallback));

  before(async () => {
    server = getTestServer("event");
    base = await listen(server);
    callbackServer = getTestServer("event-callback");
    callbackBase = await listen(callbackServer);
  });
  after(async () => {
    await close(server);
    await close(callbackServer);
  });

  const structured = (i: number, data: unknown) =>
    JSON.stringify({
      specversion: "1.0",
      id: `ev-${i}`,
      source: "//pubsub.googleapis.com/projects/p/topics/t",
      type: "google.cloud.pubsub.topic.v1.messagePublished",
      data,
    });

  it("isolated: each of 50 concurrent events has its own Context, trace and id", async () => {
    const replies = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        send(base, "/", {
          headers: { "content-type": "application/cloudevents+json", traceparent: traceparent(i) },
          body: structured(i, { user: `u${i}` }),
        }),
      ),
    );
    for (const reply of replies) assert.equal(reply.status, 204, reply.body);
    await sleep(20);
    for (let i = 0; i < N; i++) {
      assert.deepEqual(seen.get(`ev-${i}`), {
        id: `ev-${i}`,
        user: `u${i}`,
        span: traceparent(i).split("-")[2],
        later: `u${i}`,
      });
    }
    assert.equal(user.get("unset"), "unset");
  });

  it("isolated keeps a callback function's length: the framework waits for the callback", async () => {
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        send(callbackBase, "/", {
          headers: { "content-type": "application/cloudevents+json" },
          body: structured(100 + i, { user: `c${i}` }),
        }),
      ),
    );
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 204, reply.body);
      assert.equal(seen.get(`ev-${100 + i}`)?.user, `c${i}`, "set before the callback was called");
    }
  });
});

/** The parts of Lambda's context object these handlers read. */
interface LambdaContext {
  awsRequestId: string;
  functionName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}
type LambdaCallback = (error: unknown, result?: unknown) => void;
type LambdaHandler = (event: never, context: LambdaContext, callback: LambdaCallback) => unknown;

/**
 * What the Lambda runtime does in one warm process: it fetches the next
 * event, calls the handler with (event, context, callback), takes the
 * result from the returned promise or from the callback, and only then
 * fetches the next one; each iteration starts from a setImmediate, all of
 * them in the Context the runtime's loop runs in.
 */
async function invokeWarm(
  handler: LambdaHandler,
  events: readonly unknown[],
  loopContext: Context,
): Promise<unknown[]> {
  return loopContext.run(async () => {
    const results: unknown[] = [];
    for (const [i, event] of events.entries()) {
      await new Promise((resolve) => setImmediate(resolve));
      const lambdaContext: LambdaContext = {
        awsRequestId: `aws-${i}`,
        functionName: "orders",
        callbackWaitsForEmptyEventLoop: true,
        getRemainingTimeInMillis: () => 3000,
      };
      results.push(
        await new Promise((resolve, reject) => {
          const callback: LambdaCallback = (error, result) =>
            error ? reject(error) : resolve(result);
          const returned = handler(event as never, lambdaContext, callback);
          if (returned instanceof Promise) returned.then(resolve, reject);
        }),
      );
    }
    return results;
  });
}

describe("Lambda handlers, warm invocations one after another", { timeout: 60_000 }, () => {
  it("without a wrapper, a var one invocation sets is seen by the next", async () => {
    const loop = new Context();
    const handler = async (event: { user?: string }) => {
      const before = user.get("anonymous");
      if (event.user !== undefined) user.set(event.user);
      await sleep(1);
      return before;
    };
    const results = await invokeWarm(handler, [{ user: "alice" }, {}, {}], loop);
    assert.deepEqual(results, ["anonymous", "alice", "alice"]);
    assert.equal(loop.get(user), "alice", "it stays in the runtime loop's Context");
  });

  it("isolated(handler): each invocation in its own copy, requestId from awsRequestId", async () => {
    const loop = new Context();
    const stage = new ContextVar<string>("stage");
    loop.run(() => stage.set("prod")); // set during init, in the runtime's Context
    const later: Promise<string[]>[] = [];
    const handler = isolated(async (event: { user?: string }, lambda: LambdaContext) => {
      assert.equal(stage.get(), "prod", "the copy holds what init set");
      requestId.set(lambda.awsRequestId);
      if (event.user !== undefined) user.set(event.user);
      // Left running after the handler returns: Lambda freezes it until the
      // next invocation; in process it keeps its own invocation's values.
      later.push(
        new Promise((resolve) =>
          setTimeout(() => resolve([requestId.get(), user.get("anonymous")]), 5),
        ),
      );
      await sleep(1);
      return [requestId.get(), user.get("anonymous")];
    });
    const results = await invokeWarm(handler, [{ user: "alice" }, {}, { user: "bob" }], loop);
    const expected = [
      ["aws-0", "alice"],
      ["aws-1", "anonymous"],
      ["aws-2", "bob"],
    ];
    assert.deepEqual(results, expected);
    assert.deepEqual(await Promise.all(later), expected);
    assert.equal(loop.has(user), false);
    assert.equal(loop.has(requestId), false);
  });

  it("isolated callback handler: the callback is called from the invocation's Context", async () => {
    const loop = new Context();
    const handler = isolated(
      (event: { user?: string }, lambda: LambdaContext, callback: LambdaCallback) => {
        requestId.set(lambda.awsRequestId);
        if (event.user !== undefined) user.set(event.user);
        setTimeout(() => callback(null, `${requestId.get()}:${user.get("anonymous")}`), 1);
      },
    );
    assert.equal(handler.length, 3);
    const results = await invokeWarm(handler, [{ user: "alice" }, {}], loop);
    assert.deepEqual(results, ["aws-0:alice", "aws-1:anonymous"]);
    assert.equal(loop.has(user), false);
  });
});

describe("Lambda handlers with middy 6", { timeout: 60_000 }, () => {
  const base = async () => {
    await sleep(1);
    return user.get("anonymous");
  };
  // A before middleware that sets the var from the event, after an await.
  const fromEvent = {
    before: async (request: { event: { user?: string } }) => {
      await sleep(1);
      if (request.event.user !== undefined) user.set(request.event.user);
    },
  };
  const events = [{ user: "alice" }, {}, { user: "bob" }, {}];

  it("isolated around the whole middy handler: its middlewares run in the invocation's copy", async () => {
    const loop = new Context();
    const results = await invokeWarm(isolated(middy(base).use(fromEvent)), events, loop);
    assert.deepEqual(results, ["alice", "anonymous", "bob", "anonymous"]);
    assert.equal(loop.has(user), false);
  });

  it("isolated around the base handler alone leaves the middlewares in the runtime's Context", async () => {
    const loop = new Context();
    const results = await invokeWarm(middy(isolated(base)).use(fromEvent), events, loop);
    assert.deepEqual(results, ["alice", "alice", "bob", "bob"]);
    assert.equal(loop.get(user), "bob");
  });
});

/** An API Gateway HTTP API (payload 2.0) event. */
function apiEvent(i: number, path: string, headers: Record<string, string>) {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers,
    requestContext: {
      requestId: `apigw-${i}`,
      stage: "$default",
      http: { method: "GET", path, protocol: "HTTP/1.1", sourceIp: "192.0.2.1", userAgent: "test" },
    },
    isBase64Encoded: false,
  };
}

/** Six events: a user on the even ones; the third sends an x-request-id of its own. */
const httpEvents = Array.from({ length: 6 }, (_, i) =>
  apiEvent(i, "/whoami", {
    ...(i % 2 === 0 ? { "x-user": `u${i}` } : {}),
    ...(i === 2 ? { "x-request-id": "client-2" } : {}),
  }),
);
const expectedIdentities = httpEvents.map((_, i) => ({
  id: i === 2 ? "client-2" : `apigw-${i}`,
  user: i % 2 === 0 ? `u${i}` : "anonymous",
  lambda: `aws-${i}`,
}));
const lambdaRequest = new ContextVar<string>("lambdaRequest");

describe("Lambda HTTP adapters with the framework integrations", { timeout: 60_000 }, () => {
  it("serverless-http 4 over Express with contextMiddleware: a Context per invocation", async () => {
    const loop = new Context();
    const app = express();
    app.use(
      contextMiddleware({
        // serverless-http puts the Lambda context on req.apiGateway.
        seed: (req) => {
          const { context: lambda } = (req as unknown as { apiGateway: { context: LambdaContext } })
            .apiGateway;
          lambdaRequest.set(lambda.awsRequestId);
        },
      }),
    );
    app.use(async (req, _res, next) => {
      await sleep(1);
      if (req.get("x-user") !== undefined) user.set(String(req.get("x-user")));
      next();
    });
    app.get("/whoami", async (_req, res) => {
      await sleep(1);
      res.json({ id: requestId.get(), user: user.get("anonymous"), lambda: lambdaRequest.get() });
    });
    const results = (await invokeWarm(serverlessHttp(app), httpEvents, loop)) as {
      statusCode: number;
      headers: Record<string, string>;
      body: string;
    }[];
    results.forEach((result, i) => {
      assert.equal(result.statusCode, 200, result.body);
      assert.deepEqual(JSON.parse(result.body), expectedIdentities[i]);
      assert.equal(result.headers["x-request-id"], expectedIdentities[i]?.id);
    });
    assert.equal(loop.has(user), false);
  });

  it("@fastify/aws-lambda 6 with contextPlugin: a Context per invocation", async () => {
    const loop = new Context();
    const app = Fastify();
    await app.register(contextPlugin, {
      // @fastify/aws-lambda decorates the request with the event and context.
      seed: (request) => {
        const { context: lambda } = (
          request as unknown as { awsLambda: { context: LambdaContext } }
        ).awsLambda;
        lambdaRequest.set(lambda.awsRequestId);
      },
    });
    app.addHook("preHandler", async (request) => {
      await sleep(1);
      if (request.headers["x-user"] !== undefined) user.set(String(request.headers["x-user"]));
    });
    app.get("/whoami", async () => {
      await sleep(1);
      return { id: requestId.get(), user: user.get("anonymous"), lambda: lambdaRequest.get() };
    });
    const results = (await invokeWarm(awsLambdaFastify(app), httpEvents, loop)) as {
      statusCode: number;
      headers: Record<string, string>;
      body: string;
    }[];
    results.forEach((result, i) => {
      assert.equal(result.statusCode, 200, result.body);
      assert.deepEqual(JSON.parse(result.body), expectedIdentities[i]);
      assert.equal(result.headers["x-request-id"], expectedIdentities[i]?.id);
    });
    assert.equal(loop.has(user), false);
    await app.close();
  });
});
