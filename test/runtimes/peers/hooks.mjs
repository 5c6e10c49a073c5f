// Module resolution hooks for register.mjs. A redirected specifier is
// resolved as if imported from a file beside the peer-line node_modules
// folder, under the package name the line is installed as.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const sdkTraceBase = new URL("./sdk-trace-base.mjs", import.meta.url).href;

/** Per line: the specifier to resolve from the peer-line folder, or a URL, or undefined (leave it). */
const LINES = {
  // `@opentelemetry/sdk-trace-base`, which the 3.x line no longer publishes,
  // goes to sdk-trace-base.mjs, which maps the tests' 2.x names onto its
  // successor `@opentelemetry/sdk-trace`.
  otel3: (specifier) =>
    specifier === "@opentelemetry/sdk-trace-base"
      ? { url: sdkTraceBase }
      : specifier.startsWith("@opentelemetry/")
        ? { name: specifier }
        : undefined,
  koa2: (specifier) => (specifier === "koa" ? { name: "koa2" } : undefined),
  pino9: (specifier) => (specifier === "pino" ? { name: "pino9" } : undefined),
  express4: (specifier) => (specifier === "express" ? { name: "express4" } : undefined),
  piscina4: (specifier) => (specifier === "piscina" ? { name: "piscina4" } : undefined),
  "fastify-plugin5": (specifier) =>
    specifier === "fastify-plugin" ? { name: "fastify-plugin5" } : undefined,
};

let redirect = () => undefined;
let parentURL = "";

export function initialize({ line, modules }) {
  const chosen = LINES[line];
  if (chosen === undefined) throw new Error(`unknown peer line "${line}"`);
  redirect = chosen;
  parentURL = pathToFileURL(join(modules, "..", "peer-line-importer.js")).href;
}

export function resolve(specifier, context, next) {
  const to = redirect(specifier);
  if (to === undefined) return next(specifier, context);
  if (to.url !== undefined) return next(to.url, context);
  return next(to.name, { ...context, parentURL });
}
