/**
 * An app that loads Elastic's APM agent (`elastic-apm-node` 4) before itself,
 * as its docs say for CommonJS start-up (`-r elastic-apm-node/start.js`), with
 * contextvars' request integrations: node:http's `withContext`, Express's
 * `contextMiddleware` and Fastify's `contextPlugin`, 20 concurrent requests
 * each (fixtures/apm/elastic-app.ts). The agent sends to a sink on 127.0.0.1
 * (ELASTIC_APM_SERVER_URL); central config, metrics and the cloud metadata
 * look-up are off.
 *
 * Each request keeps its vars after awaits, a timer, `gather` and
 * `createTask`, and the agent's current transaction, with the label the
 * request set on it, stays the request's. An error filter runs where
 * `captureError` is called, in the request's Context, so it can copy vars
 * into the error; each error goes out under its own request's transaction.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertEachRequestOwn, type Tally } from "./fixtures/apm/requests.ts";
import { runApp } from "./fixtures/apm/run.ts";
import { startSink } from "./fixtures/apm/sink.ts";

interface Result {
  http: Tally;
  express: Tally;
  fastify: Tally;
  transactions: Record<string, string>;
}

const REQUESTS = 20;

describe("beside Elastic's APM agent", () => {
  it("each request keeps its vars and its transaction; an error filter sees the request's vars", async () => {
    const sink = await startSink();
    let result: Result;
    try {
      result = await runApp<Result>(["--require", "elastic-apm-node/start.js"], "elastic-app.ts", {
        ELASTIC_APM_SERVER_URL: `http://${sink.host}`,
        ELASTIC_APM_SERVICE_NAME: "apm-test",
        ELASTIC_APM_CENTRAL_CONFIG: "false",
        ELASTIC_APM_METRICS_INTERVAL: "0s",
        ELASTIC_APM_CLOUD_PROVIDER: "none",
        ELASTIC_APM_LOG_LEVEL: "warning",
        REQUESTS: String(REQUESTS),
      });
    } finally {
      await sink.close();
    }
    assertEachRequestOwn(result, REQUESTS);

    const transactions = sink.elastic.filter((event) => event.type === "transaction");
    assert.equal(transactions.length, 3 * REQUESTS);
    const errors = sink.elastic.filter((event) => event.type === "error");
    assert.equal(errors.length, 3 * REQUESTS);
    let ownVar = 0;
    let ownTransaction = 0;
    for (const { payload } of errors) {
      const failed = (payload.exception as { message: string }).message.replace("failed for ", "");
      const custom = (payload.context as { custom?: { user?: string } } | undefined)?.custom;
      if (custom?.user === failed) ownVar++;
      if (payload.transaction_id === result.transactions[failed]) ownTransaction++;
    }
    assert.equal(ownVar, 3 * REQUESTS);
    assert.equal(ownTransaction, 3 * REQUESTS);
  });
});
