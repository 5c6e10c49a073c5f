/**
 * `npm run test:browser`: the browser build in headless Chromium.
 *
 * 1. Bundles test/runtimes/browser/suite.ts with esbuild for the browser,
 *    against the built package (`dist/`, so run `npm run build` first):
 *    the `browser` condition makes `#carrier` the synchronous carrier and
 *    `#worker-threads` a stub, and the bundle must import no `node:` module
 *    at all (esbuild fails on one for the browser platform).
 * 2. Serves it from a server on 127.0.0.1 (a random port).
 * 3. Drives Debian's Chromium (`apt-get install -y chromium`) through
 *    playwright-core (installed with the runtimes, see runtimes.ts), in a
 *    fresh profile, and reads the suite's `window.__results`.
 *
 * Prints one line per test and `browser: N passed, N failed`; exits 1 on
 * any failure, a page error, or a bundle that reaches a Node module.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { ensureRuntimes, playwrightCorePath, projectRoot } from "./runtimes.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// The flags TOOLCHAIN.md gives for this machine; playwright adds --headless and the profile.
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const PAGE_TIMEOUT_MS = 60_000;

interface Outcome {
  name: string;
  ok: boolean;
  error?: string;
}

interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

interface Page {
  on(event: "pageerror", listener: (error: Error) => void): void;
  on(event: "console", listener: (message: { type(): string; text(): string }) => void): void;
  goto(url: string): Promise<unknown>;
  waitForFunction(fn: string, arg: undefined, options: { timeout: number }): Promise<unknown>;
  evaluate<T>(fn: string): Promise<T>;
}

interface PlaywrightCore {
  chromium: {
    launchPersistentContext(
      userDataDir: string,
      options: { executablePath: string; headless: boolean; args: string[] },
    ): Promise<Browser>;
  };
}

async function bundle(): Promise<string> {
  if (!existsSync(join(projectRoot, "dist", "index.js"))) {
    throw new Error("dist/ is missing: run `npm run build` first (npm run test:browser does)");
  }
  const result = await build({
    entryPoints: [join(projectRoot, "test/runtimes/browser/suite.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    // The default conditions for the browser platform are browser, import, default.
    conditions: [],
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs);
  const nodeOnly = inputs.filter((p) => /async-local-storage|node:|threads\//.test(p));
  if (nodeOnly.length > 0)
    throw new Error(`the browser bundle reached Node code: ${nodeOnly.join(", ")}`);
  if (!inputs.some((p) => p.endsWith("dist/carrier/sync.js"))) {
    throw new Error(`the browser bundle does not use dist/carrier/sync.js: ${inputs.join(", ")}`);
  }
  const code = result.outputFiles[0]?.text ?? "";
  console.log(
    `bundle: ${(code.length / 1024).toFixed(1)} KiB from ${inputs.length} modules, no node: imports`,
  );
  return code;
}

async function main(): Promise<number> {
  if (!existsSync(CHROMIUM)) {
    console.log(`FAIL no Chromium at ${CHROMIUM}: apt-get update && apt-get install -y chromium`);
    return 1;
  }
  const code = await bundle();
  const html =
    '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="/suite.js"></script>';
  const server = createServer((req, res) => {
    if (req.url === "/suite.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(code);
    } else if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(html);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const runtimesDir = ensureRuntimes();
  // playwright-core is CommonJS, installed with the runtimes outside the main project.
  const { chromium } = createRequire(import.meta.url)(
    playwrightCorePath(runtimesDir),
  ) as PlaywrightCore;
  const profile = mkdtempSync(join(tmpdir(), "contextvars-chromium-"));
  const problems: string[] = [];
  let results: Outcome[] = [];
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
  });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console error: ${message.text()}`);
    });
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction("globalThis.__done === true", undefined, {
      timeout: PAGE_TIMEOUT_MS,
    });
    results = await page.evaluate<Outcome[]>("globalThis.__results");
    const version = await page.evaluate<string>("navigator.userAgent");
    console.log(`browser: ${version}`);
  } finally {
    await browser.close();
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
  for (const r of results)
    console.log(`${r.ok ? "ok  " : "FAIL"} ${r.name}${r.ok ? "" : `\n     ${r.error}`}`);
  for (const p of problems) console.log(`FAIL ${p}`);
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed + problems.length;
  console.log(`browser: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

process.exitCode = await main();
