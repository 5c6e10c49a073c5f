/**
 * Two copies of the package in one process (two versions in node_modules, a
 * bundle next to an import, a test runner's per-file module registry such as
 * jest's) share nothing: each has its own current Context, and a Context,
 * ContextVar or Token of one is not one to the other. Handing one to the
 * other copy's function throws the TypeError every wrong-typed argument
 * gets; its message says the value comes from another copy, not only
 * `got [object Context]`, which reads as if a Context were refused for
 * being a Context.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import * as first from "contextvars";
import { runtime } from "../runtimes/runtime.ts";

// The second copy: the files this process loads for "contextvars" (src under
// the source condition, dist otherwise) and package.json, copied elsewhere.
const entry = fileURLToPath(import.meta.resolve("contextvars"));
const root = join(dirname(entry), "..");
const copyRoot = mkdtempSync(join(tmpdir(), "contextvars-copy-"));
const tree = relative(root, dirname(entry));
cpSync(join(root, tree), join(copyRoot, tree), { recursive: true });
cpSync(join(root, "package.json"), join(copyRoot, "package.json"));
const second: typeof first = await import(
  pathToFileURL(join(copyRoot, relative(root, entry))).href
);
after(() => rmSync(copyRoot, { recursive: true, force: true }));

const fromAnotherCopy = /from another copy of contextvars/;

/**
 * In a child process started with this one's flags: runs `prelude`, imports
 * contextvars/http and reads `requestId` outside a request; prints the
 * error's code and whether it advises mounting the integration.
 */
async function unsetRequestIdAfter(prelude: string): Promise<string> {
  const program = `${prelude}
    const { requestId } = await import("contextvars/http");
    try { requestId.get(); } catch (error) { console.log(error.code, /mount the integration first/.test(error.message)); }`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    // Bun's execArgv leaves out `bun test --conditions`: without it the
    // child would load dist/, which only a build makes.
    [
      ...(runtime === "bun" ? ["--conditions=contextvars-source"] : process.execArgv),
      "--input-type=module",
      "--eval",
      program,
    ],
    { timeout: 60_000 },
  );
  return stdout.trim();
}

describe("two copies of the package", () => {
  it("are two copies, each with its own current Context", () => {
    assert.notEqual(first.Context, second.Context);
    const user = new first.ContextVar<string>("user", { default: "anonymous" });
    const sameName = new second.ContextVar<string>("user", { default: "anonymous" });
    first.copyContext().run(() => {
      user.set("alice");
      // The other copy's var reads the other copy's root Context: its default.
      assert.equal(sameName.get(), "anonymous");
      assert.equal(user.get(), "alice");
    });
  });

  it("a Context of one, given to the other, throws a TypeError that says so", async () => {
    const context = first.copyContext();
    const calls: Array<[string, () => unknown]> = [
      ["bind", () => second.bind(() => {}, context as never)],
      ["createTask", () => second.createTask(() => {}, { context: context as never })],
    ];
    for (const [name, call] of calls) {
      assert.throws(call, (error: Error) => {
        assert.ok(error instanceof TypeError, name);
        assert.match(
          error.message,
          /^Expected `(context|options\.context)` to be a Context, got `\[object Context\]`/,
        );
        assert.match(error.message, fromAnotherCopy, name);
        return true;
      });
    }
  });

  it("a ContextVar or Token of one, given to the other, throws a TypeError that says so", () => {
    const user = new first.ContextVar<string>("user");
    const sameName = new second.ContextVar<string>("user");
    assert.throws(() => new second.Context().get(user as never), fromAnotherCopy);
    const token = first.copyContext().run(() => user.set("alice"));
    assert.throws(() => sameName.reset(token as never), fromAnotherCopy);
  });

  it("requestId read in a copy no request entered, while another copy serves one, says so", async () => {
    // Each copy's contextvars/http, as a bundler that evaluates the package
    // again (Vite's ssr.noExternal) gives the app its own.
    const http = fileURLToPath(import.meta.resolve("contextvars/http"));
    const firstId = (await import("contextvars/http")).requestId;
    const secondId: typeof firstId = (
      await import(pathToFileURL(join(copyRoot, relative(root, http))).href)
    ).requestId;
    assert.notEqual(secondId, firstId);
    // Outside any request: the advice to mount the integration, no other copy.
    assert.throws(
      () => secondId.get(),
      (error: Error) =>
        /mount the integration first/.test(error.message) && !fromAnotherCopy.test(error.message),
    );
    // The first copy serves a request; code reading the second copy's id is in it.
    firstId.run("r-1", () => {
      assert.throws(
        () => secondId.get(),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, "ERR_CONTEXTVAR_UNSET");
          assert.match(error.message, fromAnotherCopy);
          assert.doesNotMatch(error.message, /mount the integration first/);
          return true;
        },
      );
    });
  });

  it("contextvars/http loads where globalThis is frozen (SES's lockdown): the copies it can tell of are only itself", async () => {
    assert.equal(
      await unsetRequestIdAfter("Object.freeze(globalThis);"),
      "ERR_CONTEXTVAR_UNSET true",
    );
  });

  it("contextvars/http loads where there is no WeakRef (Cloudflare Workers before the enable_weak_ref date): the copies it can tell of are only itself", async () => {
    assert.equal(
      await unsetRequestIdAfter("delete globalThis.WeakRef;"),
      "ERR_CONTEXTVAR_UNSET true",
    );
  });

  it("an entry another version of the package put on the shared list after this copy loaded is passed over: requestId still throws its LookupError", async () => {
    const { requestId } = await import("contextvars/http");
    const list = (globalThis as Record<symbol, unknown>)[Symbol.for("contextvars.requestIds")];
    assert.ok(Array.isArray(list));
    const strays = [null, {}, { deref: () => null }];
    list.push(...strays);
    try {
      assert.throws(
        () => requestId.get(),
        (error: Error & { code?: string }) =>
          error.code === "ERR_CONTEXTVAR_UNSET" &&
          /mount the integration first/.test(error.message),
      );
    } finally {
      list.splice(list.length - strays.length, strays.length);
    }
  });

  it("a look-alike of no copy gets the plain message", () => {
    assert.throws(
      () => first.bind(() => {}, {} as never),
      (error: Error) => error instanceof TypeError && !fromAnotherCopy.test(error.message),
    );
  });

  it("an object made by hand from this copy's own prototype gets the plain message", () => {
    const plain = (error: Error) =>
      error instanceof TypeError && !fromAnotherCopy.test(error.message);
    const fakeContext = Object.create(first.Context.prototype) as never;
    const fakeVar = Object.create(first.ContextVar.prototype) as never;
    const fakeToken = Object.create(first.Token.prototype) as never;
    assert.throws(() => first.bind(() => {}, fakeContext), plain);
    assert.throws(() => new first.Context().get(fakeVar), plain);
    assert.throws(() => new first.ContextVar<string>("v").reset(fakeToken), plain);
  });
});
