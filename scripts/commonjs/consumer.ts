/**
 * A CommonJS project's use of the package. check.ts compiles this file as
 * the `index.ts` of a package whose package.json says `"type": "commonjs"`,
 * with TypeScript's `module: "nodenext"`, so each static import below becomes
 * a require() of an ES module; then runs the output on each Node and reads
 * the one JSON line it prints. (In this repository it typechecks as ESM.)
 */
import { ContextVar, copyContext, run } from "contextvars";
import { AsyncContext } from "contextvars/async-context";
import { contextMiddleware as expressMiddleware } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { withContext as withFetchContext } from "contextvars/fetch";
import { contextMiddleware as honoMiddleware } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { contextMiddleware as koaMiddleware } from "contextvars/koa";
import { ContextVarsContextManager } from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import { withSocketContext } from "contextvars/socket.io";
import { contextFormat } from "contextvars/winston";
import { toThread } from "contextvars/worker";

export interface Report {
  readonly node: string;
  /** Each code subpath of "exports": whether require() loaded it, and gave what import() gives. */
  readonly subpaths: readonly {
    readonly specifier: string;
    readonly error?: string;
    readonly sameAsImport?: boolean;
  }[];
  /** Names imported statically above that are not what they should be. */
  readonly missing: readonly string[];
  /** Reads inside one run of values set through the other module system; all "alice". */
  readonly acrossSystems: readonly unknown[];
}

const imported = {
  AsyncContext,
  expressMiddleware,
  contextPlugin,
  withFetchContext,
  honoMiddleware,
  withContext,
  koaMiddleware,
  ContextVarsContextManager,
  contextMixin,
  withSocketContext,
  contextFormat,
  toThread,
};

async function main(): Promise<Report> {
  const manifest = require("contextvars/package.json") as { exports: Record<string, unknown> };
  const subpaths: Report["subpaths"][number][] = [];
  for (const subpath of Object.keys(manifest.exports)) {
    if (subpath.endsWith(".json")) continue;
    const specifier = subpath === "." ? "contextvars" : `contextvars${subpath.slice(1)}`;
    try {
      const required: unknown = require(specifier);
      subpaths.push({ specifier, sameAsImport: required === (await import(specifier)) });
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      subpaths.push({ specifier, error: `${code ?? "no code"}: ${message.split("\n")[0]}` });
    }
  }
  const missing = Object.entries(imported)
    .filter(([, value]) => typeof value !== "function" && typeof value !== "object")
    .map(([name]) => name);

  // One module instance means one carrier: a value set through the required
  // module is the imported module's too, and the other way round.
  const esm = await import("contextvars");
  const user = new ContextVar<string>("user");
  const role = new esm.ContextVar<string>("role");
  const acrossSystems = await esm.run(async () => {
    user.set("alice");
    await new Promise((resolve) => setTimeout(resolve, 1));
    const first = [esm.copyContext().get(user), user.get("unset")];
    return run(async () => {
      role.set("alice");
      await Promise.resolve();
      return [...first, copyContext().get(role), esm.copyContext().get(role)];
    });
  });
  return { node: process.version, subpaths, missing, acrossSystems };
}

main().then(
  (report) => console.log(JSON.stringify(report)),
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
