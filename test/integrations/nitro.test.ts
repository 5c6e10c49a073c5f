/**
 * A Nitro 2 app (nitropack, the node-server preset), as
 * docs/integrations.md#nitro-and-nuxt shows. Nitro makes its server itself,
 * in its generated entry (`.output/server/index.mjs`) and in its dev server,
 * so nothing can be wrapped around the server's listener: the app's plugin
 * (fixtures/nitro/server/plugins/contextvars.ts) runs the app's h3 handler,
 * and h3's `onError`, in the request's Context instead.
 *
 * The app (fixtures/nitro, copied into a temporary root) is built with
 * `nitropack build` in a child process, and its output started as another,
 * listening on 127.0.0.1 port 0; `nitropack dev` is started the same way.
 * Every reader awaits a random delay and reports `requestId`, a `user` var
 * that middleware sets after an await, and a `tenant` var that Nitro's
 * `request` hook sets; the `afterResponse` and `error` hooks print what they
 * see as JSON lines on stdout.
 *
 * The package is linked as its TypeScript source: the app's build resolves
 * it under the same conditions as this process and bundles it (`externals.
 * inline`), so the built server needs no loader. An installed package
 * (JavaScript in node_modules) is left external and traced into
 * `.output/server/node_modules` instead; either way the server process
 * loads one copy.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { runBuild } from "../helpers/build.ts";
import { send, UUID } from "../helpers/http.ts";
import {
  loggedLines as logged,
  type ServerProcess,
  startServer,
  stopServer as stop,
  stopServers,
} from "../helpers/server-process.ts";

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const fixtures = fileURLToPath(new URL("./fixtures/nitro", import.meta.url));
const fromSource = fileURLToPath(import.meta.resolve("contextvars")).endsWith(".ts");
const nitropack = dirname(fileURLToPath(import.meta.resolve("nitropack/package.json")));
const cli = join(nitropack, "dist/cli/index.mjs");
/** Nitro 2's h3 (1), the app's own dependency in a real project. */
const h3 = dirname(createRequire(join(nitropack, "package.json")).resolve("h3/package.json"));

const roots: string[] = [];
after(async () => {
  await stopServers();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** A temporary app root: the fixture, its config, and node_modules with the package, nitropack and h3. */
function makeApp(): string {
  const root = mkdtempSync(join(tmpdir(), "contextvars-nitro-"));
  roots.push(root);
  cpSync(fixtures, root, { recursive: true });
  writeFileSync(join(root, "package.json"), `{ "type": "module", "private": true }\n`);
  writeFileSync(
    join(root, "nitro.config.ts"),
    `import { defineNitroConfig } from "nitropack/config";

export default defineNitroConfig({
  preset: "node-server",
  srcDir: "server",
  compatibilityDate: "2025-07-01",
  errorHandler: "~/error",
  logLevel: 1,
  exportConditions: ${JSON.stringify(fromSource ? ["contextvars-source"] : [])},
  // Linked here, not installed: bundled rather than traced into .output/server/node_modules.
  externals: { inline: ["contextvars"] },
});
`,
  );
  mkdirSync(join(root, "node_modules"));
  symlinkSync(packageRoot, join(root, "node_modules", "contextvars"), "dir");
  symlinkSync(nitropack, join(root, "node_modules", "nitropack"), "dir");
  symlinkSync(h3, join(root, "node_modules", "h3"), "dir");
  return root;
}

/** Runs `nitropack build` in `root`; rejects with its output when it fails. */
function build(root: string): Promise<void> {
  return runBuild("nitropack build", [cli, "build"], root, {
    ...process.env,
    NODE_ENV: "production",
  });
}

interface Reading {
  where: string;
  id: string;
  user: string;
  tenant: string;
}

interface Logged extends Reading {
  path: string;
}

/** A server of the app, with the JSON lines its hooks printed so far. */
type Running = ServerProcess<Logged>;

/** Starts a Nitro server: resolves once it printed the URL it listens on (`listening` captures it). */
function start(
  args: string[],
  env: Record<string, string>,
  listening: RegExp,
  cwd?: string,
): Promise<Running> {
  return startServer<Logged>(args, env, listening, cwd);
}

/** Polls `path` until it answers 200 (the dev server answers before its worker is ready). */
async function ready(base: string, path: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    const reply = await send(base, path).catch(() => undefined);
    if (reply?.status === 200) return;
    await sleep(250);
  }
  assert.fail(`${base}${path} did not answer 200 within 60 s`);
}

function headers(id: string, tenant = true): Record<string, string> {
  return {
    "x-request-id": id,
    "x-user": `user-${id}`,
    ...(tenant ? { "x-tenant": `t-${id}` } : {}),
  };
}

function own(id: string, where: string): Reading {
  return { where, id, user: `user-${id}`, tenant: `t-${id}` };
}

interface ReadReply {
  readings: Reading[];
  forwarded: Reading;
  bare: Reading;
  stored: string;
}

/** `count` concurrent requests to /read, each with its own id, user and tenant; checks every reply. */
async function readBurst(running: Running, tag: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${tag}-${i}`);
  await Promise.all(
    ids.map(async (id) => {
      const reply = await send(running.base, "/read", { headers: headers(id) });
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.headers["x-request-id"], id);
      const body = JSON.parse(reply.body) as ReadReply;
      assert.deepEqual(
        body.readings,
        ["handler", "timer", "task", "task", "end"].map((where) => own(id, where)),
      );
      // event.$fetch sends the request's headers on: a request of its own with the same values.
      assert.deepEqual(body.forwarded, own(id, "inner"));
      // The global $fetch sends none: a fresh id, the middleware's default user, no tenant.
      assert.match(body.bare.id, UUID);
      assert.deepEqual(
        { ...body.bare, id: "" },
        { where: "inner", id: "", user: "anonymous", tenant: "none" },
      );
      assert.equal(body.stored, `user-${id}`);
    }),
  );
  return ids;
}

/**
 * 100 pairs, one after the other: a request that names its tenant, then one that names none;
 * the tenant each second request read.
 */
async function tenantsAfterOneThatNamedIt(running: Running): Promise<string[]> {
  const read: string[] = [];
  for (let i = 0; i < 100; i++) {
    await send(running.base, "/plain", { headers: headers(`first-${i}`) });
    const reply = await send(running.base, "/plain", { headers: headers(`second-${i}`, false) });
    read.push((JSON.parse(reply.body) as Reading).tenant);
  }
  return read;
}

let root: string;
let devRoot: string;
const built = (): string => join(root, ".output/server/index.mjs");
const LISTENING = /Listening on (http:\/\/\S+)/;

before(async () => {
  root = makeApp();
  devRoot = makeApp();
  await build(root);
});

describe("the node-server output with the plugin", { timeout: 60_000 }, () => {
  let running: Running;
  before(async () => {
    running = await start([built()], { NITRO_HOST: "127.0.0.1", NITRO_PORT: "0" }, LISTENING);
  });
  after(() => stop(running.child));

  it("200 concurrent requests: middleware, the request hook, the handler after awaits, a timer, tasks, $fetch and storage read their own values, and so does afterResponse", async () => {
    const ids = await readBurst(running, "built", 200);
    const reads = await logged(
      running,
      (line) => line.path === "/read" && line.id.startsWith("built-"),
      200,
    );
    assert.deepEqual(reads.map((line) => line.id).sort(), [...ids].sort());
    for (const line of reads)
      assert.deepEqual(line, { ...own(line.id, "afterResponse"), path: "/read" });
    // Each forwarded $fetch was a request of its own: its afterResponse saw its own set,
    // which neither the caller (above: its end reading) nor any other request saw.
    const inner = await logged(
      running,
      (line) => line.path === "/inner" && line.id.startsWith("built-"),
      200,
    );
    assert.equal(inner.length, 200);
    for (const line of inner) {
      assert.deepEqual(line, {
        ...own(line.id, "afterResponse"),
        user: "set-by-inner",
        path: "/inner",
      });
    }
  });

  it("a request that sends no id gets a fresh one, echoed; one that sends no tenant reads none, not the last request's", async () => {
    const replies = await Promise.all(
      Array.from({ length: 100 }, () =>
        send(running.base, "/plain", { headers: { "x-user": "u" } }),
      ),
    );
    const ids = new Set<string>();
    for (const reply of replies) {
      const body = JSON.parse(reply.body) as Reading;
      assert.match(body.id, UUID);
      assert.equal(reply.headers["x-request-id"], body.id);
      ids.add(body.id);
    }
    assert.equal(ids.size, 100);
    assert.deepEqual(await tenantsAfterOneThatNamedIt(running), Array(100).fill("none"));
  });

  it("100 concurrent throws: Nitro's error handler and its error hook read the request's values", async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `boom-${i}`);
    await Promise.all(
      ids.map(async (id) => {
        const reply = await send(running.base, "/boom", { headers: headers(id) });
        assert.equal(reply.status, 418);
        assert.equal(reply.headers["x-request-id"], id);
        assert.deepEqual(JSON.parse(reply.body), { message: "boom", ...own(id, "errorHandler") });
      }),
    );
    const errors = await logged(running, (line) => line.path === "/boom", 100);
    assert.deepEqual(errors.map((line) => line.id).sort(), [...ids].sort());
    for (const line of errors) assert.deepEqual(line, { ...own(line.id, "error"), path: "/boom" });
    // h3 calls onAfterResponse for no error its onError (Nitro's error handler) answered.
    assert.equal(errors.filter((line) => line.where === "afterResponse").length, 0);
  });
});

describe("the node-server output without it", { timeout: 60_000 }, () => {
  it("handler only: Nitro's error handler and error hook run outside the request's Context", async () => {
    const running = await start(
      [built()],
      { NITRO_HOST: "127.0.0.1", NITRO_PORT: "0", CONTEXTVARS_NITRO: "handler" },
      LISTENING,
    );
    try {
      const reply = await send(running.base, "/boom", { headers: headers("outside") });
      assert.equal(reply.headers["x-request-id"], "outside");
      assert.deepEqual(JSON.parse(reply.body), {
        message: "boom",
        where: "errorHandler",
        id: "none",
        user: "none",
        tenant: "none",
      });
      const [line] = await logged(running, (line) => line.path === "/boom", 1);
      assert.deepEqual(line, {
        where: "error",
        id: "none",
        user: "none",
        tenant: "none",
        path: "/boom",
      });
    } finally {
      await stop(running.child);
    }
  });

  it("bare: every request runs in the root Context, with no requestId, and what hooks and middleware set is shared", async () => {
    const running = await start(
      [built()],
      { NITRO_HOST: "127.0.0.1", NITRO_PORT: "0", CONTEXTVARS_NITRO: "bare" },
      LISTENING,
    );
    try {
      let other = 0;
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const id = `bare-${i}`;
          const body = JSON.parse(
            (await send(running.base, "/plain", { headers: headers(id) })).body,
          );
          assert.equal(body.id, "none");
          if (body.user !== `user-${id}`) other++;
        }),
      );
      assert.ok(other > 0, `${other} of 200 read another request's user`);
      // The request hook's set stays in the root Context: the next request that names no tenant reads it.
      assert.deepEqual(
        await tenantsAfterOneThatNamedIt(running),
        Array.from({ length: 100 }, (_, i) => `t-first-${i}`),
      );
    } finally {
      await stop(running.child);
    }
  });
});

describe("nitropack dev", { timeout: 120_000 }, () => {
  it("the same plugin gives each of 100 concurrent requests its own Context", async () => {
    const running = await start(
      [cli, "dev", "--port", "0", "--host", "127.0.0.1"],
      {},
      /Local:\s+(http:\/\/\S+)/,
      devRoot,
    );
    try {
      await ready(running.base, "/plain");
      await readBurst(running, "dev", 100);
      const reads = await logged(
        running,
        (line) => line.path === "/read" && line.id.startsWith("dev-"),
        100,
      );
      assert.equal(reads.length, 100);
      for (const line of reads)
        assert.deepEqual(line, { ...own(line.id, "afterResponse"), path: "/read" });
    } finally {
      await stop(running.child);
    }
  });
});
