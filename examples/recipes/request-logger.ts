// Recipe: every log line carries its own request's id and user (docs/recipes.md).
// One pino logger for the whole process, made at startup; contextMixin reads
// the request's vars on each line, so module-level child loggers need no
// request parameter and two concurrent requests never swap ids.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/request-logger.ts
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import { contextMixin } from "contextvars/pino";
import express from "express";
import pino from "pino";

const user = new ContextVar<string>("user", { default: "anonymous" });

// Lines go to memory so the program can print them in a stable order; in
// production this is pino's default, stdout. No time or pid: the output is compared.
const lines: string[] = [];
const logger = pino(
  { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user }) },
  { write: (line: string) => void lines.push(line.trimEnd()) },
);

// Made once at startup, as module-level loggers are; the mixin still runs per line.
const repositoryLog = logger.child({ module: "orders-repository" });

const repository = {
  async list(): Promise<string[]> {
    // bob's query is the slower one, so his request logs after alice's has started.
    await sleep(user.get() === "bob" ? 40 : 10);
    const rows = user.get() === "alice" ? ["tea", "cake"] : ["coffee"];
    repositoryLog.info({ rows: rows.length }, "query done");
    return rows;
  },
};

const app = express();
app.use(contextMiddleware({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
app.get("/orders", async (_req, res) => {
  logger.info("listing orders");
  const orders = await repository.list();
  logger.info("replying");
  res.json(orders);
});

logger.info("starting"); // outside any request: no requestId, the default user
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const get = async (id: string, who: string) => {
  const response = await fetch(`${base}/orders`, {
    headers: { "x-request-id": id, "x-user": who },
  });
  return `${response.headers.get("x-request-id")} ${await response.text()}`;
};
const replies = await Promise.all([get("req-1", "alice"), get("req-2", "bob")]);
server.close();

for (const reply of replies) console.log(`reply ${reply}`);
// Interleaved as they were written; grouped by request here only to make the output stable.
const byRequest = (line: string) => (JSON.parse(line) as { requestId?: string }).requestId ?? "";
for (const line of lines.sort((a, b) => byRequest(a).localeCompare(byRequest(b)))) {
  console.log(line);
}
