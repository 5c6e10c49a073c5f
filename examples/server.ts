// A small orders API on Express 5 whose service layer logs and reads the
// current request id and user without being passed either: FastAPI's
// "dependency on the request" pattern, by contextvars.
//
//   tsx --conditions=contextvars-source examples/server.ts           # a demo: 3 concurrent clients, then exit
//                                                                    # (npm run example:server)
//   tsx --conditions=contextvars-source examples/server.ts --listen  # keep serving on :3000
//
// Prints (the order varies; each line carries its own request's id and user,
// and the third client's malformed id is replaced by a fresh UUID):
//   [req-alice alice] auth: pro plan
//   [req-bob bob] auth: free plan
//   [35a91d13-… anonymous] auth: no token
//   [req-alice alice] orders.create: 2 items
//   [35a91d13-… anonymous] error: the free plan orders one item at a time
//   [req-bob bob] repository.insert: order 2
//   ...
//   201 req-alice {"id":1,"owner":"alice","items":["tea","cake"],"requestedBy":"req-alice"}
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import express, { type NextFunction, type Request, type Response } from "express";

// ---- request-scoped values --------------------------------------------------

interface User {
  name: string;
  plan: "free" | "pro";
}
const currentUser = new ContextVar<User>("currentUser", {
  default: { name: "anonymous", plan: "free" },
});

// ---- a logger and a service layer that take no request parameter ------------

function log(message: string): void {
  console.log(`[${requestId.get("-")} ${currentUser.get().name}] ${message}`);
}

const tokens = new Map<string, User>([
  ["t-alice", { name: "alice", plan: "pro" }],
  ["t-bob", { name: "bob", plan: "free" }],
]);

async function authenticate(token: string | undefined): Promise<void> {
  await sleep(5); // a database or identity-provider round trip
  const user = token === undefined ? undefined : tokens.get(token);
  if (user === undefined) return log("auth: no token");
  currentUser.set(user); // set after an await: the handler still sees it
  log(`auth: ${user.plan} plan`);
}

interface Order {
  id: number;
  owner: string;
  items: string[];
  requestedBy: string;
}
const orders: Order[] = [];

const repository = {
  async insert(items: string[]): Promise<Order> {
    await sleep(Math.random() * 20);
    const order = {
      id: orders.length + 1,
      owner: currentUser.get().name,
      items,
      requestedBy: requestId.get(),
    };
    orders.push(order);
    log(`repository.insert: order ${order.id}`);
    return order;
  },
};

const orderService = {
  async create(items: string[]): Promise<Order> {
    log(`orders.create: ${items.length} item${items.length === 1 ? "" : "s"}`);
    if (currentUser.get().plan === "free" && items.length > 1) {
      throw Object.assign(new Error("the free plan orders one item at a time"), { status: 402 });
    }
    return repository.insert(items);
  },
};

// ---- the app ----------------------------------------------------------------

const app = express();
app.use(contextMiddleware()); // first: everything below runs in the request's Context
app.use(express.json());
app.use(async (req: Request, _res: Response, next: NextFunction) => {
  await authenticate(req.get("authorization")?.replace(/^Bearer /, ""));
  next();
});
app.post("/orders", async (req: Request, res: Response) => {
  const items = (req.body as { items?: string[] }).items ?? [];
  res.status(201).json(await orderService.create(items));
});
app.use((error: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
  log(`error: ${error.message}`); // error handlers run in the request's Context too
  res.status(error.status ?? 500).json({ error: error.message, requestId: requestId.get() });
});

// ---- run it -----------------------------------------------------------------

const listening = process.argv.includes("--listen");
const server = app.listen(listening ? 3000 : 0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

if (listening) {
  console.log(`listening on ${base}; try:
  curl -s -XPOST ${base}/orders -H 'authorization: Bearer t-alice' -H 'content-type: application/json' -d '{"items":["tea","cake"]}'`);
} else {
  const order = (id: string, token: string | undefined, items: string[]) =>
    fetch(`${base}/orders`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-request-id": id,
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify({ items }),
    }).then(async (r) => `${r.status} ${r.headers.get("x-request-id")} ${await r.text()}`);
  const replies = await Promise.all([
    order("req-alice", "t-alice", ["tea", "cake"]),
    order("req-bob", "t-bob", ["coffee"]),
    order("bad id\twith a tab", undefined, ["water", "bread"]),
  ]);
  for (const reply of replies) console.log(reply);
  server.close();
}
