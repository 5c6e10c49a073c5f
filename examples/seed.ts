// The seed program: the Python contextvars example this package started from,
// translated line by line.
// Prints: alice, bob, alice, Value reset, alice, bob.
import { ContextVar, gather, LookupError, run } from "contextvars";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const currentUser = new ContextVar<string>("current_user");
currentUser.set("alice");
console.log(currentUser.get());

currentUser.set("bob");
console.log(currentUser.get());

const user = new ContextVar<string>("user");
const token = user.set("alice");
console.log(user.get());
user.reset(token);
try {
  console.log(user.get());
} catch (error) {
  if (!(error instanceof LookupError)) throw error;
  console.log("Value reset");
}

async function worker(name: string): Promise<void> {
  currentUser.set(name);
  await sleep(1000);
  console.log(currentUser.get());
}

async function main(): Promise<void> {
  // asyncio.gather(worker("alice"), worker("bob")): each worker is its own
  // task with its own copy of the Context, so neither overwrites the other.
  await gather(
    () => worker("alice"),
    () => worker("bob"),
  );
}

await run(main);
