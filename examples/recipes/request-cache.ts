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
  u3: { name: "Lin", email: "lin@example.com" },
};
// The backend's first answer for u3 is an outage, as a real one's sometimes is.
let u3Down = true;

async function fetchProfile(id: string): Promise<Profile> {
  backendCalls.push(`${requestId.get()} ${id}`);
  await sleep(10);
  if (id === "u3" && u3Down) {
    u3Down = false;
    throw new Error("backend unavailable");
  }
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
  // A failed load is forgotten, so that a later call in the request tries
  // again; the callers waiting on this one still see its error.
  profile.catch(() => {
    if (cache.get(id) === profile) cache.delete(id);
  });
  return profile;
}

// Resolvers that each load what they need, as GraphQL field resolvers do.
const author = (postId: string) => loadProfile(postId === "p1" ? "u1" : "u2");
const reviewer = () => loadProfile("u1");

const server = createServer(
  withContext(
    async (req, res) => {
      if (req.url === "/retry") {
        // The first load fails; the second is not served that failure from
        // the cache, but asks the backend again.
        const first = await loadProfile("u3").then(
          () => "succeeded",
          (error: Error) => `failed (${error.message})`,
        );
        const second = await loadProfile("u3");
        res.end(`first load of u3 ${first}; the second asked again and got ${second.name}`);
        return;
      }
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

for (const reply of replies) console.log(reply);
console.log(`backend calls (3 loads per request, u1 twice): ${backendCalls.sort().join(", ")}`);
console.log(
  await fetch(`${base}/retry`, { headers: { "x-request-id": "req-3" } }).then((r) => r.text()),
);
server.close();
