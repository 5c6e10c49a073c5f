/**
 * The one Context of each request (src/integrations/request-scope.ts), on
 * every web integration over HTTP/1 (test/helpers/apps.ts; over HTTP/2:
 * http2.test.ts):
 *
 *   - it is a fresh copy of the root Context, never the Context the server
 *     was created or is listening in;
 *   - what a request's tasks and timers set, also after its response was
 *     sent, stays in that request: the next request on the same keep-alive
 *     socket sees none of it;
 *   - the one var it takes from the Context it arrives in is a live
 *     ContextVarsContextManager's OpenTelemetry context, and only when one
 *     is active there.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { createContextKey, ROOT_CONTEXT } from "@opentelemetry/api";
import { ContextVar, copyContext, createTask } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager } from "contextvars/otel";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { close, keepAliveAgent, listen, sendJson, sendRaw, UUID } from "../helpers/http.ts";

// Set at the root before any server exists: every request's Context is a copy of the root.
const service = new ContextVar<string>("scope.service");
service.set("set at the root");
const server = new ContextVar<string>("scope.server");
const leak = new ContextVar<string>("scope.leak");

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe("a request's Context is a fresh copy of the root", { concurrency: true }, () => {
  for (const name of frameworkNames) {
    it(`${name}: not the Context the server was created or is listening in`, async () => {
      // startApp builds the app and listens inside this run.
      const app = await server.run("the server's own Context", () =>
        startApp(name, {
          handle: () => ({ service: service.get("unset"), server: server.get("unset") }),
        }),
      );
      try {
        assert.deepEqual(await sendJson(app.base, "/where"), {
          service: "set at the root",
          server: "unset",
        });
      } finally {
        await app.close();
      }
    });
  }
});

describe("a request's tasks and timers leave nothing for the next request", () => {
  for (const name of frameworkNames) {
    it(`${name}: sets after the response, on the same keep-alive socket`, async () => {
      const responded = deferred();
      const sets: Promise<void>[] = [];
      /** Runs `set` once the first response has arrived; `sets` waits for it. */
      const afterResponse = (set: () => void) => {
        const done = deferred();
        sets.push(done.promise);
        return async () => {
          await responded.promise;
          set();
          done.resolve();
        };
      };
      const app = await startApp(name, {
        handle(path) {
          if (path === "/peek") return { id: requestId.get(), leak: leak.get("unset") };
          leak.set("set by the handler");
          void createTask(afterResponse(() => leak.set("set by a task")));
          setTimeout(
            afterResponse(() => leak.set("set by a timer")),
            0,
          );
          setImmediate(afterResponse(() => leak.set("set by an immediate")));
          void afterResponse(() => leak.set("set in the handler's Context, after the response"))();
          return { id: requestId.get(), leak: leak.get() };
        },
      });
      let connections = 0;
      app.server.on("connection", () => connections++);
      const agent = keepAliveAgent(1);
      try {
        const first = await sendJson(app.base, "/start", {
          agent,
          headers: { "x-request-id": `${name}-first` },
        });
        assert.deepEqual(first, { id: `${name}-first`, leak: "set by the handler" });
        responded.resolve();
        await Promise.all(sets);
        assert.equal(sets.length, 4, "every set ran");
        const next = await sendJson(app.base, "/peek", {
          agent,
          headers: { "x-request-id": `${name}-next` },
        });
        assert.deepEqual(next, { id: `${name}-next`, leak: "unset" });
        assert.equal(connections, 1, "both requests went over one socket");
      } finally {
        agent.destroy();
        await app.close();
      }
      assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
    });
  }
});

/** The names of the vars in the current Context, sorted. */
const varNames = (): string[] => [...copyContext().keys()].map((v) => v.name).sort();

describe("the OpenTelemetry context is the one var a request takes from where it arrives", () => {
  const marker = createContextKey("scope.marker");
  const arriving = ROOT_CONTEXT.setValue(marker, "active where the server listens");

  for (const name of frameworkNames) {
    it(`${name}: carried while its manager is live, not after disable(), never as an empty entry`, async () => {
      const manager = new ContextVarsContextManager();
      const handle = () => ({
        marker: manager.active().getValue(marker) ?? "none",
        vars: varNames(),
      });
      // Requests arrive in the Context the server listens in.
      const inside = await manager.with(arriving, () => startApp(name, { handle }));
      const outside = await startApp(name, { handle });
      try {
        assert.deepEqual(await sendJson(inside.base, "/"), {
          marker: "active where the server listens",
          vars: ["opentelemetry.context", "requestId", "scope.service"],
        });
        assert.deepEqual(await sendJson(outside.base, "/"), {
          marker: "none",
          vars: ["requestId", "scope.service"],
        });
        manager.disable();
        assert.deepEqual(await sendJson(inside.base, "/"), {
          marker: "none",
          vars: ["requestId", "scope.service"],
        });
      } finally {
        await Promise.all([inside.close(), outside.close()]);
      }
    });
  }
});

describe("an id header sent twice", () => {
  // Node keeps only the first of some headers in req.headers (From,
  // User-Agent, Referer...): the id is still replaced, not taken from it.
  it("is replaced, also under a name whose repeats Node drops from req.headers", async () => {
    const server = createServer(
      withContext((_req, res) => res.end(requestId.get()), { header: "from" }),
    );
    const base = await listen(server);
    try {
      const once = await sendRaw(base, ["GET / HTTP/1.1", "Host: 127.0.0.1", "From: first"]);
      assert.equal(once.body, "first");
      const twice = await sendRaw(base, [
        "GET / HTTP/1.1",
        "Host: 127.0.0.1",
        "From: first",
        "From: second",
      ]);
      assert.match(twice.body, UUID);
      assert.equal(twice.headers.from, twice.body);
    } finally {
      await close(server);
    }
  });
});
