// A socket.io chat whose store and logger read the sender's request id and
// user from context, never from their arguments. Three clients connect at
// once, one over websocket, one over long polling, one over polling upgraded
// to websocket, and send messages whose handling interleaves on the store's
// awaits: each line still carries its own sender's id and user. (Without
// withSocketContext, every connection shares one Context: no request id,
// and each line names whichever user connected last.)
//
//   node --conditions=contextvars-source --import tsx examples/socket-io-chat.ts
//
// Prints, sorted (the order in which the lines are logged varies):
//   [req-alice alice] connected over websocket
//   [req-alice alice] disconnected: client namespace disconnect
//   [req-alice alice] stored in #general: "hello from alice"
//   ...
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, ContextVar } from "contextvars";
import { requestId, withSocketContext } from "contextvars/socket.io";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";

const user = new ContextVar<string>("user", { default: "anonymous" });

// Lines are kept to print sorted at the end: the output is compared.
const lines: string[] = [];
function log(message: string): void {
  lines.push(`[${requestId.get("-")} ${user.get()}] ${message}`);
}

// A message store with a database's latency: handlers of different clients
// interleave on its awaits, yet each log line is its own sender's.
const store = {
  async save(room: string, text: string): Promise<void> {
    await sleep(5 + Math.random() * 25);
    log(`stored in #${room}: "${text}"`);
  },
};

// ---- the server -------------------------------------------------------------

const server = createServer();
const io = new Server(server);
// Right after new Server, before any client: each connection gets the
// Context of its handshake request, with requestId from its x-request-id.
withSocketContext(io);

io.use((socket, next) => {
  // Seen by this connection's `connection` and events, and by no other client's.
  user.set(String(socket.handshake.auth.user ?? "anonymous"));
  next();
});

let stillHere = 3; // the three clients below, counted down as each disconnects
const allGone = new Promise<void>((resolve) => {
  io.on("connection", (socket) => {
    log(`connected over ${socket.conn.transport.name}`);
    // An acknowledgement callback is no socket listener: unbound, it would
    // run with the handshake's id but without the user io.use set.
    socket.emit(
      "welcome",
      bind((reply: string) => log(`welcome acknowledged: ${reply}`)),
    );
    socket.on("chat", async (room: string, text: string, ack: (ok: string) => void) => {
      await store.save(room, text);
      ack("ok");
    });
    socket.on("disconnect", (reason) => {
      log(`disconnected: ${reason}`);
      stillHere -= 1;
      if (stillHere === 0) resolve();
    });
  });
});

await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

// ---- the clients ------------------------------------------------------------

async function client(name: string, transports: ("websocket" | "polling")[], rooms: string[]) {
  const socket = connect(url, {
    transports,
    forceNew: true, // one connection per client, not one shared Manager
    reconnection: false,
    auth: { user: name },
    extraHeaders: { "x-request-id": `req-${name}` },
  });
  socket.on("welcome", (ack: (reply: string) => void) => ack(`hi, I am ${name}`));
  await new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(undefined));
    socket.once("connect_error", reject);
  });
  // All of a client's messages at once, so they interleave with each other too.
  await Promise.all(rooms.map((room) => socket.emitWithAck("chat", room, `hello from ${name}`)));
  socket.disconnect();
}

await Promise.all([
  client("alice", ["websocket"], ["general", "tea"]),
  client("bob", ["polling"], ["general", "random"]),
  client("carol", ["polling", "websocket"], ["tea", "random"]),
]);
await allGone;
io.close(); // closes the HTTP server too: nothing is left to keep the process alive
for (const line of lines.sort()) console.log(line);
