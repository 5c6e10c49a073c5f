/**
 * Type tests for `contextvars/socket.io`: `withSocketContext` takes
 * socket.io's `Server` of any event maps, however it was made, and
 * `seed` and `generateId` receive node:http's request; a namespace or a
 * socket is no server. Only typechecked.
 */
import type { IncomingMessage } from "node:http";
import { createServer } from "node:http";
import { ContextVar } from "contextvars";
import type { requestId as httpRequestId } from "contextvars/http";
import {
  type requestId,
  type SocketContextOptions,
  type SocketIoServerLike,
  withSocketContext,
} from "contextvars/socket.io";
import { Server } from "socket.io";
import { type Equal, type Extends, expectFalse, expectType } from "./expect.ts";

const user = new ContextVar<string>("user");

interface ClientToServer {
  chat(text: string, ack: (reply: string) => void): void;
}
interface ServerToClient {
  hello(name: string): void;
}
interface SocketData {
  user: string;
}

export function servers(): void {
  expectType<Equal<typeof requestId, typeof httpRequestId>>();
  expectType<Equal<ReturnType<typeof withSocketContext>, void>>();
  withSocketContext(new Server(createServer()));
  withSocketContext(new Server(3000, { connectionStateRecovery: {} }));
  const typed = new Server<ClientToServer, ServerToClient, Record<string, never>, SocketData>();
  withSocketContext(typed.attach(createServer()));
  expectType<Extends<Server, SocketIoServerLike>>();
  expectType<Extends<typeof typed, SocketIoServerLike>>();
}

export function options(): void {
  expectType<
    Equal<Parameters<NonNullable<SocketContextOptions["seed"]>>, [request: IncomingMessage]>
  >();
  const io = new Server(createServer());
  withSocketContext(io, {
    header: "x-correlation-id",
    echo: false,
    seed: (req) => user.set(String(req.headers["x-user"] ?? "anonymous")),
    generateId: (req) => String(req.url),
  });
  // @ts-expect-error: options are an object, not a header name
  withSocketContext(io, "x-request-id");
}

export function notAServer(): void {
  const io = new Server(createServer());
  expectFalse<Extends<typeof createServer, SocketIoServerLike>>();
  // @ts-expect-error: a namespace is no server
  withSocketContext(io.of("/admin"));
  io.on("connection", (socket) => {
    // @ts-expect-error: nor is a socket
    withSocketContext(socket);
  });
  // @ts-expect-error: nor is the http server
  withSocketContext(createServer());
}
