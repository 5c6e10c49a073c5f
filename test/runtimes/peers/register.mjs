// Preloaded (`--import`) by the matrix's peer-line targets
// (scripts/runtimes/test-matrix.ts): the package's and the tests' imports of
// one peer dependency resolve to another major line of it, installed with the
// runtimes in the folder CONTEXTVARS_PEER_MODULES names, instead of the line
// in the project's node_modules. CONTEXTVARS_PEER_LINE says which:
//   otel3  every `@opentelemetry/*`: OpenTelemetry JS 3 (the project has 2.x)
//   koa2   `koa`: Koa 2, installed as `koa2` (the project has Koa 3)
//   pino9  `pino`: pino 9, installed as `pino9` (the project has pino 10)
//   fastify-plugin5  `fastify-plugin` 5, installed as `fastify-plugin5` (the project has 6)
//   express4  `express`: Express 4, installed as `express4` (the project has Express 5)
//   piscina4  `piscina`: piscina 4, installed as `piscina4` (the project has piscina 5)
import { register } from "node:module";

const line = process.env.CONTEXTVARS_PEER_LINE;
const modules = process.env.CONTEXTVARS_PEER_MODULES;
if (line === undefined || modules === undefined) {
  throw new Error("CONTEXTVARS_PEER_LINE and CONTEXTVARS_PEER_MODULES must both be set");
}
register("./hooks.mjs", import.meta.url, { data: { line, modules } });
