/**
 * Real servers and real clients for the integration tests: servers listen on
 * 127.0.0.1 port 0, requests go through node:http (keep-alive agent, so
 * later requests reuse the sockets of earlier ones) or a raw TCP socket when
 * a test must send bytes that Node's client refuses to write.
 */
import assert from "node:assert/strict";
import { Agent, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface RequestInit {
  method?: string;
  headers?: Record<string, string>;
  /** Sent in `chunks` pieces with a short pause between them, so the server sees several `data` events. */
  body?: string;
  chunks?: number;
  agent?: Agent;
}

/**
 * Starts `server` on 127.0.0.1, port 0; resolves to its base URL. The
 * backlog is raised from Node's 511 so that 1,000 simultaneous connects are
 * not dropped and retried a second later by the kernel.
 */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1", backlog: 2048 }, () => resolve());
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server and every idle keep-alive socket. */
export async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A keep-alive agent: requests share sockets, as a browser's or a proxy's would. */
export function keepAliveAgent(maxSockets = Number.POSITIVE_INFINITY): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}

/**
 * Requests `send` sent again because a kept-alive socket was closed by the
 * server as the request went out (see `send`). scripts/soak.ts reports it.
 */
export const staleSocketRetries = { count: 0 };

/**
 * One request with node:http; resolves with status, headers and the whole body.
 * A request on a reused keep-alive socket that fails with ECONNRESET before any
 * response is sent once more on a new one: the server closed the idle socket
 * as the request went out, the race Node's docs describe under
 * `request.reusedSocket`, and not an answer from the server.
 */
export function send(base: string, path: string, init: RequestInit = {}): Promise<Reply> {
  return sendOnce(base, path, init).catch((error: unknown) => {
    if (!(error instanceof StaleSocketError)) throw error;
    staleSocketRetries.count++;
    return sendOnce(base, path, init).catch((again: unknown) => {
      throw again instanceof StaleSocketError ? again.cause : again;
    });
  });
}

class StaleSocketError extends Error {}

function sendOnce(base: string, path: string, init: RequestInit): Promise<Reply> {
  const { method = init.body === undefined ? "GET" : "POST", headers = {}, body, agent } = init;
  return new Promise<Reply>((resolve, reject) => {
    let answered = false;
    const req = httpRequest(`${base}${path}`, { method, headers, agent }, (res) => {
      answered = true;
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
      );
      res.on("error", reject);
    });
    req.on("error", (error: NodeJS.ErrnoException) => {
      const stale = !answered && req.reusedSocket && error.code === "ECONNRESET";
      reject(stale ? new StaleSocketError("stale keep-alive socket", { cause: error }) : error);
    });
    if (body === undefined) {
      req.end();
      return;
    }
    req.setHeader("content-length", Buffer.byteLength(body));
    const pieces = Math.max(1, init.chunks ?? 1);
    const size = Math.ceil(body.length / pieces);
    void (async () => {
      for (let at = 0; at < body.length; at += size) {
        req.write(body.slice(at, at + size));
        if (at + size < body.length) await sleep(2);
      }
      req.end();
    })();
  });
}

/** `send`, then JSON.parse of the body; fails the test on a non-200 status. */
export async function sendJson<T>(base: string, path: string, init?: RequestInit): Promise<T> {
  const reply = await send(base, path, init);
  assert.equal(reply.status, 200, `${path}: ${reply.body}`);
  return JSON.parse(reply.body) as T;
}

/**
 * Writes `head` (request line and headers, lines joined with CRLF) on a raw
 * socket, as a client that does not validate headers would; resolves with
 * the response's status and headers.
 */
export function sendRaw(base: string, lines: readonly string[]): Promise<Reply> {
  const { hostname, port } = new URL(base);
  return new Promise<Reply>((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
    });
    socket.on("error", reject);
    socket.on("end", () => {
      const [head = "", body = ""] = text.split("\r\n\r\n");
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body });
    });
    socket.write(`${[...lines, "Connection: close"].join("\r\n")}\r\n\r\n`, "latin1");
  });
}

/** A random pause of 0 to `max` ms: interleaves concurrent requests differently on every run. */
export function randomDelay(max = 4): Promise<void> {
  return sleep(Math.floor(Math.random() * (max + 1)));
}

/** The RFC 4122 shape `crypto.randomUUID()` produces. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * GETs `url` with `x-request-id: id`, reads the first chunk of the body and
 * goes away (aborts), as a client that closes a stream early; returns the
 * response's headers. Settles once the body is closed on the client's side.
 */
export async function abortAfterFirstChunk(url: string, id: string): Promise<Headers> {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: { "x-request-id": id },
    signal: controller.signal,
  });
  const reader = response.body?.getReader();
  if (reader === undefined) throw new Error(`${url} answered without a body`);
  await reader.read();
  controller.abort();
  await reader.closed.catch(() => {});
  return response.headers;
}
