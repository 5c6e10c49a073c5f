// Recipe: work that goes on after the response (docs/recipes.md).
// createTask and callLater keep the request's values after the response has
// been sent. Events are different: a listener runs in the Context of the code
// that calls emit, here a job queue's worker loop started with the process,
// so a plain listener sees no request; bindEmitter (or bind) fixes that.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/background-work.ts
import { EventEmitter, once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, bindEmitter, callLater, createTask } from "contextvars";
import { requestId, withContext } from "contextvars/http";

const log = (message: string) => console.log(`[${requestId.get("-")}] ${message}`);

// ---- a job queue whose worker loop runs from startup, as a real one does -----

class Job extends EventEmitter {
  constructor(readonly name: string) {
    super();
  }
}

class Queue extends EventEmitter {
  readonly #pending: Job[] = [];
  // Started at startup, so every emit below happens in the startup Context.
  readonly #worker = setInterval(() => {
    for (const job of this.#pending.splice(0)) {
      job.emit("done");
      this.emit("done", job);
    }
  }, 10);

  add(name: string): Job {
    const job = new Job(name);
    this.#pending.push(job);
    return job;
  }

  close(): void {
    clearInterval(this.#worker);
  }
}

const queue = new Queue();
// Registered at startup: it runs wherever the queue emits, never in a request.
queue.on("done", (job: Job) => log(`queue listener: ${job.name} done`));

// ---- the handler answers first, then its work goes on -------------------------

let finished: (id: string) => void = () => {};

const server = createServer(
  withContext((_req, res) => {
    res.writeHead(202).end();
    log("202 sent");

    const job = queue.add("thumbnail");
    job.on("done", () => log("plain job listener: thumbnail done"));
    bindEmitter(job).on("done", () => log("bound job listener: thumbnail done"));
    // bind, not bindEmitter(queue): an emitter is bound once, to its first
    // caller's Context, and the queue outlives every request. The queue emits
    // for every request's jobs, so the listener waits for its own and then
    // removes itself; `once` would answer to whichever job finished first.
    const onQueueDone = bind((done: Job) => {
      if (done !== job) return;
      queue.off("done", onQueueDone);
      log(`bound queue listener: ${done.name} done`);
    });
    queue.on("done", onQueueDone);

    createTask(async () => {
      await sleep(30);
      log("task: receipt emailed");
    });
    callLater(50, () => {
      log("callLater: follow-up reminder scheduled");
      finished(requestId.get());
    });
  }),
);
server.listen(0, "127.0.0.1");
await once(server, "listening");
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

// One request at a time, so that the lines of each come out together.
for (const id of ["order-1", "order-2"]) {
  const done = new Promise<string>((resolve) => {
    finished = resolve;
  });
  const response = await fetch(base, { method: "POST", headers: { "x-request-id": id } });
  // Printed once the work is over: the response itself arrives while it goes on.
  console.log(`client got ${response.status}; the work of ${await done} went on after it`);
}
queue.close();
server.close();
