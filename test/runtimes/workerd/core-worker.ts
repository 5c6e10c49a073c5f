/**
 * The root entry alone on Cloudflare Workers, run in workerd (through
 * Miniflare, with `nodejs_als` only, no `nodejs_compat`) by
 * scripts/runtimes/workerd-test.ts: each request runs in its own copy of
 * the root Context, sets a var, awaits, and starts a task whose own set
 * stays in the task.
 */
import { ContextVar, copyContext, createTask, gather } from "contextvars";

const name = new ContextVar<string>("name", { default: "root" });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export default {
  fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/root") return Promise.resolve(Response.json({ name: name.get() }));
    const ms = Number(url.searchParams.get("ms") ?? "0");
    return copyContext().run(async () => {
      name.set(url.searchParams.get("name") ?? "?");
      await sleep(ms);
      const child = createTask(async () => {
        const inherited = name.get();
        await sleep(ms);
        name.set("child");
        return { inherited, after: name.get() };
      });
      const [seen] = await gather(child);
      await sleep(ms);
      return Response.json({ name: name.get(), child: seen });
    });
  },
};
