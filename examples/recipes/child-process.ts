// Recipe: across processes (docs/recipes.md).
// A child process has a Context of its own and none of the parent's values:
// what a job needs crosses in the message. The parent puts the chosen vars
// beside the job; the child runs each job in a fresh Context seeded from
// them and replies; the parent applies what the job sent back in the
// request that awaits it. The parent's `message` listener runs in the
// Context fork() was called in, whatever request the reply is for; a child
// whose handler sets the vars plainly hands one job's values to the next.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/child-process.ts
//
// This one file is both the parent and the child (the child is this file
// forked with "child" as its argument; fork passes the parent's execArgv on).
import { execFile, fork } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { bind, Context, ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";

const user = new ContextVar<string>("user", { default: "anonymous" });
const priceList = new ContextVar<string>("priceList", { default: "none" }); // set by a job

/** What crosses with a job: the values of the vars the child needs. */
interface Carried {
  requestId: string;
  user: string;
}
interface JobMessage {
  id: number;
  item: string;
  plain?: boolean;
  vars: Carried;
}
interface Reply {
  id: number;
  result: string;
  /** What the job set that the requester should see. */
  vars: { priceList: string };
}

const carried = (): Carried => ({ requestId: requestId.get("-"), user: user.get() });

if (process.argv[2] === "child") {
  // Each message: a fresh copy of an empty Context, seeded from the message.
  const runJob = bind(async (message: JobMessage): Promise<void> => {
    const before = `${requestId.get("-")}, user ${user.get()}`;
    requestId.set(message.vars.requestId);
    user.set(message.vars.user);
    priceList.set(`eu-${user.get()}`);
    await sleep(message.item.length * 10); // the jobs overlap and end in another order
    process.send?.({
      id: message.id,
      result: `${message.item} for ${user.get()} in ${requestId.get()} (the job started with requestId ${before})`,
      vars: { priceList: priceList.get() },
    } satisfies Reply);
  }, new Context());

  // The pitfall: sets made in the handler itself land in the child's root Context.
  const runPlainly = (message: JobMessage): void => {
    const before = `${requestId.get("-")}, user ${user.get()}`;
    requestId.set(message.vars.requestId);
    user.set(message.vars.user);
    process.send?.({
      id: message.id,
      result: `the job of ${message.vars.requestId} started with requestId ${before}`,
      vars: { priceList: priceList.get() },
    } satisfies Reply);
  };

  process.on("message", (message: JobMessage) =>
    message.plain ? runPlainly(message) : runJob(message),
  );
} else {
  // At startup, outside any request: the child's channel runs its listeners here.
  const child = fork(fileURLToPath(import.meta.url), ["child"]);
  const pending = new Map<number, (reply: Reply) => void>();
  const listenerSaw = new Set<string>();
  let lastId = 0;
  child.on("message", (reply: Reply) => {
    listenerSaw.add(requestId.get("-")); // fork()'s Context, for every request's reply
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  });

  async function inChild(item: string, plain = false): Promise<string> {
    const id = ++lastId;
    const replied = new Promise<Reply>((resolve) => pending.set(id, resolve));
    child.send({ id, item, plain, vars: carried() } satisfies JobMessage);
    const reply = await replied; // resumes in the request that sent the job
    priceList.set(reply.vars.priceList); // and back: what the job set, in this request
    return reply.result;
  }

  const server = createServer(
    withContext(
      async (req, res) => {
        const url = new URL(req.url ?? "/", "http://localhost");
        const item = url.searchParams.get("item") ?? "tea";
        if (url.pathname === "/plain") {
          res.end(await inChild(item, true));
        } else if (url.pathname === "/exec") {
          // One process per job: the values go in its environment.
          const env = { ...process.env, REQUEST_ID: requestId.get(), USER_NAME: user.get() };
          const script = "console.log(process.env.REQUEST_ID + ' ' + process.env.USER_NAME)";
          execFile(process.execPath, ["-e", script], { env }, (_error, stdout) => {
            res.end(`the child printed ${stdout.trim()}; its callback ran in ${requestId.get()}`);
          });
        } else {
          const result = await inChild(item);
          res.end(`${result}; back in ${requestId.get()}, priceList ${priceList.get()}`);
        }
      },
      { seed: (req) => user.set(String(req.headers["x-user"] ?? "anonymous")) },
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let order = 0;
  const request = async (path: string, who: string) =>
    (
      await fetch(`${base}${path}`, {
        headers: { "x-request-id": `order-${++order}`, "x-user": who },
      })
    ).text();

  console.log("three requests at once share one child:");
  const replies = await Promise.all([
    request("/?item=espresso", "alice"),
    request("/?item=tea", "bob"),
    request("/?item=cake", "carol"),
  ]);
  for (const reply of replies) console.log(`  ${reply}`);
  console.log(`the parent's message listener ran in requestId ${[...listenerSaw].join(", ")}`);
  console.log("a child whose handler sets the vars plainly:");
  console.log(`  ${await request("/plain", "dave")}`);
  console.log(`  ${await request("/plain", "erin")}`);
  console.log("a process per job, the values in its environment:");
  console.log(`  ${await request("/exec", "frank")}`);

  child.disconnect();
  server.close();
}
