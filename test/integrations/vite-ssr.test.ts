/**
 * Vite's SSR dev server in middleware mode behind Express, as
 * docs/integrations.md#vites-ssr-dev-server shows: `contextMiddleware`,
 * `vite.middlewares`, and a handler that loads the app's entry with
 * `vite.ssrLoadModule` or the ssr environment's module runner and renders
 * (a string, or React's `renderToPipeableStream`). The app's modules
 * (fixtures/vite-ssr, copied into a temporary root) read `requestId` and a
 * `user` var of their own. Real dev servers, watcher off, real requests
 * over 127.0.0.1.
 *
 * An installed package (JavaScript in node_modules) is external to Vite's
 * SSR by default: Node loads it, once for the server and the app. Here the
 * package is its TypeScript source, which Vite never externalizes by
 * itself, so the servers name it in `ssr.external`, and resolve it under
 * the same conditions as this process.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as contextvars from "contextvars";
import { contextMiddleware } from "contextvars/express";
import express from "express";
import {
  createServerModuleRunner,
  createServer as createViteServer,
  defaultExternalConditions,
  defaultServerConditions,
  type RunnableDevEnvironment,
  type ViteDevServer,
} from "vite";
import { close, listen, send } from "../helpers/http.ts";

type Vars = typeof import("./fixtures/vite-ssr/src/request-vars.ts");
type Entry = typeof import("./fixtures/vite-ssr/src/entry-server.ts");

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const fixtures = fileURLToPath(new URL("./fixtures/vite-ssr", import.meta.url));
const fromSource = fileURLToPath(import.meta.resolve("contextvars")).endsWith(".ts");
const sourceConditions = fromSource ? ["contextvars-source"] : [];

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** A temporary Vite root: the fixture's src/, and node_modules with the package and React. */
function makeRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "contextvars-vite-"));
  roots.push(root);
  cpSync(fixtures, root, { recursive: true });
  mkdirSync(join(root, "node_modules"));
  symlinkSync(packageRoot, join(root, "node_modules", "contextvars"), "dir");
  for (const name of ["react", "react-dom"]) {
    const target = dirname(fileURLToPath(import.meta.resolve(`${name}/package.json`)));
    symlinkSync(target, join(root, "node_modules", name), "dir");
  }
  return root;
}

/**
 * A dev server in middleware mode, watcher off, and no HMR WebSocket server
 * (which would listen on every interface, port 24678); `inline` puts the
 * package in `ssr.noExternal`.
 */
async function startVite(inline = false): Promise<ViteDevServer> {
  return createViteServer({
    root: makeRoot(),
    configFile: false,
    logLevel: "silent",
    appType: "custom",
    server: { middlewareMode: true, watch: null, hmr: false, ws: false },
    ssr: {
      ...(inline
        ? { noExternal: ["contextvars"] }
        : fromSource
          ? { external: ["contextvars", "contextvars/express"] }
          : {}),
      resolve: {
        conditions: [...sourceConditions, ...defaultServerConditions],
        externalConditions: [...sourceConditions, ...defaultExternalConditions],
      },
    },
  });
}

type Loader = "ssrLoadModule" | "runner";

/** Loads `url` through Vite: `vite.ssrLoadModule`, or the ssr environment's own runner. */
function load<T>(vite: ViteDevServer, via: Loader, url: string): Promise<T> {
  if (via === "ssrLoadModule") return vite.ssrLoadModule(url) as Promise<T>;
  return (vite.environments.ssr as RunnableDevEnvironment).runner.import<T>(url);
}

/**
 * The Express app of the docs. Each request's `user` is set on the var of
 * request-vars.ts, loaded per request (`x-vars-via`, by default the loader
 * the entry is loaded with: `x-via`) or the one `captured` at start-up
 * (`x-vars-via: captured`).
 */
function expressApp(vite: ViteDevServer, captured?: Vars): express.Express {
  const app = express();
  app.use(contextMiddleware());
  app.use(vite.middlewares);
  app.use(async (req, _res, next) => {
    const via = (req.get("x-via") ?? "ssrLoadModule") as Loader;
    const varsVia = req.get("x-vars-via") ?? via;
    const vars =
      varsVia === "captured" && captured
        ? captured
        : await load<Vars>(vite, varsVia as Loader, "/src/request-vars.ts");
    vars.user.set(req.get("x-user") ?? "anonymous");
    next();
  });
  app.get("/render", async (req, res) => {
    const entry = await load<Entry>(
      vite,
      (req.get("x-via") ?? "ssrLoadModule") as Loader,
      "/src/entry-server.ts",
    );
    res.type("application/json").send(await entry.render());
  });
  app.get("/stream", async (_req, res) => {
    const entry = await vite.ssrLoadModule("/src/entry-server.ts");
    (entry as Entry).stream(res);
  });
  return app;
}

async function serve(
  vite: ViteDevServer,
  captured?: Vars,
): Promise<{ server: Server; base: string }> {
  const server = createHttpServer(expressApp(vite, captured));
  return { server, base: await listen(server) };
}

/** `count` concurrent /render requests, each with its own id and user; what each read. */
async function burst(
  base: string,
  count: number,
  tag: string,
  headers: (i: number) => Record<string, string> = () => ({}),
): Promise<Array<{ own: string; read: [string, string] }>> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const id = `${tag}-${i}`;
      const reply = await send(base, "/render", {
        headers: { "x-request-id": id, "x-user": `user-${id}`, ...headers(i) },
      });
      assert.equal(reply.status, 200, reply.body);
      return { own: `${id}/user-${id}`, read: JSON.parse(reply.body) as [string, string] };
    }),
  );
}

function ownReads(results: Array<{ own: string; read: [string, string] }>): number {
  return results.filter(({ own, read }) => read[0] === own && read[1] === own).length;
}

describe("Vite's SSR dev server behind Express", { timeout: 60_000 }, () => {
  it("modules Vite loads share the server's contextvars: ssrLoadModule, the ssr environment's runner and a runner of one's own", async () => {
    const vite = await startVite();
    try {
      const viaSsr = await vite.ssrLoadModule("/src/entry-server.ts");
      const viaRunner = await load<Entry>(vite, "runner", "/src/entry-server.ts");
      const own = createServerModuleRunner(vite.environments.ssr as RunnableDevEnvironment);
      const viaOwn = await own.import<Entry>("/src/entry-server.ts");
      await own.close();
      for (const entry of [viaSsr, viaRunner, viaOwn] as Entry[]) {
        assert.equal(entry.contextvars.ContextVar, contextvars.ContextVar);
      }
      // The app's own modules are one instance per runner: three `user` vars.
      const users = new Set([viaSsr, viaRunner, viaOwn].map((entry) => (entry as Entry).user));
      assert.equal(users.size, 3);
    } finally {
      await vite.close();
    }
  });

  it("300 concurrent requests each read their own values, the first ones waiting for the first transform", async () => {
    const vite = await startVite();
    const { server, base } = await serve(vite);
    try {
      // Nothing loaded yet: the first requests wait for Vite to transform and evaluate the modules.
      const results = await burst(base, 300, "first", (i) => ({
        "x-via": i % 2 === 0 ? "ssrLoadModule" : "runner",
      }));
      assert.equal(ownReads(results), 300);
    } finally {
      await close(server);
      await vite.close();
    }
  });

  it("a var set through ssrLoadModule's module is not the one the runner's modules read", async () => {
    const vite = await startVite();
    const { server, base } = await serve(vite);
    try {
      const results = await burst(base, 50, "mixed", () => ({
        "x-via": "runner",
        "x-vars-via": "ssrLoadModule",
      }));
      // The id is the package's (one instance); the user is another module's var: its default.
      for (const { own, read } of results) {
        assert.deepEqual(read, Array(2).fill(`${own.split("/")[0]}/anonymous`));
      }
    } finally {
      await close(server);
      await vite.close();
    }
  });

  it("after Vite re-evaluates request-vars.ts, a var captured at start-up is read by nobody", async () => {
    const vite = await startVite();
    const captured = await vite.ssrLoadModule("/src/request-vars.ts");
    const { server, base } = await serve(vite, captured as Vars);
    const both = (i: number) => ({ "x-vars-via": i % 2 === 0 ? "captured" : "ssrLoadModule" });
    try {
      const before = await burst(base, 200, "before", both);
      assert.equal(ownReads(before), 200);

      const environment = vite.environments.ssr;
      const module = await environment.moduleGraph.getModuleByUrl("/src/request-vars.ts");
      assert.ok(module);
      environment.moduleGraph.invalidateModule(module); // what an edit of the file does
      const reloaded = await vite.ssrLoadModule("/src/request-vars.ts");
      assert.notEqual(reloaded.user, captured.user);

      const afterEdit = await burst(base, 200, "after", both);
      const capturedSet = afterEdit.filter((_, i) => i % 2 === 0);
      const loadedSet = afterEdit.filter((_, i) => i % 2 === 1);
      // No error: the entry, evaluated again, reads the new var's default.
      for (const { own, read } of capturedSet) {
        assert.deepEqual(read, Array(2).fill(`${own.split("/")[0]}/anonymous`));
      }
      assert.equal(ownReads(loadedSet), 100);
    } finally {
      await close(server);
      await vite.close();
    }
  });

  it("with the package in ssr.noExternal, the app's copy sees no request: requestId throws naming the other copy, a user set lands in its root Context", async (t) => {
    const vite = await startVite(true);
    const { server, base } = await serve(vite);
    try {
      const entry = (await vite.ssrLoadModule("/src/entry-server.ts")) as Entry;
      assert.notEqual(entry.contextvars.ContextVar, contextvars.ContextVar);
      const results = await burst(base, 200, "inline");
      for (const { read } of results) {
        for (const value of read) {
          // The error says the package is loaded twice, not to mount the integration.
          assert.match(value, /^ERR_CONTEXTVAR_UNSET \(another copy\)\//);
        }
      }
      const wrong = results.filter(({ own, read }) =>
        read.some((value) => value.split("/")[1] !== own.split("/")[1]),
      ).length;
      assert.ok(wrong > 0, "every request read its own user");
      // Outside any request, the app's copy reads the user the last request set.
      const users = new Set(results.map(({ own }) => own.split("/")[1]));
      const left = entry.user.get();
      assert.ok(users.has(left), `${left} is no request's user`);
      t.diagnostic(`${wrong} of ${results.length} requests read another request's user`);
    } finally {
      await close(server);
      await vite.close();
    }
  });

  it("a streamed React render reads the request's values in the shell, onShellReady and the Suspense segment", async () => {
    const vite = await startVite();
    const { server, base } = await serve(vite);
    try {
      const replies = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const id = `stream-${i}`;
          const reply = await send(base, "/stream", {
            headers: { "x-request-id": id, "x-user": `user-${id}` },
          });
          return { own: `${id}/user-${id}`, reply };
        }),
      );
      for (const { own, reply } of replies) {
        assert.equal(reply.status, 200, reply.body);
        assert.equal(reply.headers["x-shell-read"], own);
        assert.equal(/<h1>(.*?)<\/h1>/.exec(reply.body)?.[1], own);
        assert.equal(/<p id="late">(.*?)<\/p>/.exec(reply.body)?.[1], own);
      }
    } finally {
      await close(server);
      await vite.close();
    }
  });
});
