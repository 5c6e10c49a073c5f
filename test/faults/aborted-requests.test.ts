/**
 * Aborted requests leave nothing behind, on every integration: a client
 * sends the headers and part of a JSON body, then disconnects. The
 * request's `close` listener (added in the seed) runs in the request's own
 * Context; afterwards the server holds no connection, the request's
 * Context, values and Node request objects are garbage, and the next
 * request sees none of it.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Context, ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { Watch } from "../helpers/gc.ts";
import { send } from "../helpers/http.ts";
import { pinContext } from "../helpers/pin-context.ts";

const session = new ContextVar<{ id: string }>("aborted.session");

/** Sends the head and 1 KiB of a 100 KiB body, waits until the server has the request, then disconnects. */
async function abortMidBody(base: string, id: string, started: Promise<void>): Promise<void> {
  const { port } = new URL(base);
  const socket = connect(Number(port), "127.0.0.1");
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  const head = [
    "POST /upload HTTP/1.1",
    "Host: 127.0.0.1",
    "Content-Type: application/json",
    "Content-Length: 102400",
    `X-Request-Id: ${id}`,
  ];
  socket.write(`${head.join("\r\n")}\r\n\r\n{"data":"${"x".repeat(1024)}`);
  await started;
  await sleep(5);
  socket.destroy();
}

describe("a client that disconnects mid-body leaves nothing behind", { concurrency: true }, () => {
  for (const name of frameworkNames) {
    // Each in a Context of its own: the five run concurrently, and each pins its own.
    it(name, () =>
      new Context().run(async () => {
        const pin = pinContext();
        const watch = new Watch();
        const closedIn: string[] = [];
        const handled: string[] = [];
        const arrived = new Map<string, () => void>();
        const app = await startApp(name, {
          seed(req: IncomingMessage) {
            const id = requestId.get();
            watch.track(req, `${id}: req`);
            session.set(watch.track({ id }, `${id}: session`));
            req.on("close", () => closedIn.push(`${id} closed in ${requestId.get("<none>")}`));
            arrived.get(id)?.();
          },
          handle(path) {
            handled.push(`${requestId.get()} ${path}`);
            return { id: requestId.get(), session: session.get(undefined)?.id ?? "none" };
          },
        });
        try {
          const ids = [1, 2, 3].map((n) => `${name}-aborted-${n}`);
          await Promise.all(
            ids.map((id) =>
              abortMidBody(app.base, id, new Promise<void>((resolve) => arrived.set(id, resolve))),
            ),
          );
          const deadline = Date.now() + 5_000;
          while (closedIn.length < ids.length && Date.now() < deadline) await sleep(10);
          assert.deepEqual(
            closedIn.sort(),
            ids.map((id) => `${id} closed in ${id}`),
            "each close listener ran in its own request's Context",
          );
          assert.deepEqual(handled, [], "no handler ran for a body that never arrived");

          const after = await send(app.base, "/peek", {
            headers: { "x-request-id": `${name}-after`, connection: "close" },
          });
          assert.deepEqual(JSON.parse(after.body), {
            id: `${name}-after`,
            session: `${name}-after`,
          });

          const open = await new Promise<number>((resolve, reject) =>
            app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
          );
          assert.equal(open, 0, "the server holds no connection");
          session.get(undefined); // moves the var's read cache (see leaks/var-cache.test.ts)
          assert.deepEqual(await watch.survivors(), []);
        } finally {
          await app.close();
        }
        pin.check();
      }),
    );
  }
});
