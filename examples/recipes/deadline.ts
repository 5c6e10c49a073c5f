// Recipe: a deadline that reaches the HTTP call deep below (docs/recipes.md).
// timeout(ms, fn) runs fn as a task whose signal aborts at the deadline; the
// HTTP helper finds that signal with currentTask() instead of taking it as a
// parameter through every layer, so the slow fetch is really aborted (the
// server sees the client go away) and the caller's values are untouched.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/deadline.ts
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { ContextVar, currentTask, run, timeout } from "contextvars";
import { requestId, withContext } from "contextvars/http";

// ---- a loopback service: /fast answers at once, /slow after 5 s --------------

let clientWentAway: (id: string) => void = () => {};
const abortSeen = new Promise<string>((resolve) => {
  clientWentAway = resolve;
});

const server = createServer(
  withContext((req, res) => {
    if (req.url === "/fast") return void res.end("fast answer");
    const timer = setTimeout(() => res.end("slow answer"), 5_000);
    // A res listener runs in the request's Context: requestId is this request's.
    res.on("close", () => {
      clearTimeout(timer);
      if (!res.writableFinished) clientWentAway(requestId.get());
    });
  }),
);
server.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

// ---- the client side: the deadline travels with the context ------------------

const traceId = new ContextVar<string>("traceId", { default: "-" });

/** The one place that talks HTTP: it honours whatever deadline its caller runs under. */
async function httpGet(path: string): Promise<string> {
  const response = await fetch(`${base}${path}`, {
    headers: { "x-request-id": `${traceId.get()}${path.replace("/", "-")}` },
    signal: currentTask()?.signal,
  });
  return response.text();
}

const profiles = { load: (path: string) => httpGet(path) }; // a layer that knows nothing of deadlines

await run(async () => {
  traceId.set("trace-7");
  console.log(await timeout(1_000, () => profiles.load("/fast"), { name: "load-fast" }));
  try {
    await timeout(100, () => profiles.load("/slow"), { name: "load-slow" });
  } catch (error) {
    console.log(`${(error as Error).name}: ${(error as Error).message}`);
  }
  console.log(`the server saw ${await abortSeen} abort`);
  console.log(`after the timeout, traceId is still ${traceId.get()}`);
});
server.close();
