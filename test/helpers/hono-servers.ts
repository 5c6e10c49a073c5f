/**
 * The two ways a Hono app meets `contextMiddleware()` on a node:http
 * server (127.0.0.1, port 0): through @hono/node-server with its bindings
 * (`c.env.incoming`/`outgoing`, the middleware's Node path), and through the
 * same listener handed no bindings, which leaves `c.env` undefined (the
 * middleware's fetch path, as behind `Bun.serve` or `Deno.serve`).
 */
import { createServer, type RequestListener } from "node:http";
import { getRequestListener } from "@hono/node-server";
import type { Hono } from "hono";
import { close, listen } from "./http.ts";

export type HonoPath = "node-server" | "fetch path";

export const honoPaths: readonly HonoPath[] = ["node-server", "fetch path"];

/** The node:http listener that serves `app` the `path` way. */
export function honoListener(app: Hono, path: HonoPath): RequestListener {
  return path === "node-server"
    ? getRequestListener(app.fetch)
    : getRequestListener((request) => app.fetch(request));
}

export interface ServedHono {
  readonly base: string;
  close(): Promise<void>;
}

/** Serves `app` the `path` way; `wrap` (contextvars/http's withContext, say) wraps the listener. */
export async function serveHono(
  app: Hono,
  path: HonoPath,
  wrap: (listener: RequestListener) => RequestListener = (listener) => listener,
): Promise<ServedHono> {
  const server = createServer(wrap(honoListener(app, path)));
  const base = await listen(server);
  return { base, close: () => close(server) };
}
