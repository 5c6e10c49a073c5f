// Recipe: a per-request memo, as DataLoader keeps one per request (docs/recipes.md).
// Within a request, the same user is fetched once however many resolvers ask
// for it, also concurrently; across requests nothing is shared, so what one
// viewer was allowed to see is never served to another.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/request-cache.ts
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";

interface Profile {
  id: string;
  name: string;
  email?: string;
}

const viewer = new ContextVar<string>("viewer", { default: "anonymous" });
// Created per request in `seed`, before anything forks: gather's tasks get
// copies of the Context, and a copy holds the same Map, so they share it.
const profileCache = new ContextVar<Map<string, Promise<Profile>>>("profileCache");

// ---- the backend: what it returns depends on who asks ------------------------

const backendCalls: string[] = [];
const people: Record<string, { name: string; email: string }> = {
  u1: { name: "Ada", email: "ada@example.com" },
  u2: { name: "Grace", email: "grace@example.com" },
};

async function fetchProfile(id: string): Promise<Profile> {
  backendCalls.push(`${requestId.get()} ${id}`);
  await sleep(10);
  const person = people[id] ?? { name: "?", email: "?" };
  // Only admins see email addresses: a cache shared by all requests would leak them.
  return viewer.get() === "admin" ? { id, ...person } : { id, name: person.name };
}

// ---- the recipe ---------------------------------------------------------------

function loadProfile(id: string): Promise<Profile> {
  const cache = profileCache.get();
  const cached = cache.get(id);
  if (cached !== undefined) return cached;
  // The promise, not the value, is cached: concurrent callers share one fetch.
  const profile: Promise<Profile> = fetchProfile(id);
  cache.set(id, profile);
  return profile;
}

// Resolvers that each load what they need, as GraphQL field resolvers do.
const author = (postId: string) => loadProfile(postId === "p1" ? "u1" : "u2");
const reviewer = () => loadProfile("u1");

const server = createServer(
  withContext(
    async (_req, res) => {
      const [first, second, third] = await gather(
        () => author("p1"),
        () => author("p2"),
        () => reviewer(),
      );
      res.end(JSON.stringify({ viewer: viewer.get(), profiles: [first, second, third] }));
    },
    {
      seed: (req) => {
        viewer.set(String(req.headers["x-viewer"] ?? "anonymous"));
        profileCache.set(new Map());
      },
    },
  ),
);
server.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const ask = (id: string, who: string) =>
  fetch(base, { headers: { "x-request-id": id, "x-viewer": who } }).then((r) => r.text());
const replies = await Promise.all([ask("req-1", "admin"), ask("req-2", "guest")]);
server.close();

for (const reply of replies) console.log(reply);
console.log(`backend calls (3 loads per request, u1 twice): ${backendCalls.sort().join(", ")}`);
