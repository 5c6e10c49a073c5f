/**
 * A long-lived ContextVar (a module-level `user`, `requestId`, `session`)
 * must not keep the values of finished Contexts alive.
 *
 * ContextVar#get caches its last read keyed on the id of the map it read
 * (src/core/context-var.ts, `#hitId`/`#hitValue`). A strong reference there
 * would keep the value last set or read reachable from the var after its
 * Context is gone. CPython's cache (Python/context.c, `var_cached`) is a
 * *borrowed* reference; JavaScript has none, so the var caches primitives
 * only and objects are cached by the map they belong to (Hamt#read). These
 * tests pin that property: a whole request's session, a transaction or a
 * buffer must not outlive its Context through the var.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Context, ContextVar, createTask } from "contextvars";
import { withContext } from "contextvars/http";
import { settledHeap, Watch } from "../helpers/gc.ts";
import { close, listen, send } from "../helpers/http.ts";

const MB = 1024 * 1024;

interface Session {
  user: string;
  payload: Uint8Array;
}

function session(watch: Watch, label: string): Session {
  return watch.track({ user: label, payload: new Uint8Array(1 << 20) }, label);
}

describe("a long-lived ContextVar keeps no finished Context's value alive", () => {
  it("after set, then get, in a finished ctx.run", async () => {
    const current = new ContextVar<Session>("current");
    const watch = new Watch();
    new Context().run(() => {
      current.set(session(watch, "set and read"));
      assert.equal(current.get().user, "set and read");
    });
    assert.deepEqual(await watch.survivors(8), [], "the var's read cache holds the value");
  });

  it("a function value (a closure over a session) after set and get, in a finished ctx.run", async () => {
    const current = new ContextVar<() => Session>("current");
    const watch = new Watch();
    new Context().run(() => {
      const held = session(watch, "closed over");
      current.set(watch.track(() => held, "the closure"));
      assert.equal(current.get()().user, "closed over");
    });
    assert.deepEqual(await watch.survivors(8), [], "the var's read cache holds the function");
  });

  it("a long string (a body read as text) after set and get, in a finished ctx.run", async () => {
    // A string cannot be watched with a FinalizationRegistry: the heap is measured instead.
    const body = new ContextVar<string>("body");
    const size = 16 * MB;
    const before = await settledHeap();
    new Context().run(() => {
      // TextDecoder makes one flat string on the heap, of `size` bytes.
      body.set(new TextDecoder().decode(new Uint8Array(size).fill(0x61)));
      assert.equal(body.get().length, size);
    });
    const growth = (await settledHeap()) - before;
    assert.ok(growth < size / 4, `the var's read cache holds the string: ${growth} bytes`);
  });

  it("after set only, in a finished task", async () => {
    const current = new ContextVar<Session>("current");
    const watch = new Watch();
    await createTask(async () => {
      current.set(session(watch, "set in a task"));
      await sleep(1);
    });
    assert.deepEqual(await watch.survivors(8), [], "the var's read cache holds the value");
  });

  it("after a finished request, while the server waits for the next one", async () => {
    // `connection: close`: an idle keep-alive socket holds its last request's
    // Context itself (see requests.test.ts); this test is about the var alone.
    const current = new ContextVar<Session>("current");
    const watch = new Watch();
    const server = createServer(
      withContext(
        async (_req, res) => {
          await sleep(1);
          res.end(current.get().user);
        },
        { seed: (req) => current.set(session(watch, `request ${req.url}`)) },
      ),
    );
    const base = await listen(server);
    try {
      const reply = await send(base, "/a", { headers: { connection: "close" } });
      assert.equal(reply.body, "request /a");
      // 20 rounds: over the 1 s Node's Date-header cache timer may hold the request's Context.
      assert.deepEqual(await watch.survivors(20), [], "the var's read cache holds the value");
    } finally {
      await close(server);
    }
  });

  it("the retention is the cache's: a read from another Context releases it", async () => {
    // Shows the cause, and that everything else (Context, map, token) lets go.
    const current = new ContextVar<Session>("current");
    const watch = new Watch();
    new Context().run(() => {
      current.set(session(watch, "released by a read elsewhere"));
      current.get();
    });
    current.get(undefined);
    assert.deepEqual(await watch.survivors(), []);
  });
});
