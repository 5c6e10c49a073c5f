// A short tour of what the package does beyond the seed program.
// Run with `npm run demo` (after the seed) or `npx tsx --conditions=contextvars-source examples/tour.ts`.
import { EventEmitter } from "node:events";
import {
  bind,
  bindEmitter,
  Context,
  ContextVar,
  callLater,
  copyContext,
  createTask,
  currentTask,
  gather,
  isolated,
  TaskGroup,
  timeout,
} from "contextvars";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const requestId = new ContextVar<string>("requestId", { default: "-" });
const user = new ContextVar<string>("user");

function section(title: string): void {
  console.log(`\n— ${title}`);
}

// After the seed's six bare lines, say where the tour starts.
console.log("\nexamples/tour.ts: a short tour of the package, one section per feature");

section("1. var.run: a value for one call and everything it starts");
await requestId.run("req-1", async () => {
  await sleep(5);
  console.log(`after an await, requestId is still ${requestId.get()}`);
});
console.log(`outside the run it is the default: ${requestId.get()}`);

section("2. Promise.all of eager async functions shares ONE Context (the bug) …");
async function worker(name: string): Promise<string> {
  user.set(name);
  await sleep(name === "alice" ? 10 : 1);
  return user.get();
}
console.log(
  "Promise.all([worker(a), worker(b)]) →",
  await Promise.all([worker("alice"), worker("bob")]),
);
console.log(`and the workers overwrote the caller's own value: user is now ${user.get()}`);

section("… gather and isolated give each its own copy");
console.log(
  "gather(() => worker(a), () => worker(b)) →",
  await gather(
    () => worker("alice"),
    () => worker("bob"),
  ),
);
const safeWorker = isolated(worker);
console.log(
  "Promise.all of isolated(worker) →",
  await Promise.all([safeWorker("alice"), safeWorker("bob")]),
);

section("3. Tokens: undo a set, or let `using` undo it at scope exit");
const token = user.set("carol");
user.reset(token);
console.log(`set then reset(token): user is back to ${user.get()}`);
{
  using _ = user.set("carol");
  console.log(`inside the block user is ${user.get()}`);
}
console.log(`after the block user is back to ${user.get()}`);

section("4. Contexts are values: copy in O(1), run later, read like a Map");
const snapshot = copyContext();
user.set("dave");
console.log(`snapshot still says ${snapshot.get(user)}; now it is ${user.get()}`);
snapshot.run(() => console.log(`inside snapshot.run, user is ${user.get()}`));
const ctx = new Context();
ctx.run(() => requestId.set("req-2"));
console.log(`a fresh Context after a run: size=${ctx.size}, requestId=${ctx.get(requestId)}`);

section("5. Tasks: named, cancellable, each in its own copy");
const task = createTask(
  async (signal) => {
    user.set("erin");
    await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
  },
  { name: "slow-job" },
);
task.cancel(new Error("no longer needed"));
await task.catch((error) => console.log(`${task} was cancelled: ${(error as Error).message}`));
console.log(`its set stayed inside: user is still ${user.get()}`);

const inTask = await createTask(async () => currentTask()?.name, { name: "who-am-i" });
console.log(`currentTask() inside a task → ${inTask}`);

section("6. TaskGroup: the first failure cancels the rest");
const group = new TaskGroup({ name: "fetches" });
group.createTask(async (signal) => {
  await new Promise((resolve) => signal.addEventListener("abort", resolve));
  console.log("  the slow child saw the abort and stopped");
});
group.createTask(async () => {
  await sleep(5);
  throw new Error("backend down");
});
await group.wait().catch((error: AggregateError) => {
  console.log(`${error.message}: ${error.errors.map((e: Error) => e.message).join(", ")}`);
});

section("7. timeout and scheduled callbacks");
const abortable = (ms: number, signal: AbortSignal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
await timeout(20, (signal) => abortable(1000, signal), { name: "too-slow" }).catch((error) =>
  console.log(String(error)),
);
await requestId.run("req-3", async () => {
  const done = new Promise((resolve) => callLater(5, () => resolve(requestId.get())));
  requestId.set("req-3-changed");
  console.log(`callLater ran with the value at scheduling time: ${await done}`);
});

section("8. Callbacks and emitters that remember their Context");
const emitter = new EventEmitter();
await requestId.run("req-4", async () => {
  bindEmitter(emitter);
  emitter.on("job", () => console.log(`listener bound in req-4 sees ${requestId.get()}`));
  const log = bind(() => console.log(`bound callback sees ${requestId.get()}`));
  setTimeout(() => requestId.run("req-5", () => log()), 1);
  await sleep(5);
});
requestId.run("req-6", () => emitter.emit("job"));
