// Recipe: override a feature flag or the current user in one test (docs/recipes.md).
// Test runners start concurrent tests from one Context (node:test does with
// `concurrency`), so a test that calls set() changes what its siblings read.
// var.run(value, fn), or a Context prepared once and run per test, keeps the
// override inside that test.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/test-overrides.ts
import { setTimeout as sleep } from "node:timers/promises";
import { type Context, ContextVar, copyContext } from "contextvars";

// ---- application code: reads its flags and user from the context ------------

interface Flags {
  newCheckout: boolean;
  discountPercent: number;
}
const flags = new ContextVar<Flags>("flags", {
  default: { newCheckout: false, discountPercent: 0 },
});
const currentUser = new ContextVar<string>("currentUser", { default: "anonymous" });

async function checkoutPage(): Promise<string> {
  await sleep(5); // the cart is loaded from somewhere
  const { newCheckout, discountPercent } = flags.get();
  const price = 100 - discountPercent;
  return `${newCheckout ? "new" : "old"} checkout for ${currentUser.get()}, ${price} EUR`;
}

// ---- a tiny runner that starts every test at once from one Context ----------

type Test = readonly [name: string, body: () => Promise<string>, expected: string];

async function runConcurrently(title: string, tests: readonly Test[]): Promise<void> {
  console.log(title);
  const results = await Promise.all(tests.map(([, body]) => body()));
  tests.forEach(([name, , expected], n) => {
    const got = results[n];
    console.log(`  ${got === expected ? "ok" : "not ok"} - ${name}: ${got}`);
  });
}

// ---- the pitfall: set() in a test body reaches the tests beside it ----------

await runConcurrently("set() in a test body:", [
  [
    "new checkout is on",
    async () => {
      flags.set({ newCheckout: true, discountPercent: 0 });
      return checkoutPage();
    },
    "new checkout for anonymous, 100 EUR",
  ],
  ["the default is the old checkout", () => checkoutPage(), "old checkout for anonymous, 100 EUR"],
]);
flags.set({ newCheckout: false, discountPercent: 0 }); // undo the leak before going on

// ---- the recipe: var.run for one value, a prepared Context for several ------

// A fixture: the values a group of tests runs under, set once in a copy of
// the current Context, so it starts from whatever the file itself set.
function fixture(values: { user?: string; flags?: Partial<Flags> }): Context {
  const context = copyContext();
  context.run(() => {
    if (values.user !== undefined) currentUser.set(values.user);
    if (values.flags !== undefined) flags.set({ ...flags.get(), ...values.flags });
  });
  return context;
}
const premiumUser = fixture({ user: "ada", flags: { discountPercent: 20 } });

await runConcurrently("var.run and Context.run:", [
  [
    "new checkout is on",
    () => flags.run({ newCheckout: true, discountPercent: 0 }, checkoutPage),
    "new checkout for anonymous, 100 EUR",
  ],
  ["the default is the old checkout", () => checkoutPage(), "old checkout for anonymous, 100 EUR"],
  [
    "a premium user gets 20% off",
    // A copy per test: what one test sets in it never reaches the next.
    () => premiumUser.copy().run(checkoutPage),
    "old checkout for ada, 80 EUR",
  ],
  [
    "a premium user on the new checkout",
    () =>
      premiumUser.copy().run(() => flags.run({ ...flags.get(), newCheckout: true }, checkoutPage)),
    "new checkout for ada, 80 EUR",
  ],
]);
console.log(`after the tests: ${await checkoutPage()}`);
