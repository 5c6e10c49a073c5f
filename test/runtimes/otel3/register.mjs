// Preloaded (`--import`) by the matrix's OpenTelemetry JS 3 target
// (scripts/runtimes/test-matrix.ts): every `@opentelemetry/*` import, the
// package's own and the tests', resolves from the folder in
// CONTEXTVARS_OTEL3_MODULES instead of the project's node_modules, where the
// 1.9/2.x line the project develops against is installed.
import { register } from "node:module";

const modules = process.env.CONTEXTVARS_OTEL3_MODULES;
if (modules === undefined) throw new Error("CONTEXTVARS_OTEL3_MODULES is not set");
register("./hooks.mjs", import.meta.url, { data: { modules } });
