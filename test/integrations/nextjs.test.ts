/**
 * Next.js 16 (app router), as docs/integrations.md#nextjs shows. The app
 * (fixtures/nextjs, copied into a temporary root) is built once with
 * `next build` (Turbopack) in a child process, with the package listed in
 * `serverExternalPackages`, and that one build is served three ways, each a
 * child process on 127.0.0.1 port 0: `next start` with nothing more,
 * `next start` with the fixture's `instrumentation.ts` registering
 * `ContextVarsContextManager` (CONTEXTVARS_NEXT=otel), and the docs' custom
 * server (`withContext` from contextvars/http around Next's handler).
 *
 * Every reader sets a `user` var from the request, awaits a random 0 to
 * 20 ms, and reads it back: a route handler and its `after()` callback
 * (which prints a JSON line on stdout), a layout that sets and a page and a
 * nested async server component that read, a server action called over
 * HTTP with its id from the build's manifest, and `proxy.ts` (its reading
 * comes back as a response header). Route handlers made with `isolated` and
 * with `withContext` from contextvars/fetch, and an `isolated` server
 * action, stand for the per-handler way.
 *
 * The package is installed in the app as it is packed (package.json, src,
 * and dist built here with tsconfig.build.json), since Next's server loads
 * an external package with Node's own resolution, without the source
 * condition; next, react, react-dom and @opentelemetry/api are linked from
 * this repository's node_modules, and Turbopack's root is set above both.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { runBuild } from "../helpers/build.ts";
import { send } from "../helpers/http.ts";
import {
  loggedLines,
  type ServerProcess,
  startServer,
  stopServer as stop,
  stopServers,
} from "../helpers/server-process.ts";

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const modules = join(packageRoot, "node_modules");
const fixtures = fileURLToPath(new URL("./fixtures/nextjs", import.meta.url));

/** Concurrent requests in each burst. */
const COUNT = 100;

const scratch = mkdtempSync(join(tmpdir(), "contextvars-next-"));
after(async () => {
  await stopServers();
  rmSync(scratch, { recursive: true, force: true });
});

/** The longest folder that holds both paths (Turbopack compiles nothing outside its root). */
function commonRoot(a: string, b: string): string {
  const left = realpathSync(a).split(sep);
  const right = realpathSync(b).split(sep);
  let i = 0;
  while (i < left.length && left[i] === right[i]) i++;
  return left.slice(0, i).join(sep) || sep;
}

/** The app root: the fixture, its config, the package as packed, and links to next and react. */
function makeApp(): string {
  const build = join(scratch, "package-build");
  for (const file of ["package.json", "tsconfig.json", "tsconfig.build.json", "src"]) {
    cpSync(join(packageRoot, file), join(build, file), { recursive: true });
  }
  symlinkSync(modules, join(build, "node_modules"), "dir");
  execFileSync(
    process.execPath,
    [join(modules, "typescript/bin/tsc"), "-p", join(build, "tsconfig.build.json")],
    {
      timeout: 60_000,
    },
  );
  const root = join(scratch, "app");
  cpSync(fixtures, root, { recursive: true });
  const installed = join(root, "node_modules/contextvars");
  for (const file of ["package.json", "src", "dist"]) {
    cpSync(join(build, file), join(installed, file), { recursive: true });
  }
  for (const name of ["next", "react", "react-dom", "@opentelemetry/api", "@opentelemetry/core"]) {
    mkdirSync(dirname(join(root, "node_modules", name)), { recursive: true });
    symlinkSync(join(modules, name), join(root, "node_modules", name), "dir");
  }
  writeFileSync(join(root, "package.json"), `{ "private": true }\n`);
  writeFileSync(
    join(root, "next.config.mjs"),
    `export default {
  serverExternalPackages: ["contextvars"], // one copy of the package for the whole server
  // next is linked from outside the app: Turbopack compiles nothing outside its root.
  turbopack: { root: ${JSON.stringify(commonRoot(root, modules))} },
};
`,
  );
  return root;
}

const ENV = { NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production" };

interface Logged {
  where: string;
  id: string;
  user: string;
  phase: string;
}

/** A server of the app, with the JSON lines its after() callbacks printed so far. */
type Running = ServerProcess<Logged>;

const LISTENING = /(?:Local:|Custom server on)\s+(http:\/\/127\.0\.0\.1:\d+)/;

/** Starts `next start` or the custom server: resolves once it printed the URL it listens on. */
function start(args: string[], env: Record<string, string>, cwd: string): Promise<Running> {
  return startServer<Logged>(args, { ...ENV, ...env }, LISTENING, cwd);
}

/** Waits until `count` after() lines with ids starting with `tag` were printed (they follow the response). */
function afterLines(running: Running, tag: string, count: number): Promise<Logged[]> {
  return loggedLines(running, (line) => line.id.startsWith(`${tag}-`), count);
}

const ids = (tag: string): string[] => Array.from({ length: COUNT }, (_, i) => `${tag}-${i}`);

interface RouteReply {
  id: string;
  user: string;
  requestId: string;
  proxyUser: string;
  proxyRequestId: string;
  echoed: string | undefined;
}

/** COUNT concurrent GETs of `path`, each with its own x-user (and x-request-id, the same). */
function routeBurst(running: Running, path: string, tag: string): Promise<RouteReply[]> {
  return Promise.all(
    ids(tag).map(async (id) => {
      const reply = await send(running.base, path, {
        headers: { "x-user": id, "x-request-id": id },
      });
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as { user: string; requestId: string };
      return {
        id,
        user: body.user,
        requestId: body.requestId,
        proxyUser: String(reply.headers["x-proxy-user"]),
        proxyRequestId: String(reply.headers["x-proxy-request-id"]),
        echoed: reply.headers["x-request-id"] as string | undefined,
      };
    }),
  );
}

interface RenderReply {
  id: string;
  first: string;
  page: string;
  nested: string;
}

/** COUNT concurrent renders of /render/<id>: what the page's first line, the page and the nested component read. */
function renderBurst(running: Running, tag: string): Promise<RenderReply[]> {
  return Promise.all(
    ids(tag).map(async (id) => {
      const reply = await send(running.base, `/render/${id}`);
      assert.equal(reply.status, 200, reply.body);
      const read = (where: string) => {
        const found = new RegExp(`\\[\\[${where}:([^\\]]*)\\]\\]`).exec(reply.body)?.[1];
        assert.ok(found !== undefined, `no ${where} reading in:\n${reply.body}`);
        return found;
      };
      return { id, first: read("first"), page: read("page"), nested: read("nested") };
    }),
  );
}

let actionIds: Record<string, string>;

/** COUNT concurrent calls of the server action `name`, as a form's fetch sends them; what each read. */
function actionBurst(running: Running, name: string, tag: string): Promise<string[]> {
  return Promise.all(
    ids(tag).map(async (id) => {
      const reply = await send(running.base, "/action", {
        method: "POST",
        headers: {
          "next-action": actionIds[name] ?? "",
          accept: "text/x-component",
          "content-type": "text/plain;charset=UTF-8",
        },
        body: JSON.stringify([id]),
      });
      assert.equal(reply.status, 200, reply.body);
      const read = /\[\[action:([^\]]*)\]\]/.exec(reply.body)?.[1];
      assert.ok(read !== undefined, reply.body);
      return read === id ? "own" : read;
    }),
  );
}

/** How many rows read their own id. */
function own<T extends { id: string }>(rows: readonly T[], read: (row: T) => string): number {
  return rows.filter((row) => read(row) === row.id).length;
}

/** More than half of COUNT read another request's value (or none): "most leak". The count goes in the report. */
function mostLeak(t: TestContext, ownCount: number, what: string): void {
  const said = `${what}: ${ownCount} of ${COUNT} read their own value`;
  t.diagnostic(said);
  assert.ok(ownCount < COUNT / 2, said);
}

let root: string;

before(async () => {
  root = makeApp();
  await runBuild("next build", [join(root, "node_modules/next/dist/bin/next"), "build"], root, {
    ...process.env,
    ...ENV,
  });
  const manifest = JSON.parse(
    readFileSync(join(root, ".next/server/server-reference-manifest.json"), "utf8"),
  ) as { node: Record<string, { exportedName: string }> };
  actionIds = Object.fromEntries(
    Object.entries(manifest.node).map(([id, entry]) => [entry.exportedName, id]),
  );
  assert.deepEqual(Object.keys(actionIds).sort(), ["own", "plain"]);
});

/**
 * A request or a server that never answers fails its suite rather than
 * hanging the run. The longest, the first (it waits for the build), took
 * 25 to 36 s in three runs here; the others 5 to 9 s.
 */
const SUITE = { timeout: 180_000 };

const nextStart = (): string[] => [
  join(root, "node_modules/next/dist/bin/next"),
  "start",
  "-H",
  "127.0.0.1",
  "-p",
  "0",
];

describe("next start with nothing configured", SUITE, () => {
  let running: Running;
  before(async () => {
    running = await start(nextStart(), {}, root);
  });
  after(() => stop(running.child));

  it("a route handler, its after() callbacks, the proxy, a layout's readers and a server action run in the root Context: most read another request's value", async (t) => {
    const routes = await routeBurst(running, "/api/plain", "bare");
    mostLeak(
      t,
      own(routes, (r) => r.user),
      "route handler",
    );
    mostLeak(
      t,
      own(routes, (r) => r.proxyUser),
      "proxy",
    );
    for (const reply of routes) assert.equal(reply.requestId, "none");
    const afters = await afterLines(running, "bare", COUNT);
    assert.equal(afters.length, COUNT);
    mostLeak(
      t,
      own(afters, (r) => r.user),
      "after()",
    );
    const renders = await renderBurst(running, "bare-render");
    mostLeak(
      t,
      own(renders, (r) => r.page),
      "page",
    );
    mostLeak(
      t,
      own(renders, (r) => r.nested),
      "nested component",
    );
    const actions = await actionBurst(running, "plain", "bare-action");
    mostLeak(t, actions.filter((read) => read === "own").length, "server action");
  });

  it("per handler: isolated and withContext route handlers and an isolated server action read their own values, and isolated starts from the root Context's leftovers", async () => {
    // The plain route leaves a `user` in the root Context, which isolated copies.
    await routeBurst(running, "/api/plain", "leftover");
    const isolated = await Promise.all(
      ids("isolated").map(async (id) => {
        const reply = await send(running.base, "/api/isolated", { headers: { "x-user": id } });
        return { id, ...(JSON.parse(reply.body) as { first: string; user: string }) };
      }),
    );
    assert.equal(
      own(isolated, (r) => r.user),
      COUNT,
    );
    for (const reply of isolated) assert.match(reply.first, /^(leftover|bare)-/);
    const wrapped = await routeBurst(running, "/api/wrapped", "wrapped");
    for (const reply of wrapped) {
      assert.deepEqual(
        { user: reply.user, requestId: reply.requestId, echoed: reply.echoed },
        { user: reply.id, requestId: reply.id, echoed: reply.id },
      );
    }
    const actions = await actionBurst(running, "own", "isolated-action");
    assert.deepEqual(actions, Array(COUNT).fill("own"));
  });
});

describe("next start with ContextVarsContextManager in instrumentation.ts", SUITE, () => {
  let running: Running;
  before(async () => {
    running = await start(nextStart(), { CONTEXTVARS_NEXT: "otel" }, root);
  });
  after(() => stop(running.child));

  it("the proxy, a route handler and its after() callbacks read their own values; after() reads a set made after its call", async () => {
    const routes = await routeBurst(running, "/api/plain", "otel");
    for (const reply of routes) {
      // No requestId: nothing sets it for every request with this set-up.
      assert.deepEqual(
        { user: reply.user, proxyUser: reply.proxyUser, requestId: reply.requestId },
        { user: reply.id, proxyUser: reply.id, requestId: "none" },
      );
    }
    const afters = await afterLines(running, "otel", COUNT);
    assert.equal(afters.length, COUNT);
    for (const line of afters) {
      assert.deepEqual(line, {
        where: "after",
        id: line.id,
        user: line.id,
        phase: "after after()",
      });
    }
  });

  it("a layout's set reaches the page and its nested component after an await; the page's first line reads no other request's value", async () => {
    const renders = await renderBurst(running, "otel-render");
    for (const reply of renders) {
      assert.equal(reply.page, reply.id);
      assert.equal(reply.nested, reply.id);
      assert.ok(reply.first === "none" || reply.first === reply.id, reply.first);
    }
  });

  it("a server action reads its own value", async () => {
    const actions = await actionBurst(running, "plain", "otel-action");
    assert.deepEqual(actions, Array(COUNT).fill("own"));
  });
});

describe("the custom server with withContext from contextvars/http", SUITE, () => {
  let running: Running;
  before(async () => {
    running = await start([join(root, "server.mjs")], {}, root);
  });
  after(() => stop(running.child));

  it("the proxy, a route handler and its after() callbacks read their own values and the request's id, echoed", async () => {
    const routes = await routeBurst(running, "/api/plain", "custom");
    for (const reply of routes) {
      assert.deepEqual(
        {
          user: reply.user,
          requestId: reply.requestId,
          proxyUser: reply.proxyUser,
          proxyRequestId: reply.proxyRequestId,
          echoed: reply.echoed,
        },
        {
          user: reply.id,
          requestId: reply.id,
          proxyUser: reply.id,
          proxyRequestId: reply.id,
          echoed: reply.id,
        },
      );
    }
    const afters = await afterLines(running, "custom", COUNT);
    assert.equal(afters.length, COUNT);
    for (const line of afters) assert.equal(line.user, line.id);
  });

  it("layouts, pages, nested components and server actions read their own values", async () => {
    const renders = await renderBurst(running, "custom-render");
    for (const reply of renders) {
      assert.equal(reply.page, reply.id);
      assert.equal(reply.nested, reply.id);
    }
    const actions = await actionBurst(running, "plain", "custom-action");
    assert.deepEqual(actions, Array(COUNT).fill("own"));
  });
});
