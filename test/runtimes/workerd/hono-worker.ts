/**
 * A Hono app on Cloudflare Workers with `contextvars/hono`, run in workerd
 * (through Miniflare, with `nodejs_compat`) by scripts/runtimes/workerd-test.ts,
 * which bundles it as wrangler does: conditions `workerd`, `worker`,
 * `browser`, `node:` imports left to the runtime.
 *
 * `/r/work` reads the request's values after awaits and sets a var between
 * them; `/root` has no middleware and reads the root Context, where such a
 * set would land if the Context did not follow the awaits.
 */
import { ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/hono";
import { Hono } from "hono";

const user = new ContextVar<string>("user");
const late = new ContextVar<string>("late", { default: "unset" });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const app = new Hono();
app.get("/root", (c) =>
  c.json({ id: requestId.get(null), user: user.get(null), late: late.get() }),
);
app.use(
  "/r/*",
  contextMiddleware({ seed: (c) => user.set(c.req.header("x-user") ?? "anonymous") }),
);
app.get("/r/work", async (c) => {
  const ms = Number(c.req.query("ms") ?? "0");
  const before = { id: requestId.get(null), user: user.get(null) };
  await sleep(ms);
  late.set(c.req.header("x-user") ?? "anonymous");
  await sleep(ms);
  return c.json({ before, id: requestId.get(null), user: user.get(null), late: late.get() });
});

export default app;
