/**
 * SvelteKit (adapter-node) and Astro (@astrojs/node in middleware mode),
 * as docs/integrations.md#sveltekit-and-astro shows. Each app is written
 * into a temporary directory and built there with the framework's own
 * build (`vite build`, `astro build`) in a child process, then its server
 * output is imported into this process and served on 127.0.0.1: SvelteKit's
 * `handler.js` behind `contextMiddleware` in Express and under `withContext`
 * on node:http, and its standalone server (`build/index.js`), bare or with a
 * `handle` hook that makes the request's Context itself; Astro's `handler`
 * behind `contextMiddleware`.
 *
 * Every reader (SvelteKit's `handle` hook, a server `load` and the promise
 * it returns, which SvelteKit streams after the page, a form action, a
 * `+server.ts` endpoint; Astro's `onRequest`, a page, two async components
 * streamed after it, an API endpoint) awaits a random delay and writes
 * `[[where:id:user:local]]`: `requestId`, a `user` var the server sets,
 * exported by a package in node_modules (`app-vars`) that the builds leave
 * external, and a `local` var made in the app's own source, set by the
 * hook or middleware inside the app.
 *
 * An installed package (JavaScript in node_modules) is external to both
 * builds by default. Here the package is its TypeScript source, reached
 * through a symlink, which Vite treats as the app's own source and bundles:
 * the apps name it external themselves, and the builds run under tsx.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { ContextVar } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { withContext } from "contextvars/http";
import express from "express";
import { runBuild } from "../helpers/build.ts";
import { close, listen, send } from "../helpers/http.ts";

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const modules = join(packageRoot, "node_modules");
const fromSource = fileURLToPath(import.meta.resolve("contextvars")).endsWith(".ts");

/** Node's flags for a build that imports the package's TypeScript source (also in worker threads). */
const buildFlags = fromSource
  ? [
      "--conditions=contextvars-source",
      "--import",
      import.meta.resolve("tsx"),
      "--import",
      pathToFileURL(fileURLToPath(new URL("../helpers/tsx-in-workers.mjs", import.meta.url))).href,
    ]
  : [];

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** What every reader in the apps writes into the response. */
const LIB = `
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { user } from "app-vars";

export const local = new ContextVar("local");
export const delay = () => sleep(Math.floor(Math.random() * 10));

export function read(where) {
  let id = "none";
  try {
    id = requestId.get();
  } catch {}
  return "[[" + where + ":" + id + ":" + user.get("none") + ":" + local.get("none") + "]]";
}
`;

/** A package in node_modules, external to both builds: one `user` var for the server and the app. */
const APP_VARS = {
  "node_modules/app-vars/package.json": `{ "name": "app-vars", "type": "module", "exports": "./index.js" }`,
  "node_modules/app-vars/index.js": `import { ContextVar } from "contextvars";\nexport const user = new ContextVar("user");\n`,
};

const SVELTEKIT: Record<string, string> = {
  // adapter-node bundles every package that is not in `dependencies` into build/.
  "package.json": `{ "type": "module", "dependencies": { "contextvars": "*", "app-vars": "*" } }`,
  "svelte.config.js": `
import adapter from "@sveltejs/adapter-node";
export default { kit: { adapter: adapter({ out: "build" }) } };
`,
  "vite.config.js": `
import { sveltekit } from "@sveltejs/kit/vite";
import { defaultClientConditions, defaultExternalConditions, defaultServerConditions } from "vite";
const source = ${JSON.stringify(fromSource ? ["contextvars-source"] : [])};
export default {
  plugins: [sveltekit()],
  logLevel: "error",
  resolve: { conditions: [...source, ...defaultClientConditions] },
  ssr: {
    resolve: {
      conditions: [...source, ...defaultServerConditions],
      externalConditions: [...source, ...defaultExternalConditions],
    },
  },
  // The package is linked here, and its TypeScript source is not a file Vite externalizes.
  build: { rolldownOptions: { external: [/^contextvars(\\/|$)/] } },
};
`,
  "src/app.html": `<!doctype html><html><head>%sveltekit.head%</head><body>%sveltekit.body%</body></html>\n`,
  "src/lib/read.js": LIB,
  "src/hooks.server.ts": `
import { isolated } from "contextvars";
import { requestId } from "contextvars/http";
import { user } from "app-vars";
import { delay, local, read } from "$lib/read.js";

async function serve({ event, resolve }, own) {
  const headers = event.request.headers;
  if (own) {
    requestId.set(headers.get("x-request-id"));
    user.set(headers.get("x-user"));
  }
  await delay();
  local.set(headers.get("x-user"));
  event.locals.hook = read("hook");
  return resolve(event);
}

const ownContext = isolated(serve);

export function handle(input) {
  return input.event.request.headers.has("x-own-context") ? ownContext(input, true) : serve(input, false);
}
`,
  "src/routes/+page.server.ts": `
import { delay, read } from "$lib/read.js";

export async function load({ locals }) {
  await delay();
  return { hook: locals.hook, load: read("load"), streamed: delay().then(() => read("streamed")) };
}

export const actions = {
  default: async () => {
    await delay();
    return { action: read("action") };
  },
};
`,
  "src/routes/+page.svelte": `
<script>
  let { data, form } = $props();
</script>
<p>{data.hook}</p>
<p>{data.load}</p>
{#await data.streamed}<p>waiting</p>{:then value}<p>{value}</p>{/await}
{#if form}<p>{form.action}</p>{/if}
`,
  "src/routes/api/+server.ts": `
import { json } from "@sveltejs/kit";
import { delay, read } from "$lib/read.js";

export async function GET({ locals }) {
  await delay();
  return json({ hook: locals.hook, endpoint: read("endpoint") });
}
`,
  ...APP_VARS,
};

const ASTRO: Record<string, string> = {
  // Astro 5 reads each dependency's package.json and calls keywords.includes():
  // listing the package checks that its manifest builds (test/package/manifest.test.ts).
  "package.json": `{ "type": "module", "dependencies": { "app-vars": "*", "contextvars": "*" } }`,
  "astro.config.mjs": `
import node from "@astrojs/node";
export default {
  output: "server",
  adapter: node({ mode: "middleware" }),
  logLevel: "error",
  // The package is linked here, and its TypeScript source is not a file Vite 6 externalizes.
  vite: { build: { rollupOptions: { external: [/^contextvars(\\/|$)/] } } },
};
`,
  "src/lib/read.js": LIB,
  "src/middleware.js": `
import { delay, local, read } from "./lib/read.js";

export async function onRequest(context, next) {
  await delay();
  local.set(context.request.headers.get("x-user"));
  context.locals.middleware = read("middleware");
  return next();
}
`,
  "src/components/Slow.astro": `---
import { delay, read } from "../lib/read.js";
await delay();
const seen = read(Astro.props.name);
---
<p>{seen}</p>
`,
  "src/pages/index.astro": `---
import Slow from "../components/Slow.astro";
import { delay, read } from "../lib/read.js";
await delay();
const seen = read("page");
---
<html><body><p>{Astro.locals.middleware}</p><p>{seen}</p><Slow name="first" /><Slow name="second" /></body></html>
`,
  "src/pages/api.js": `
import { delay, read } from "../lib/read.js";

export async function GET({ locals }) {
  await delay();
  return Response.json({ middleware: locals.middleware, endpoint: read("endpoint") });
}
`,
  ...APP_VARS,
};

/** A temporary app: its files, and node_modules with the package and the framework's own. */
function makeApp(files: Record<string, string>, links: readonly string[]): string {
  const root = mkdtempSync(join(tmpdir(), "contextvars-meta-"));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  symlinkSync(packageRoot, join(root, "node_modules", "contextvars"), "dir");
  for (const name of links) {
    mkdirSync(dirname(join(root, "node_modules", name)), { recursive: true });
    symlinkSync(join(modules, name), join(root, "node_modules", name), "dir");
  }
  return root;
}

/** Runs a framework's build in `root`; rejects with its output when it fails. */
function build(root: string, bin: string): Promise<void> {
  return runBuild(`${bin} build`, [...buildFlags, join(modules, bin), "build"], root, {
    ...process.env,
    ASTRO_TELEMETRY_DISABLED: "1",
    NODE_ENV: "production",
  });
}

type Handler = (req: unknown, res: unknown, next?: (error?: unknown) => void) => void;

let kit: string;
let astro: string;
/** Each app's `user`: Node loads the app's app-vars once, for the server and the built app. */
const users = new Map<string, ContextVar<string>>();

before(async () => {
  kit = makeApp(SVELTEKIT, ["@sveltejs", "svelte", "vite"]);
  astro = makeApp(ASTRO, ["astro", "@astrojs"]);
  await Promise.all([build(kit, "vite/bin/vite.js"), build(astro, "astro/astro.js")]);
  for (const root of [kit, astro]) {
    users.set(
      root,
      (await importFrom<{ user: ContextVar<string> }>(root, "node_modules/app-vars/index.js")).user,
    );
  }
});

async function importFrom<T>(root: string, path: string): Promise<T> {
  return import(pathToFileURL(join(root, path)).href) as Promise<T>;
}

/** Express with `contextMiddleware` (its seed sets `user`), then the framework's handler. */
function behindExpress(root: string, handler: Handler): Server {
  const user = users.get(root) as ContextVar<string>;
  const app = express();
  app.use(contextMiddleware({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
  app.use(handler as express.RequestHandler);
  return createServer(app);
}

/** Which of id, user and local a tally compares. */
type Fields = ReadonlyArray<0 | 1 | 2>;
const ALL: Fields = [0, 1, 2];

type Tally = Record<string, { own: number; other: number; none: number }>;

/** Sorts every distinct `[[where:id:user:local]]` of a reply as the request's own, another's, or none. */
function tally(into: Tally, body: string, id: string, name: string, fields: Fields): number {
  let found = 0;
  // SvelteKit writes a load's data twice, into the HTML and into the data it hydrates from.
  const readings = new Set(body.match(/\[\[[^\]]+\]\]/g));
  for (const reading of readings) {
    const [where = "", ...values] = reading.slice(2, -2).split(":");
    const expected = fields.map((field) => [id, name, name][field]);
    const read = fields.map((field) => values[field]);
    into[where] ??= { own: 0, other: 0, none: 0 };
    const counts = into[where];
    if (read.every((value, i) => value === expected[i])) counts.own++;
    else if (read.includes("none")) counts.none++;
    else counts.other++;
    found++;
  }
  return found;
}

interface Shot {
  path: string;
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  /** How many readings the reply holds. */
  reads: number;
}

/** `count` concurrent requests, each with its own id and user, spread over `shots`. */
async function burst(
  base: string,
  count: number,
  tag: string,
  shots: readonly Shot[],
  extra: Record<string, string> = {},
  fields: Fields = ALL,
): Promise<Tally> {
  const seen: Tally = {};
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const id = `${tag}-${i}`;
      const name = `user-${id}`;
      const shot = shots[i % shots.length] as Shot;
      // adapter-node takes the protocol to be https unless ORIGIN or PROTOCOL_HEADER says otherwise,
      // and SvelteKit refuses a form post from another origin.
      const origin = base.replace("http:", "https:");
      const reply = await send(base, shot.path, {
        ...(shot.method === undefined ? {} : { method: shot.method }),
        ...(shot.body === undefined ? {} : { body: shot.body }),
        headers: { "x-request-id": id, "x-user": name, origin, ...shot.headers, ...extra },
      });
      assert.equal(reply.status, 200, reply.body);
      assert.equal(tally(seen, reply.body, id, name, fields), shot.reads, reply.body);
    }),
  );
  return seen;
}

const KIT_SHOTS: readonly Shot[] = [
  { path: "/", reads: 3 }, // hook, load, streamed
  { path: "/api", reads: 2 }, // hook, endpoint
  {
    // A form action, as the page's enhanced form posts it.
    path: "/",
    method: "POST",
    body: "",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
      "x-sveltekit-action": "true",
    },
    reads: 1,
  },
];

const ASTRO_SHOTS: readonly Shot[] = [
  { path: "/", reads: 4 }, // middleware, page, first, second
  { path: "/api", reads: 2 }, // middleware, endpoint
];

function allOwn(seen: Tally, total: number): void {
  let own = 0;
  for (const [where, counts] of Object.entries(seen)) {
    assert.deepEqual({ where, ...counts, own: 0 }, { where, own: 0, other: 0, none: 0 });
    own += counts.own;
  }
  assert.equal(own, total);
}

async function serving(server: Server, run: (base: string) => Promise<void>): Promise<void> {
  const base = await listen(server);
  try {
    await run(base);
  } finally {
    await close(server);
  }
}

describe("SvelteKit with adapter-node", () => {
  it("handler.js behind contextMiddleware: the hook, loads, streamed promises, actions and endpoints read their own values", async () => {
    const { handler } = await importFrom<{ handler: Handler }>(kit, "build/handler.js");
    await serving(behindExpress(kit, handler), async (base) => {
      const seen = await burst(base, 300, "kit-express", KIT_SHOTS);
      assert.deepEqual(Object.keys(seen).sort(), [
        "action",
        "endpoint",
        "hook",
        "load",
        "streamed",
      ]);
      allOwn(seen, 600);
    });
  });

  it("handler.js under withContext on node:http reads the same", async () => {
    const { handler } = await importFrom<{ handler: Handler }>(kit, "build/handler.js");
    const user = users.get(kit) as ContextVar<string>;
    const listener = withContext((req, res) => handler(req, res), {
      seed: (req) => user.set(String(req.headers["x-user"] ?? "anonymous")),
    });
    await serving(createServer(listener), async (base) => {
      allOwn(await burst(base, 300, "kit-http", KIT_SHOTS), 600);
    });
  });

  describe("the standalone server (build/index.js)", () => {
    let standalone: { server: { server: Server } };
    let base: string;
    before(async () => {
      const saved = { HOST: process.env.HOST, PORT: process.env.PORT };
      process.env.HOST = "127.0.0.1";
      process.env.PORT = "0";
      try {
        standalone = await importFrom(kit, "build/index.js"); // listens as it is imported
      } finally {
        for (const [name, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
      }
      const server = standalone.server.server;
      if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => close(standalone.server.server));

    it("a handle hook wrapped in isolated gives each request its own Context, streamed promises included", async () => {
      allOwn(await burst(base, 300, "kit-hook", KIT_SHOTS, { "x-own-context": "1" }), 600);
    });

    it("bare, every request runs in the root Context: no requestId, and the hook's set is shared", async () => {
      const seen = await burst(base, 300, "kit-bare", KIT_SHOTS, {}, [0]);
      // No requestId anywhere: read() wrote "none" in every reading.
      for (const counts of Object.values(seen)) assert.equal(counts.own + counts.other, 0);
      // What the hooks set landed in the root Context, which every request shares.
      const locals = await burst(base, 300, "kit-bare-local", [{ path: "/", reads: 3 }], {}, [2]);
      const other = Object.values(locals).reduce((sum, counts) => sum + counts.other, 0);
      assert.ok(other > 0, JSON.stringify(locals));
    });
  });
});

describe("Astro with @astrojs/node in middleware mode", () => {
  it("behind contextMiddleware: onRequest, pages, streamed async components and endpoints read their own values", async () => {
    const { handler } = await importFrom<{ handler: Handler }>(astro, "dist/server/entry.mjs");
    await serving(behindExpress(astro, handler), async (base) => {
      const seen = await burst(base, 300, "astro", ASTRO_SHOTS);
      assert.deepEqual(Object.keys(seen).sort(), [
        "endpoint",
        "first",
        "middleware",
        "page",
        "second",
      ]);
      allOwn(seen, 900);
    });
  });
});
