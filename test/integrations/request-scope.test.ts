/**
 * The one Context of each request (src/integrations/request-scope.ts), on
 * every web integration over HTTP/1 (test/helpers/apps.ts; over HTTP/2:
 * http2.test.ts):
 *
 *   - it is a fresh copy of the root Context, never the Context the server
 *     was created or is listening in;
 *   - what a request's tasks and timers set, also after its response was
 *     sent, stays in that request: the next request on the same keep-alive
 *     socket sees none of it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ContextVar, createTask } from "contextvars";
import { requestId } from "contextvars/http";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { keepAliveAgent, sendJson } from "../helpers/http.ts";

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
