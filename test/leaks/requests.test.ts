/**
 * A finished request leaves nothing alive, on every integration: the
 * request's Context, the values its seed, middleware and handler set, the
 * tasks and timers it started, and Node's req/res become garbage once the
 * response is sent and the connection is closed.
 *
 * Two things Node itself does are pinned here, because they decide *when*
 * a finished request's Context can go (docs/guarantees.md):
 *   - an idle keep-alive connection keeps the Context of its last request
 *     (Node arms the connection's keep-alive timer when that response
 *     finishes, in that request's Context) until it closes;
 *   - the first response in each second arms Node's Date-header cache timer
 *     in its request's Context, for at most one second (gc.ts waits it out;
 *     the last test pins it).
 * `forgetReadCache()` moves the vars' read cache off the tracked values
 * (that cache has its own test: var-cache.test.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, createTask, gather } from "contextvars";
import { requestId } from "contextvars/http";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { collectUntil, Watch } from "../helpers/gc.ts";
import { keepAliveAgent, send } from "../helpers/http.ts";

const session = new ContextVar<{ id: string }>("session");
const scratch = new ContextVar<object>("scratch");

function forgetReadCache(): void {
  session.get(undefined);
  scratch.get(undefined);
}

/** Seeds a tracked session; the handler sets more, in tasks and timers, then answers. */
function trackedHooks(watch: Watch) {
  return {
    seed(req: object) {
      const id = requestId.get();
      watch.track(req, `${id}: req`);
      session.set(watch.track({ id }, `${id}: session`));
    },
    async handle(path: string) {
      const id = requestId.get();
      scratch.set(watch.track({}, `${id}: handler value`));
      await gather(async () => scratch.set(watch.track({}, `${id}: task value`)));
      await createTask(async () => {
        await sleep(1);
        scratch.set(watch.track({}, `${id}: task after await`));
      });
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (path === "/fail") throw new Error("handler failed");
      return { id, session: session.get().id };
    },
    onError: () => ({ failed: requestId.get() }),
  };
}

describe("a finished request leaves nothing alive", { concurrency: true }, () => {
  for (const name of frameworkNames) {
    it(`${name}: 20 requests (5 failing), connections closed`, async () => {
      const watch = new Watch();
      const app = await startApp(name, trackedHooks(watch));
      try {
        const replies = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            send(app.base, i % 4 === 0 ? "/fail" : "/ok", {
              headers: { "x-request-id": `${name}-${i}`, connection: "close" },
            }),
          ),
        );
        replies.forEach((reply, i) => {
          assert.equal(reply.status, i % 4 === 0 ? 500 : 200, reply.body);
          assert.equal(reply.headers["x-request-id"], `${name}-${i}`);
        });
        assert.equal(watch.tracked, 20 * 5, "every request tracked its five objects");
        forgetReadCache();
        assert.deepEqual(await watch.survivors(), []);
      } finally {
        await app.close();
      }
    });
  }
});

describe("Node's keep-alive pinned", () => {
  it("an idle keep-alive connection holds its last request's Context until it closes", async () => {
    const watch = new Watch();
    const app = await startApp("http", trackedHooks(watch));
    const agent = keepAliveAgent(1);
    try {
      for (const id of ["ka-1", "ka-2"]) {
        const reply = await send(app.base, "/ok", { agent, headers: { "x-request-id": id } });
        assert.equal(reply.status, 200);
      }
      forgetReadCache();
      // The first request's Context went when the second arrived on the socket;
      // the second's stays with the idle connection (its timer, armed in it).
      // 20 rounds: past the Date-header cache timer, which may hold either.
      const idle = await watch.survivors(20);
      assert.ok(idle.length > 0, "pinned: Node keeps the idle connection's last Context");
      assert.ok(
        idle.every((label) => label.startsWith("ka-2")),
        `only the last request is held: ${idle}`,
      );
      agent.destroy();
      assert.deepEqual(await watch.survivors(), []);
    } finally {
      agent.destroy();
      await app.close();
    }
  });
});

describe("Node's Date-header cache pinned", () => {
  it("the first response in a second holds its Context until that second ends, and no longer", async () => {
    // Each request's objects in a Watch of their own: the first and second of one second.
    const first = new Watch();
    const second = new Watch();
    const router = {
      track: <T extends object>(object: T, label: string) =>
        (label.includes("-first") ? first : second).track(object, label),
    } as Watch;
    const app = await startApp("http", trackedHooks(router));
    try {
      let pinned = false;
      // A few tries: the tracked response must be the first of its second, and
      // a busy loop can run the previous second's cache reset late.
      for (let attempt = 1; attempt <= 3 && !pinned; attempt++) {
        await sleep(1_000 - (Date.now() % 1_000) + 20); // just after a second begins
        const began = Math.floor(Date.now() / 1_000);
        for (const id of [`date-${attempt}-first`, `date-${attempt}-second`]) {
          const reply = await send(app.base, "/ok", {
            headers: { "x-request-id": id, connection: "close" },
          });
          assert.equal(reply.status, 200);
        }
        forgetReadCache();
        // The second response found the cache filled: nothing holds its Context.
        assert.ok(await collectUntil(() => second.size === 0), "the second response is let go");
        pinned = first.size > 0 && Math.floor(Date.now() / 1_000) === began;
        // Let go once the second ends (a second's slack for a loaded machine).
        assert.ok(await collectUntil(() => first.size === 0), "the first response is let go");
        const late = Date.now() - (began + 1) * 1_000;
        assert.ok(late < 1_000, `held ${late} ms past the end of its second`);
      }
      assert.ok(
        pinned,
        "pinned: Node's Date-header cache timer holds the first response's Context",
      );
    } finally {
      await app.close();
    }
  });
});
