/**
 * Aborted requests leave nothing behind, on every integration: a client
 * sends the headers and part of a JSON body, then disconnects. The
 * request's `close` listener (added in the seed) runs in the request's own
 * Context; afterwards the server holds no connection, the request's
 * Context, values and Node request objects are garbage, and the next
 * request sees none of it.
 *
 * A client that goes away mid-stream stops the tasks writing its body, as
 * docs/integrations.md (Streamed responses) says to: a TaskGroup given the
 * signal each integration offers for it cancels its children, each ends in
 * its own Context, and nothing is reported unhandled.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import { connect } from "node:net";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { getRequestListener } from "@hono/node-server";
import { Context, ContextVar, TaskGroup } from "contextvars";
import * as expressIntegration from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import * as honoIntegration from "contextvars/hono";
import { requestId, withContext } from "contextvars/http";
import * as koaIntegration from "contextvars/koa";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { stream } from "hono/streaming";
import Koa from "koa";
import { type FrameworkName, frameworkNames, startApp } from "../helpers/apps.ts";
import { Watch } from "../helpers/gc.ts";
import { close, listen, send } from "../helpers/http.ts";
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

const writer = new ContextVar<string>("aborted.writer");

/**
 * What a streaming handler does: three TaskGroup children write a chunk
 * every few milliseconds, each after setting `writer` in its own Context,
 * until the request's signal cancels them. Each child's `finally`, and the
 * group's rejection, record the Context they run in.
 */
function writeFromTasks(
  signal: AbortSignal,
  write: (chunk: string) => void,
  end: () => void,
  record: (line: string) => void,
): void {
  const group = new TaskGroup({ signal });
  for (const name of ["a", "b", "c"]) {
    group.createTask(async (own) => {
      writer.set(name);
      try {
        for (let i = 0; i < 1000; i++) {
          await sleep(2, undefined, { signal: own });
          write(`${requestId.get("<none>")} ${writer.get("<none>")} ${i}\n`);
        }
      } finally {
        record(`${requestId.get("<none>")} ${writer.get("<none>")} aborted: ${own.aborted}`);
      }
    });
  }
  group.wait().then(end, (error: unknown) => {
    record(
      `${requestId.get("<none>")} ${writer.get("group")}: the signal's reason ${error === signal.reason}`,
    );
  });
}

/**
 * A server on each integration whose every request streams from
 * writeFromTasks, with the signal the docs name for a client going away:
 * Fastify's request.signal, Hono's c.req.raw.signal, and elsewhere an
 * AbortController aborted from res's close listener.
 */
async function streamingServer(
  name: FrameworkName,
  record: (line: string) => void,
): Promise<Server> {
  const onClose = (res: { on(event: "close", listener: () => void): unknown }) => {
    const gone = new AbortController();
    res.on("close", () => gone.abort());
    return gone.signal;
  };
  switch (name) {
    case "http":
      return createServer(
        withContext((_req, res) => {
          res.writeHead(200, { "content-type": "text/plain" });
          writeFromTasks(
            onClose(res),
            (chunk) => res.write(chunk),
            () => res.end(),
            record,
          );
        }),
      );
    case "express": {
      const app = express();
      app.use(expressIntegration.contextMiddleware());
      app.get("/{*path}", (_req, res) => {
        res.type("text/plain");
        writeFromTasks(
          onClose(res),
          (chunk) => res.write(chunk),
          () => res.end(),
          record,
        );
      });
      return createServer(app);
    }
    case "fastify": {
      const app = Fastify();
      await app.register(contextPlugin);
      app.get("/*", (request, reply) => {
        const body = new PassThrough();
        writeFromTasks(
          request.signal,
          (chunk) => body.write(chunk),
          () => body.end(),
          record,
        );
        return reply.type("text/plain").send(body);
      });
      await app.ready();
      return app.server;
    }
    case "hono": {
      const app = new Hono();
      app.use(honoIntegration.contextMiddleware());
      app.get("*", (c) =>
        stream(
          c,
          (out) =>
            new Promise<void>((resolve) => {
              writeFromTasks(c.req.raw.signal, (chunk) => void out.write(chunk), resolve, record);
              c.req.raw.signal.addEventListener("abort", () => resolve());
            }),
        ),
      );
      return createServer(getRequestListener(app.fetch));
    }
    case "koa": {
      const app = new Koa();
      app.silent = true;
      app.use(koaIntegration.contextMiddleware());
      app.use((ctx) => {
        const body = new PassThrough();
        writeFromTasks(
          onClose(ctx.res),
          (chunk) => body.write(chunk),
          () => body.end(),
          record,
        );
        ctx.type = "text/plain";
        ctx.body = body;
      });
      return createServer(app.callback());
    }
  }
}

/** Reads a streamed response until its first chunk, then disconnects; resolves with that chunk. */
function readFirstChunkThenLeave(base: string, id: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/feed`, { headers: { "x-request-id": id } }, (res) => {
      res.setEncoding("utf8");
      res.once("data", (chunk: string) => {
        req.destroy();
        resolve(chunk);
      });
    });
    req.on("error", (error) => {
      if (!req.destroyed) reject(error);
    });
    req.end();
  });
}

describe("a client that goes away mid-stream stops the tasks writing it", {
  concurrency: true,
}, () => {
  for (const name of frameworkNames) {
    it(name, () =>
      new Context().run(async () => {
        const pin = pinContext();
        const recorded: string[] = [];
        const unhandled: unknown[] = [];
        const onUnhandled = (reason: unknown) => unhandled.push(reason);
        process.on("unhandledRejection", onUnhandled);
        const server = await streamingServer(name, (line) => recorded.push(line));
        const base = await listen(server);
        try {
          const ids = [1, 2, 3].map((n) => `${name}-stream-${n}`);
          const first = await Promise.all(ids.map((id) => readFirstChunkThenLeave(base, id)));
          for (const [i, id] of ids.entries())
            assert.match(first[i] as string, new RegExp(`^${id} [abc] 0\n`));
          const deadline = Date.now() + 5_000;
          while (recorded.length < ids.length * 4 && Date.now() < deadline) await sleep(10);
          assert.deepEqual(
            recorded.sort(),
            ids
              .flatMap((id) => [
                `${id} a aborted: true`,
                `${id} b aborted: true`,
                `${id} c aborted: true`,
                `${id} group: the signal's reason true`,
              ])
              .sort(),
            "every child ended, cancelled, in its own Context; the group's rejection reached the handler's",
          );
          await sleep(20);
          assert.equal(
            recorded.length,
            ids.length * 4,
            "nothing wrote or ended after the cancellation",
          );
          assert.deepEqual(unhandled, []);
        } finally {
          process.off("unhandledRejection", onUnhandled);
          server.closeAllConnections();
          await close(server);
        }
        pin.check();
      }),
    );
  }
});
