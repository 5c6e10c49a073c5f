// Recipe: queues, limiters and schedulers (docs/recipes.md).
// A job handed to an in-process queue runs wherever the queue calls it:
// p-limit calls it in the adding request's own Context (its sets land in the
// request), fastq calls a job that waited from the job before it, in that
// request's Context. bind(job) at the add gives every job a copy of its own
// request's. A cron job runs every tick in the Context it was started in,
// and a tick's set stays there for the next tick, or, started at the top
// level, goes into the root Context that every later request copies.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/job-queues.ts
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, Context, ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { Cron } from "croner";
import fastq from "fastq";
import pLimit from "p-limit";

const note = new ContextVar<string>("note", { default: "none" }); // what a job or tick sets

// At startup: one limiter and one queue for the whole process, one job at a time.
const limit = pLimit(1);
const queue = fastq.promise((job: () => Promise<void>) => job(), 1);

// The first job of a round waits until every request of the round has added
// its job, so the later ones queue behind it, as under load.
let allAdded = Promise.resolve();

const handler = withContext(async (req, res) => {
  res.writeHead(202).end();
  const [, library, style] = (req.url ?? "").split("/");
  const adder = requestId.get();
  const wrap = (job: () => Promise<void>) => (style === "bind" ? bind(job) : job);
  const job = wrap(async () => {
    await allAdded;
    console.log(`  the job of ${adder} sees requestId ${requestId.get("-")}, note ${note.get()}`);
    note.set(`set by the job of ${adder}`);
  });
  await (library === "p-limit" ? limit(job) : queue.push(job));
  if (library === "p-limit") console.log(`  then ${adder} itself reads note ${note.get()}`);
});

const server = createServer(handler);
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
let order = 0;
const request = async (path: string) =>
  fetch(`${base}${path}`, { headers: { "x-request-id": `order-${++order}` } });

async function round(path: string): Promise<void> {
  let open = () => {};
  allAdded = new Promise((resolve) => {
    open = resolve;
  });
  for (let i = 0; i < 3; i++) await request(path); // one after another: a 202 means added
  open();
  await sleep(20);
}

console.log("p-limit, a plain job:");
await round("/p-limit/plain");
console.log("fastq, a plain job:");
await round("/fastq/plain");
console.log("fastq, bind(job) at the add:");
await round("/fastq/bind");

// Three crons ticking every second, twice each: started in a request plainly,
// started in a request with bind(tick, new Context()), started at the top level.
const ticks = new Map<string, string[]>();
function tick(name: string) {
  return () => {
    const lines = ticks.get(name) ?? [];
    ticks.set(name, lines);
    lines.push(`  a tick sees requestId ${requestId.get("-")}, note ${note.get()}`);
    note.set(`set by a tick of ${name}`);
  };
}
const crons: Cron[] = [];
const cronServer = createServer(
  withContext((req, res) => {
    if (req.url === "/plain") crons.push(new Cron("* * * * * *", { maxRuns: 2 }, tick("plain")));
    else if (req.url === "/bind") {
      const onTick = bind(tick("bind(tick, new Context())"), new Context());
      crons.push(new Cron("* * * * * *", { maxRuns: 2 }, onTick));
    }
    res.end(note.get());
  }),
);
await new Promise<void>((resolve) => cronServer.listen(0, "127.0.0.1", resolve));
const cronBase = `http://127.0.0.1:${(cronServer.address() as AddressInfo).port}`;
const ask = async (path: string) =>
  (await fetch(`${cronBase}${path}`, { headers: { "x-request-id": `order-${++order}` } })).text();
await ask("/plain");
await ask("/bind");
crons.push(new Cron("* * * * * *", { maxRuns: 2 }, tick("top level")));
while ([...ticks.values()].filter((lines) => lines.length === 2).length < 3) await sleep(20);
for (const name of ["plain", "bind(tick, new Context())", "top level"]) {
  const lines = ticks.get(name) ?? [];
  console.log(
    `cron started ${name === "top level" ? "at the top level" : `in a request, ${name}`}:`,
  );
  for (const line of lines) console.log(line);
}
console.log(`a request after the ticks reads note ${await ask("/")}`);

server.close();
cronServer.close();
