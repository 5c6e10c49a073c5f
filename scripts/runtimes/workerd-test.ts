/**
 * `npm run test:workerd`: the built package on Cloudflare Workers, in
 * workerd itself.
 *
 * 1. Bundles test/runtimes/workerd/hono-worker.ts and core-worker.ts with
 *    esbuild as wrangler bundles a Worker, against the built package
 *    (`dist/`, so run `npm run build` first): conditions `workerd`,
 *    `worker`, `browser`, every `node:` import left to the runtime. The
 *    `workerd` condition must make `#carrier` AsyncLocalStorage (the
 *    `browser` one would make it the synchronous carrier, which loses the
 *    Context at the first await) and `#worker-threads` the browser stub.
 * 2. Runs each in workerd through Miniflare (installed with the runtimes,
 *    see runtimes.ts): the Hono app with `nodejs_compat` (`contextvars/hono`
 *    imports `node:crypto` and `node:events`), the root entry with
 *    `nodejs_als` alone (it imports `node:async_hooks` only).
 * 3. Sends concurrent requests whose handlers await random delays and
 *    checks that each sees its own request's values after every await, and
 *    that nothing a request set reaches the root Context.
 *
 * Prints one line per check and `workerd: N passed, N failed`; exits 1 on
 * any failure.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { build } from "esbuild";
import { ensureRuntimes, miniflarePath, projectRoot } from "./runtimes.ts";

// Not after the date of the workerd that the locked Miniflare ships.
const COMPATIBILITY_DATE = "2026-04-01";
const REQUESTS = 50;
const MAX_DELAY_MS = 20;

interface MiniflareResponse {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}

interface Miniflare {
  readonly ready: Promise<unknown>;
  dispatchFetch(
    url: string,
    init?: { headers?: Record<string, string> },
  ): Promise<MiniflareResponse>;
  dispose(): Promise<void>;
}

interface MiniflareModule {
  Miniflare: new (options: {
    modules: { type: "ESModule"; path: string; contents: string }[];
    compatibilityDate: string;
    compatibilityFlags: string[];
  }) => Miniflare;
}

interface Outcome {
  name: string;
  ok: boolean;
  error?: string;
}

const outcomes: Outcome[] = [];

type Check = (name: string, fn: () => Promise<void> | void) => Promise<void>;

const check: Check = async (name, fn) => {
  try {
    await fn();
    outcomes.push({ name, ok: true });
  } catch (error) {
    outcomes.push({
      name,
      ok: false,
      error: error instanceof Error ? error.message : String(error),
    });
  }
};

function equal(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** The Worker's code, and the package files and `node:` modules it reached. */
async function bundle(entry: string): Promise<{ code: string; inputs: string[]; node: string[] }> {
  const result = await build({
    entryPoints: [join(projectRoot, "test/runtimes/workerd", entry)],
    bundle: true,
    write: false,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // What wrangler gives esbuild for a Worker.
    conditions: ["workerd", "worker", "browser"],
    external: ["node:*"],
    metafile: true,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]?.text ?? "";
  const node = [...new Set(code.match(/(?<=from ")node:[\w/]+(?=")/g) ?? [])].sort();
  return { code, inputs: Object.keys(result.metafile.inputs), node };
}

function checkCarrier(inputs: readonly string[]): void {
  const reached = (file: string) => inputs.some((p) => p.endsWith(file));
  equal(
    {
      asyncLocalStorage: reached("dist/carrier/async-local-storage.js"),
      sync: reached("dist/carrier/sync.js"),
      workerThreadsStub: reached("dist/browser/worker-threads.js"),
    },
    { asyncLocalStorage: true, sync: false, workerThreadsStub: true },
    "carrier and thread hook in the bundle",
  );
}

async function json(response: MiniflareResponse): Promise<unknown> {
  const text = await response.text();
  if (response.status !== 200) throw new Error(`status ${response.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

const delay = () => String(Math.floor(Math.random() * MAX_DELAY_MS));

async function honoChecks(mf: Miniflare, check: Check): Promise<void> {
  await check(
    `${REQUESTS} concurrent requests: id, user and a var set after an await are each request's own after every await; the id is echoed`,
    async () => {
      const wrong: string[] = [];
      await Promise.all(
        Array.from({ length: REQUESTS }, async (_, i) => {
          const response = await mf.dispatchFetch(`http://localhost/r/work?ms=${delay()}`, {
            headers: { "x-request-id": `req-${i}`, "x-user": `user-${i}` },
          });
          const echo = response.headers.get("x-request-id");
          const body = await json(response);
          const expected = {
            echo: `req-${i}`,
            body: {
              before: { id: `req-${i}`, user: `user-${i}` },
              id: `req-${i}`,
              user: `user-${i}`,
              late: `user-${i}`,
            },
          };
          if (JSON.stringify({ echo, body }) !== JSON.stringify(expected)) {
            wrong.push(`request ${i} got ${JSON.stringify({ echo, body })}`);
          }
        }),
      );
      if (wrong.length > 0) {
        throw new Error(
          `${wrong.length} of ${REQUESTS} wrong, e.g. ${wrong.slice(0, 2).join("; ")}`,
        );
      }
    },
  );
  await check(
    "a request without x-request-id gets a UUID (node:crypto's randomUUID), echoed",
    async () => {
      const response = await mf.dispatchFetch(`http://localhost/r/work?ms=1`);
      const body = (await json(response)) as { id: unknown };
      const echo = response.headers.get("x-request-id");
      if (typeof body.id !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/.test(body.id)) {
        throw new Error(`id: expected a UUID, got ${JSON.stringify(body.id)}`);
      }
      equal(echo, body.id, "echoed x-request-id");
    },
  );
  await check(
    "the root Context, read after those requests, holds none of their values",
    async () => {
      const body = await json(await mf.dispatchFetch("http://localhost/root"));
      equal(body, { id: null, user: null, late: "unset" }, "root Context");
    },
  );
}

async function coreChecks(mf: Miniflare, check: Check): Promise<void> {
  await check(
    `${REQUESTS} concurrent copyContext().run: a var set before awaits and a task's own set`,
    async () => {
      const wrong: string[] = [];
      await Promise.all(
        Array.from({ length: REQUESTS }, async (_, i) => {
          const body = await json(
            await mf.dispatchFetch(`http://localhost/?name=n${i}&ms=${delay()}`),
          );
          const expected = { name: `n${i}`, child: { inherited: `n${i}`, after: "child" } };
          if (JSON.stringify(body) !== JSON.stringify(expected)) {
            wrong.push(`request ${i} got ${JSON.stringify(body)}`);
          }
        }),
      );
      if (wrong.length > 0) {
        throw new Error(
          `${wrong.length} of ${REQUESTS} wrong, e.g. ${wrong.slice(0, 2).join("; ")}`,
        );
      }
    },
  );
  await check(
    "the root Context, read after those requests, holds none of their values",
    async () => {
      equal(
        await json(await mf.dispatchFetch("http://localhost/root")),
        { name: "root" },
        "root Context",
      );
    },
  );
}

async function inWorkerd(
  label: string,
  entry: string,
  flags: string[],
  expectedNode: string[],
  checks: (mf: Miniflare, check: Check) => Promise<void>,
  Miniflare: MiniflareModule["Miniflare"],
): Promise<void> {
  const { code, inputs, node } = await bundle(entry);
  let loaded = true;
  await check(`${label}: the bundle takes AsyncLocalStorage and the thread stub`, () =>
    checkCarrier(inputs),
  );
  await check(
    `${label}: the bundle imports ${expectedNode.join(", ")} and no other node: module`,
    () => equal(node, expectedNode, "node: imports"),
  );
  const mf = new Miniflare({
    modules: [{ type: "ESModule", path: join(projectRoot, "worker.mjs"), contents: code }],
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: flags,
  });
  try {
    await check(`${label}: loads in workerd with ${flags.join(", ")}`, async () => {
      try {
        await mf.ready;
      } catch (error) {
        loaded = false;
        throw error;
      }
    });
    if (loaded) await checks(mf, (name, fn) => check(`${label}: ${name}`, fn));
  } finally {
    await mf.dispose().catch(() => {});
  }
}

async function main(): Promise<number> {
  const runtimesDir = ensureRuntimes();
  // Miniflare is CommonJS, installed with the runtimes outside the main project.
  const { Miniflare } = createRequire(import.meta.url)(
    miniflarePath(runtimesDir),
  ) as MiniflareModule;
  const started = Date.now();
  await inWorkerd(
    "contextvars/hono",
    "hono-worker.ts",
    ["nodejs_compat"],
    ["node:async_hooks", "node:crypto", "node:events"],
    honoChecks,
    Miniflare,
  );
  await inWorkerd(
    "contextvars",
    "core-worker.ts",
    ["nodejs_als"],
    ["node:async_hooks"],
    coreChecks,
    Miniflare,
  );
  const { version } = createRequire(miniflarePath(runtimesDir))("workerd/package.json") as {
    version: string;
  };
  console.log(`workerd ${version}, compatibility date ${COMPATIBILITY_DATE}`);
  for (const o of outcomes)
    console.log(`${o.ok ? "ok  " : "FAIL"} ${o.name}${o.ok ? "" : `\n     ${o.error}`}`);
  const passed = outcomes.filter((o) => o.ok).length;
  const failed = outcomes.length - passed;
  console.log(`time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`workerd: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

process.exitCode = await main();
