/**
 * LangGraph (`@langchain/langgraph` 1.7) under a request's Context. A
 * compiled graph is a LangChain runnable: its nodes run in whatever Context
 * invoked it, so they see the request that called `invoke()` or `stream()`.
 * Nodes of one superstep run concurrently in that one Context, as sibling
 * resolvers do; and a ContextVar is not graph state, so an interrupted run
 * resumed by a later request runs in the later request's Context. Requests
 * are served by node:http under `withContext` to fetch clients on
 * 127.0.0.1; nodes are plain functions and a `FakeListChatModel`.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { describe, it } from "node:test";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import {
  Annotation,
  Command,
  END,
  INTERRUPT,
  interrupt,
  MemorySaver,
  Send,
  START,
  StateGraph,
} from "@langchain/langgraph";
import { ContextVar, isolated } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { close, listen, randomDelay } from "../helpers/http.ts";
import { user } from "../helpers/logging.ts";

/** Set by each branch of a fan-out, to see which branches share a Context. */
const branch = new ContextVar<string>("langgraph.branch");
/** Set by a node before it interrupts, to see whether a resume restores it. */
const draft = new ContextVar<string>("langgraph.draft");

function here(): string {
  return `${requestId.get("<none>")}|${user.get("<none>")}`;
}

/** Serves every request with `handle` under `withContext`, `user` seeded from `x-user`. */
async function serve(handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>) {
  const server = createServer(
    withContext(handle, { seed: (req) => user.set(String(req.headers["x-user"])) }),
  );
  return { server, base: await listen(server) };
}

async function get(base: string, id: string, userName: string, headers = {}): Promise<string> {
  const response = await fetch(base, {
    headers: { "x-request-id": id, "x-user": userName, ...headers },
  });
  assert.equal(response.status, 200);
  return response.text();
}

describe("LangGraph graphs behind withContext", () => {
  it("the nodes of 50 concurrent requests' graphs, invoked and streamed, see their own request", async () => {
    const State = Annotation.Root({
      expected: Annotation<string>,
      answer: Annotation<string>,
      seen: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
    });
    const readings: { what: string; expected: string; got: string }[] = [];
    const model = new FakeListChatModel({ responses: ["one two"], sleep: 1 });
    const graph = new StateGraph(State)
      .addNode("plan", async ({ expected }) => {
        readings.push({ what: "plan before await", expected, got: here() });
        await randomDelay(3);
        readings.push({ what: "plan after await", expected, got: here() });
        return { seen: [here()] };
      })
      .addNode("reply", async ({ expected }) => {
        let answer = "";
        for await (const chunk of await model.stream(`hello ${expected}`)) answer += chunk.content;
        readings.push({ what: "reply", expected, got: here() });
        return { answer, seen: [here()] };
      })
      .addEdge(START, "plan")
      .addEdge("plan", "reply")
      .addEdge("reply", END)
      .compile();
    const { server, base } = await serve(async (req, res) => {
      const expected = here();
      if (req.headers["x-mode"] === "stream") {
        const updates: string[] = [];
        for await (const chunk of await graph.stream({ expected }, { streamMode: "updates" }))
          updates.push(...Object.keys(chunk));
        res.end(updates.join(","));
      } else {
        const state = await graph.invoke({ expected });
        res.end(`${state.answer}:${state.seen.every((s) => s === expected)}`);
      }
    });
    try {
      const bodies = await Promise.all(
        ["invoke", "stream"].flatMap((mode) =>
          Array.from({ length: 50 }, (_, n) =>
            get(base, `${mode}-${n}`, `user-${n}`, { "x-mode": mode }).then((body) => ({
              mode,
              body,
            })),
          ),
        ),
      );
      for (const { mode, body } of bodies)
        assert.equal(body, mode === "stream" ? "plan,reply" : "one two:true");
    } finally {
      await close(server);
    }
    assert.equal(readings.length, 300);
    const wrong = readings.filter((r) => r.got !== r.expected);
    assert.equal(wrong.length, 0, `${wrong.length} of 300 saw another request`);
  });

  /**
   * START fans out to three branch nodes (one superstep), and a `Send` to a
   * worker per item (another): each sets `branch`, awaits, reads it back.
   * Returns how many of the readings saw a sibling's value.
   */
  async function siblings(wrap: <F extends (...args: never[]) => unknown>(fn: F) => F) {
    const State = Annotation.Root({
      items: Annotation<string[]>,
      read: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
    });
    const step = (name: string) =>
      wrap(async (): Promise<{ read: string[] }> => {
        branch.set(name);
        await randomDelay(3);
        return { read: [`${name}=${branch.get()}|${here()}`] };
      });
    const worker = wrap(async ({ item }: { item: string }): Promise<{ read: string[] }> => {
      branch.set(item);
      await randomDelay(3);
      return { read: [`${item}=${branch.get()}|${here()}`] };
    });
    const graph = new StateGraph(State)
      .addNode("left", step("left"))
      .addNode("middle", step("middle"))
      .addNode("right", step("right"))
      .addNode("worker", worker)
      .addEdge(START, "left")
      .addEdge(START, "middle")
      .addEdge(START, "right")
      .addConditionalEdges("left", (s) => s.items.map((item) => new Send("worker", { item })), [
        "worker",
      ])
      .addEdge("worker", END)
      .compile();
    const { server, base } = await serve(async (_req, res) => {
      const state = await graph.invoke({ items: ["a", "b", "c", "d"] });
      res.end(JSON.stringify(state.read));
    });
    const reads: string[] = [];
    try {
      const bodies = await Promise.all(
        Array.from({ length: 10 }, (_, n) => get(base, `fan-${n}`, `user-${n}`)),
      );
      bodies.forEach((body, n) => {
        for (const r of JSON.parse(body) as string[]) {
          assert.ok(r.endsWith(`|fan-${n}|user-${n}`), r); // each its own request, always
          reads.push(r);
        }
      });
    } finally {
      await close(server);
    }
    assert.equal(reads.length, 10 * 7);
    return reads.filter((r) => {
      const [name, got] = r.split("|")[0]?.split("=") ?? [];
      return name !== got;
    }).length;
  }

  it("the nodes of one superstep, fan-out edges or Send, share the request's one Context", async () => {
    // 10 requests of 3 branches and 4 workers. Up to 2 of each 3 branches and
    // 3 of each 4 workers can read a sibling's value: at most 50 of 70.
    const shared = await siblings((fn) => fn);
    assert.ok(shared > 0, "no branch saw a sibling's value");
    assert.ok(shared <= 50, `${shared} of 70`);
  });

  it("isolated node functions give each branch and each Send its own copy", async () => {
    assert.equal(await siblings(isolated), 0);
  });

  it("a run interrupted in one request and resumed in another runs in the resuming request's Context", async () => {
    const State = Annotation.Root({
      question: Annotation<string>,
      asked: Annotation<string>,
      approved: Annotation<string>,
    });
    const readings: string[] = [];
    const graph = new StateGraph(State)
      .addNode("review", async ({ question }) => {
        // Runs again from the top when resumed: everything before interrupt() twice.
        readings.push(`before ${here()} draft=${draft.get("<none>")}`);
        draft.set(`draft of ${requestId.get()}`);
        const asked = requestId.get(); // kept in state, it outlives the request
        const approved = interrupt<string, string>(`approve ${question}?`);
        await randomDelay(2);
        readings.push(`after ${here()} draft=${draft.get()}`);
        return { asked, approved: `${approved} by ${user.get()}` };
      })
      .addEdge(START, "review")
      .addEdge("review", END)
      .compile({ checkpointer: new MemorySaver() });
    const { server, base } = await serve(async (req, res) => {
      const config = { configurable: { thread_id: String(req.headers["x-thread"]) } };
      const state = req.headers["x-resume"]
        ? await graph.invoke(new Command({ resume: req.headers["x-resume"] }), config)
        : await graph.invoke({ question: "refund" }, config);
      res.end(
        INTERRUPT in state
          ? `interrupted ${JSON.stringify(state[INTERRUPT])}`
          : `${state.asked}:${state.approved}`,
      );
    });
    try {
      const threads = Array.from({ length: 10 }, (_, n) => `thread-${n}`);
      const asked = await Promise.all(
        threads.map((t, n) => get(base, `ask-${n}`, `asker-${n}`, { "x-thread": t })),
      );
      for (const body of asked) assert.match(body, /^interrupted .*approve refund\?/);
      const resumed = await Promise.all(
        threads.map((t, n) =>
          get(base, `resume-${n}`, `approver-${n}`, { "x-thread": t, "x-resume": "yes" }),
        ),
      );
      resumed.forEach((body, n) => {
        // `asked` came back from the checkpoint: the resumed node ran the
        // lines before interrupt() again, in the resuming request.
        assert.equal(body, `resume-${n}:yes by approver-${n}`);
      });
    } finally {
      await close(server);
    }
    assert.equal(readings.length, 30);
    for (let n = 0; n < 10; n++) {
      assert.ok(readings.includes(`before ask-${n}|asker-${n} draft=<none>`));
      // The draft set before the interrupt is not restored: a fresh request's Context.
      assert.ok(readings.includes(`before resume-${n}|approver-${n} draft=<none>`));
      assert.ok(readings.includes(`after resume-${n}|approver-${n} draft=draft of resume-${n}`));
    }
  });
});
