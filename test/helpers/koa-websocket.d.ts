/**
 * The part of koa-websocket 7 the tests use. Its DefinitelyTyped package
 * adds a required `websocket` to every Koa `Context` of the program, which
 * the Koa integration's own middleware type would then lack.
 */
declare module "koa-websocket" {
  import type { Server } from "node:http";
  import type Koa from "koa";
  import type { WebSocket, WebSocketServer } from "ws";

  interface WebSocketContext extends Koa.Context {
    readonly websocket: WebSocket;
  }

  interface KoaWebSocketServer {
    readonly server?: WebSocketServer;
    use(middleware: (ctx: WebSocketContext, next: Koa.Next) => unknown): this;
  }

  type WebSocketApp = Koa & {
    readonly ws: KoaWebSocketServer;
    listen(port: number, host: string): Server;
  };

  export default function websockify(app: Koa): WebSocketApp;
}
