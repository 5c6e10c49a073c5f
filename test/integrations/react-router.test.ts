/**
 * React Router 7 in framework mode, served from a server build written by
 * hand (what `react-router build` emits: route modules with `loader`,
 * `action` and `middleware`, and an entry module whose `handleRequest`
 * renders `<ServerRouter>` with `renderToPipeableStream`). Two ways in, as
 * docs/integrations.md#react-router-7 shows: `@react-router/express`'s
 * handler behind `contextMiddleware`, and react-router's own fetch-style
 * `createRequestHandler` wrapped in `withContext` from `contextvars/fetch`,
 * served by node:http through `getRequestListener`. The clients are real
 * fetches over 127.0.0.1, for document requests and for the single-fetch
 * `.data` requests a browser makes when it navigates.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { createRequestHandler as expressHandler } from "@react-router/express";
import { createReadableStreamFromReadable } from "@react-router/node";
import { ContextVar, isolated } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import { withContext } from "contextvars/fetch";
import express from "express";
import { createElement as h, Suspense } from "react";
import { renderToPipeableStream } from "react-dom/server";
import {
  Await,
  type EntryContext,
  createRequestHandler as fetchHandler,
  Outlet,
  RouterContextProvider,
  type ServerBuild,
  ServerRouter,
  useLoaderData,
} from "react-router";
import { close, listen, randomDelay } from "../helpers/http.ts";

const user = new ContextVar<string>("rr.user");
/** Set by one loader, read by another: they share the request's one Context. */
const stage = new ContextVar<string>("rr.stage");

/** What handleError read, by the id the client sent. */
const handled = new Map<string, string>();

/** What a loader or action saw, in its request's Context. */
function seen(): { id: string; user: string } {
  return { id: requestId.get(), user: user.get() };
}

interface RouteModule {
  default?: () => unknown;
  loader?: (args: { request: Request; context: unknown }) => unknown;
  action?: (args: { request: Request; context: unknown }) => unknown;
  middleware?: unknown[];
}

/** A server build of `modules`, nested in the order given (each the child of the one before). */
function serverBuild(
  modules: Record<string, RouteModule & { path: string }>,
  middleware = false,
): ServerBuild {
  const ids = Object.keys(modules);
  const routes = Object.fromEntries(
    ids.map((id, i) => [
      id,
      { id, parentId: ids[i - 1], path: modules[id]?.path, module: modules[id] },
    ]),
  );
  const assets = Object.fromEntries(
    ids.map((id, i) => [
      id,
      {
        id,
        parentId: ids[i - 1],
        path: modules[id]?.path,
        hasAction: modules[id]?.action !== undefined,
        hasLoader: modules[id]?.loader !== undefined,
        hasClientAction: false,
        hasClientLoader: false,
        hasClientMiddleware: false,
        hasErrorBoundary: false,
        module: `/${id}.js`,
        imports: [],
      },
    ]),
  );
  const handleRequest = (
    request: Request,
    status: number,
    headers: Headers,
    context: EntryContext,
  ) =>
    new Promise<Response>((resolve, reject) => {
      const { pipe } = renderToPipeableStream(h(ServerRouter, { context, url: request.url }), {
        // What browsers get: the shell first, then <Await>'s segment as it resolves.
        onShellReady() {
          const body = new PassThrough();
          headers.set("content-type", "text/html");
          resolve(new Response(createReadableStreamFromReadable(body), { status, headers }));
          pipe(body);
        },
        onShellError: reject,
      });
    });
  return {
    entry: {
      module: {
        default: handleRequest,
        // React Router calls it for a loader's or action's throw: it reads the request's id.
        handleError: (_error: unknown, { request }: { request: Request }) => {
          handled.set(request.headers.get("x-request-id") ?? "", requestId.get("none"));
        },
      },
    },
    routes,
    assets: {
      entry: { module: "/entry.js", imports: [] },
      routes: assets,
      url: "/manifest.js",
      version: "1",
    },
    publicPath: "/",
    assetsBuildDirectory: "build/client",
    future: { v8_middleware: middleware },
    ssr: true,
    isSpaMode: false,
    prerender: [],
    routeDiscovery: { mode: "initial", manifestPath: "/__manifest" },
  } as unknown as ServerBuild;
}

/** Root and a nested child, each loader awaiting; the child defers part of its data. */
function appBuild(): ServerBuild {
  return serverBuild({
    root: {
      path: "",
      default: () => h("html", null, h("body", null, h(Outlet))),
      loader: async () => {
        await randomDelay();
        return { root: seen() };
      },
    },
    child: {
      path: "orders",
      default: () => {
        const data = useLoaderData() as {
          child: { id: string; user: string };
          later: Promise<string>;
        };
        return h(
          "main",
          null,
          h("p", { id: "child" }, `${data.child.id} ${data.child.user}`),
          h("p", { id: "render" }, `${requestId.get()} ${user.get()}`), // read while rendering
          h(
            Suspense,
            { fallback: "…" },
            h(Await, {
              resolve: data.later,
              children: (v) => h("p", { id: "later" }, String(v)),
            }),
          ),
        );
      },
      loader: async ({ request, context }) => {
        await randomDelay();
        if (request.headers.has("x-throw")) throw new Error("boom");
        // A promise left unresolved: streamed to the client after the loader returned.
        const later = randomDelay(10).then(() => `${requestId.get()} ${user.get()}`);
        return { child: seen(), later, loadContext: context };
      },
      action: async ({ request }) => {
        const body = await request.text();
        await randomDelay();
        return { action: seen(), body };
      },
    },
  });
}

async function serve(server: Server): Promise<{ base: string; stop(): Promise<void> }> {
  const base = await listen(server);
  return { base, stop: () => close(server) };
}

const N = 150;

function headersOf(i: number): Record<string, string> {
  return { "x-request-id": `req-${i}`, "x-user": `user-${i}` };
}

describe("React Router 7 on Express, behind contextMiddleware", { timeout: 60_000 }, () => {
  let base: string;
  let stop: () => Promise<void>;
  before(async () => {
    const app = express();
    app.use(contextMiddleware({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
    app.all(
      "*splat",
      expressHandler({
        build: appBuild(),
        mode: "production",
        // Runs in the request's Context: a bridge from vars to React Router's `context`.
        getLoadContext: () => ({ bridged: `bridged ${requestId.get()}` }),
      }),
    );
    ({ base, stop } = await serve(createServer(app)));
  });
  after(() => stop());

  it(`gives ${N} concurrent document requests their own values in loaders and deferred data`, async () => {
    const pages = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const response = await fetch(`${base}/orders`, { headers: headersOf(i) });
        return { i, echoed: response.headers.get("x-request-id"), html: await response.text() };
      }),
    );
    for (const { i, echoed, html } of pages) {
      assert.equal(echoed, `req-${i}`);
      assert.match(html, new RegExp(`<p id="child">req-${i} user-${i}</p>`));
      assert.match(html, new RegExp(`<p id="later">req-${i} user-${i}</p>`));
      assert.match(html, new RegExp(`<p id="render">req-${i} user-${i}</p>`));
    }
  });

  it(`gives ${N} concurrent .data requests and actions their own values, getLoadContext too`, async () => {
    const replies = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const post = i % 2 === 1;
        const response = await fetch(`${base}/orders.data`, {
          method: post ? "POST" : "GET",
          headers: { ...headersOf(i), "content-type": "text/plain" },
          ...(post ? { body: `body-${i}` } : {}),
        });
        return { i, post, text: await response.text() };
      }),
    );
    for (const { i, post, text } of replies) {
      // turbo-stream's encoding: the strings appear once each, in the payload.
      const strings: string[] = text.match(/"[^"]*"/g) ?? [];
      assert.ok(strings.includes(`"req-${i}"`) && strings.includes(`"user-${i}"`), text);
      assert.ok(
        !strings.some(
          (s) => /"(req|user)-\d+"/.test(s) && s !== `"req-${i}"` && s !== `"user-${i}"`,
        ),
        text,
      );
      if (post) assert.ok(strings.includes(`"body-${i}"`), text);
      else {
        assert.ok(strings.includes(`"bridged req-${i}"`), text); // from getLoadContext
        // The deferred value, streamed after the loader returned.
        assert.ok(text.includes(`"req-${i} user-${i}"`), text);
      }
    }
  });
});

describe("React Router 7's fetch handler, wrapped in withContext from contextvars/fetch", {
  timeout: 60_000,
}, () => {
  let base: string;
  let stop: () => Promise<void>;
  before(async () => {
    const handler = withContext(fetchHandler(appBuild(), "production"), {
      seed: (request) => user.set(request.headers.get("x-user") ?? "anonymous"),
    });
    ({ base, stop } = await serve(createServer(getRequestListener((request) => handler(request)))));
  });
  after(() => stop());

  it("runs handleError in the request's Context, for 20 loaders that throw at once", async () => {
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const response = await fetch(`${base}/orders.data`, {
          headers: { ...headersOf(i), "x-throw": "1" },
        });
        await response.text();
      }),
    );
    for (let i = 0; i < 20; i++) assert.equal(handled.get(`req-${i}`), `req-${i}`);
  });

  it(`gives ${N} concurrent requests their own values, and echoes each id`, async () => {
    const pages = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const response = await fetch(`${base}/orders`, { headers: headersOf(i) });
        return { i, echoed: response.headers.get("x-request-id"), html: await response.text() };
      }),
    );
    for (const { i, echoed, html } of pages) {
      assert.equal(echoed, `req-${i}`);
      assert.match(html, new RegExp(`<p id="child">req-${i} user-${i}</p>`));
      assert.match(html, new RegExp(`<p id="later">req-${i} user-${i}</p>`));
      assert.match(html, new RegExp(`<p id="render">req-${i} user-${i}</p>`));
    }
  });
});

describe("React Router 7: nested loaders share the request's Context", { timeout: 60_000 }, () => {
  const build = (wrap: <F extends (...args: never[]) => unknown>(f: F) => F) =>
    serverBuild({
      root: {
        path: "",
        default: () => h(Outlet),
        loader: wrap(() => {
          stage.set(`root ${requestId.get()}`); // set at once, before the child's loader reads
          return null;
        }),
      },
      child: {
        path: "orders",
        default: () => null,
        loader: wrap(async () => {
          await new Promise((resolve) => setTimeout(resolve, 20));
          return { stage: stage.get("unset") };
        }),
      },
    });

  async function stages(app: ServerBuild): Promise<string[]> {
    const handler = withContext(fetchHandler(app, "production"));
    const { base, stop } = await serve(
      createServer(getRequestListener((request) => handler(request))),
    );
    try {
      return await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const text = await (await fetch(`${base}/orders.data`, { headers: headersOf(i) })).text();
          return (text.match(/"(root req-\d+|unset)"/) ?? [])[1] ?? text;
        }),
      );
    } finally {
      await stop();
    }
  }

  it("a sibling's set is seen by the child's loader; with isolated() it stays in its loader", async () => {
    const shared = await stages(build((f) => f));
    assert.deepEqual(
      shared,
      shared.map((_, i) => `root req-${i}`),
    );
    const apart = await stages(build((f) => isolated(f as never) as never));
    assert.deepEqual(
      apart,
      apart.map(() => "unset"),
    );
  });
});

describe("React Router 7 middleware (future.v8_middleware)", { timeout: 60_000 }, () => {
  let base: string;
  let stop: () => Promise<void>;
  before(async () => {
    const app = serverBuild(
      {
        root: {
          path: "",
          default: () => h(Outlet),
          middleware: [
            async (_args: unknown, next: () => Promise<Response>) => {
              await randomDelay();
              user.set(`mw ${user.get()}`); // after an await: seen by the loaders below
              const response = await next();
              await randomDelay();
              response.headers.set("x-after", `${requestId.get()} ${user.get()}`);
              return response;
            },
          ],
          loader: async () => {
            await randomDelay();
            return { root: seen() };
          },
        },
        child: {
          path: "orders",
          default: () => null,
          loader: async () => {
            await randomDelay();
            return { child: seen() };
          },
        },
      },
      true,
    );
    const express5 = express();
    express5.use(contextMiddleware({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
    express5.all(
      "*splat",
      expressHandler({
        build: app,
        mode: "production",
        // typed for an app that declares v8_middleware in its Future interface
        getLoadContext: () => new RouterContextProvider() as never,
      }),
    );
    ({ base, stop } = await serve(createServer(express5)));
  });
  after(() => stop());

  it(`hands what middleware sets to the loaders and to its own code after next(), ${N} at once`, async () => {
    const replies = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const response = await fetch(`${base}/orders.data`, { headers: headersOf(i) });
        return { i, after: response.headers.get("x-after"), text: await response.text() };
      }),
    );
    for (const { i, after, text } of replies) {
      assert.equal(after, `req-${i} mw user-${i}`);
      const strings: string[] = text.match(/"[^"]*"/g) ?? [];
      assert.ok(strings.includes(`"mw user-${i}"`), text);
      assert.ok(!strings.some((s) => /user-\d+"/.test(s) && s !== `"mw user-${i}"`), text);
    }
  });
});
