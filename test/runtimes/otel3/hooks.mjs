// Module resolution hooks for register.mjs. An `@opentelemetry/*` specifier
// is resolved as if imported from a file beside the OpenTelemetry JS 3
// node_modules folder. `@opentelemetry/sdk-trace-base`, which the 3.x line
// no longer publishes, goes to sdk-trace-base.mjs, which maps the tests'
// 2.x names onto its successor `@opentelemetry/sdk-trace`.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

let parentURL = "";
const shim = new URL("./sdk-trace-base.mjs", import.meta.url).href;

export function initialize({ modules }) {
  parentURL = pathToFileURL(join(modules, "..", "otel3-importer.js")).href;
}

export function resolve(specifier, context, next) {
  if (specifier === "@opentelemetry/sdk-trace-base") return next(shim, context);
  if (specifier.startsWith("@opentelemetry/")) return next(specifier, { ...context, parentURL });
  return next(specifier, context);
}
