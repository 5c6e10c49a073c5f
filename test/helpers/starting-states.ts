/**
 * Runs a test body from every starting state a user's code can be in (as the
 * TC39 proposal's test wrapper does): at the root Context, inside a
 * `ctx.run`, inside a copy of the current Context, and inside a task.
 */
import { it } from "node:test";
import { Context, copyContext, createTask } from "contextvars";

export interface StartingState {
  readonly name: string;
  enter<R>(body: () => R | Promise<R>): Promise<R>;
}

export const startingStates: readonly StartingState[] = [
  { name: "root", enter: async (body) => body() },
  { name: "inside a run", enter: async (body) => new Context().run(body) },
  { name: "inside a copy", enter: async (body) => copyContext().run(body) },
  { name: "inside a task", enter: async (body) => createTask(body) },
];

/** Declares one `it` per starting state: `title (root)`, `title (inside a run)`, … */
export function itFromEveryState(title: string, body: () => unknown): void {
  for (const state of startingStates) {
    it(`${title} (${state.name})`, async () => {
      await state.enter(body);
    });
  }
}
