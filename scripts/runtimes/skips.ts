/**
 * The one place that says which tests do not run, or do not pass, on some
 * runtime, each with its reason. Nothing is skipped anywhere else.
 *
 * - SKIPS: test files that do not apply to a runtime at all; they are not run.
 * - DIFFERENCES: single tests that pin Node's behaviour (Node 20's, for
 *   `frame: "on"` entries) where another runtime or mode really behaves
 *   differently, or where the test's own harness is Node's. They run, and
 *   must fail there: one that starts to pass is reported as stale (unless
 *   `mayPass`), as is any entry that matches no test. Where the difference
 *   is the runtime's, `pinnedBy` names the test that pins what it does.
 *
 * test-matrix.ts prints every entry, and fails on entries whose file is gone.
 */
import type { RuntimeId } from "./runtimes.ts";

export interface Skip {
  /** Runtimes the skip applies to. */
  readonly runtimes: readonly RuntimeId[];
  /** A test file, or a folder ending in `/`, relative to the project root. */
  readonly path: string;
  readonly reason: string;
}

export interface Difference {
  readonly runtimes: readonly RuntimeId[];
  /** Only where Node runs AsyncContextFrame (Node 22 with the flag, 24+ by default). */
  readonly frame?: "on";
  /** The test file. */
  readonly path: string;
  /** The full test name (`suite > test`) starts with this string, or matches this pattern. */
  readonly test: string | RegExp;
  readonly reason: string;
  /** The test that pins what these runtimes do instead. */
  readonly pinnedBy?: string;
  /** The outcome depends on timing there: passing is not reported as stale. */
  readonly mayPass?: true;
}

/** Where a test runs: the runtime, and for Node whether AsyncContextFrame is on. */
export interface Where {
  readonly runtime: RuntimeId;
  readonly frame: boolean;
}

const NOT_NODE: readonly RuntimeId[] = ["bun", "deno"];
const NODE_WITH_FRAME: readonly RuntimeId[] = ["node22", "node24", "node26"];
const PINNED = "test/runtimes/differences.test.ts";
const NODE_CLI =
  "starts process.execPath with Node's flags (--import tsx --input-type=module -e); on Deno that binary is deno";

export const SKIPS: readonly Skip[] = [
  {
    runtimes: ["deno"],
    path: "test/integrations/koa-easy-ws.test.ts",
    reason:
      "koa-easy-ws hands ws the socket of a request node:http is still serving (the server has no " +
      "upgrade listener); on Deno's node:http that handshake never completes and every client times " +
      "out (ERR_HTTP_REQUEST_TIMEOUT), so the file cannot run there",
  },
  {
    runtimes: ["bun"],
    path: "test/leaks/observability.test.ts",
    reason:
      "on Bun 1.4.5, 3 of 31 runs kept one of the 20 requests' values (a decoded baggage value and its " +
      "extracted context, or a user pino logged) past 30 full collections (Bun.gc(true)), a different " +
      "request each time; the other leak files pass there run after run (12 runs each)",
  },
  {
    runtimes: ["deno"],
    path: "test/threads/pool.test.ts",
    reason:
      "the job over piscina's resourceLimits never settles on Deno 2.9.6 (still running after 2 minutes), " +
      "and three tests fail there: the two default-pool tests count or fail piscina's import with a " +
      "node:module register() resolve hook, which Deno does not run (register() returns, the hook is never " +
      "called), and the re-import of a module that failed to import: Deno keeps a failed import() of a file " +
      "that did not exist, so the job still fails in that thread once the file is written (Node and Bun " +
      "import it again)",
  },
  {
    runtimes: ["deno"],
    path: "test/threads/requests.test.ts",
    reason:
      "its first test, 200 concurrent Express requests each starting pool jobs, timed out (60 s) in 1 of 4 " +
      "runs on Deno 2.9.6; the other runs passed in 4 s",
  },
  {
    runtimes: ["deno"],
    path: "test/threads/tinypool.test.ts",
    reason:
      "on Deno 2.9.6 a tinypool 2.2 job never settles, this package loaded or not: a plain .mjs pool whose " +
      "module doubles a number had no reply after 10 s (workerpool and the postMessage worker pass there)",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/workerpool.test.ts",
    reason:
      'on Bun 1.4.5 a workerpool 10.0 job with workerType "thread" never settles, this package loaded or ' +
      "not: a plain .mjs pool whose worker adds two numbers had no reply after 10 s (tinypool and the " +
      "postMessage worker pass there)",
  },
  {
    runtimes: ["deno"],
    path: "test/faults/process-handlers.test.ts",
    reason:
      "declares its tests after an await inside an async describe(), which Deno's node:test does not wait " +
      "for, so none would run; test/runtimes/differences.test.ts pins these handlers on Deno",
  },
  {
    runtimes: NOT_NODE,
    path: "test/threads/process-pools.test.ts",
    reason:
      "its pools fork child processes of process.execPath with Node's flags (--conditions, --import tsx) " +
      "to load the TypeScript job modules; not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/faults/cli.test.ts",
    reason:
      "pins where Node 20 runs a command-line tool's callbacks (signal, exit and stdin listeners, " +
      "readline, AbortSignal.timeout) and starts its children with Node's flags (--import tsx): " +
      "not run there (docs/runtimes.md has the AbortSignal.timeout row for every runtime)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/serverless.test.ts",
    reason:
      "Lambda and Cloud Functions run handlers on Node. On Bun the Functions Framework calls " +
      "process.domain.bind (process.domain is null there) and serverless-http's in-process request has " +
      "no socket.once; on Deno node:http runs the unwrapped pin's listener in the root Context (the " +
      "node:http row of docs/runtimes.md), whose set reaches the file's later tests",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/nest-microservices.test.ts",
    reason:
      "runs a NestJS app compiled with experimentalDecorators, which it gets from tsx's TSX_TSCONFIG_PATH, " +
      "in a process started as process.execPath with Node's flags (--import tsx); not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/nest-http.test.ts",
    reason:
      "compiles the docs' NestJS code with tsc and runs it in a process started as process.execPath with " +
      "Node's flags (--import tsx --input-type=module -e); not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/express-middleware.test.ts",
    reason:
      "pins where pg's callback API calls back (the Context in which a connection's socket was opened) " +
      "under Node's AsyncLocalStorage, with sessions in PGlite served over TCP by pglite-socket; " +
      "not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/fastify-plugins.test.ts",
    reason:
      "pins where pg's callback API calls back (the Context in which a connection's socket was opened) " +
      "under Node's AsyncLocalStorage, with sessions in PGlite served over TCP by pglite-socket; " +
      "not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/child-processes.test.ts",
    reason:
      "forks children with Node's execArgv (--import tsx) and runs node:cluster; every test is " +
      "skipped there, which Bun's runner reports as no test at all",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/test-runners.test.ts",
    reason:
      "runs Vitest, jest (node --experimental-vm-modules) and node:test as Node child processes on " +
      "fixture suites: what an app's tests see under those runners, which run on Node; not run there",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/auto-instrumentations.test.ts",
    reason:
      "asserts the spans of OpenTelemetry's Node instrumentations: instrumentation-undici reads the " +
      "diagnostics channels of Node's own fetch (undici), which Bun's and Deno's fetch are not, and the " +
      "others patch what require() returns; not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/apm-sentry.test.ts",
    reason:
      "starts the app as a child of process.execPath with Node's flags (--import tsx, --import of the " +
      "file that calls Sentry.init), as Sentry's docs start an ES module app; @sentry/node is made for " +
      "Node, and its instrumentation reads Node's diagnostics channels; not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/apm-datadog.test.ts",
    reason:
      "starts the app as a child of process.execPath with Node's flags (--import tsx, --import " +
      "dd-trace/initialize.mjs, which registers Node's module hooks), as dd-trace's docs start an ES " +
      "module app; dd-trace is made for Node; not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/apm-elastic.test.ts",
    reason:
      "starts the app as a child of process.execPath with Node's flags (--import tsx, --require " +
      "elastic-apm-node/start.js), as Elastic's docs start an app; elastic-apm-node is made for Node; " +
      "not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/vite-ssr.test.ts",
    reason:
      "Vite's dev server loads the package it leaves external with Node's own import() of the file it " +
      "resolved, here the package's TypeScript source through tsx's loader, and Vite 8 is made for Node " +
      "(20.19 or later); not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/meta-frameworks.test.ts",
    reason:
      "builds a SvelteKit and an Astro app with their own builds in a child process of process.execPath " +
      "with Node's flags (--conditions, --import tsx), and imports the built servers, which load the " +
      "package's TypeScript source through tsx's loader; Vite 8 and Astro 5 are made for Node; not run " +
      "there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/nextjs.test.ts",
    reason:
      "builds a Next.js 16 app with `next build` in a child process of process.execPath and starts " +
      "`next start` and a custom server the same way (on Deno that binary is deno); Next 16 is made " +
      "for Node; not run there (not measured)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/nitro.test.ts",
    reason:
      "builds a Nitro 2 app with nitropack's own build in a child process of process.execPath and starts " +
      "its node-server output and nitropack dev the same way (on Deno that binary is deno); the dev server " +
      "runs the app in a node:worker_threads Worker; not run there (not measured)",
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/http2.test.ts",
    reason:
      "Deno 2.9.6's node:http2 kills the process under load (nghttp2's assertion `stream->closed_next == NULL` " +
      "in find_stream_on_goaway_func, or SIGSEGV): 5 of 12 runs, three at a time; the integrations over HTTP/2 " +
      "are not tested on Deno (test/runtimes/differences.test.ts still pins its req.stream listener)",
  },
];

export const DIFFERENCES: readonly Difference[] = [
  {
    runtimes: ["deno"],
    path: "test/integrations/dataloader.test.ts",
    test: "DataLoader under withContext > the default schedule: requests on their own sockets never share a batch",
    reason:
      "pins that Node's node:http calls each request's listener from its own socket's callback, with " +
      "process.nextTick callbacks run in between, so DataLoader's default schedule sends one request's " +
      "batch before the next request's loads; Deno 2.9.6's node:http called six requests' listeners " +
      "before the nextTick the first one queued, and all 40 requests' loads were one batch (2 of 2 runs)",
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/socket-io.test.ts",
    test: /^socket\.io 4 without withSocketContext > (polling|websocket): io\.use runs in /,
    reason:
      "pins where socket.io runs io.use with no integration: the Context of server.listen() (polling) " +
      "or the root (websocket) on Node; Deno's node:http and node:net call listeners in the root Context " +
      "(the node:http row of docs/runtimes.md), so the unwrapped sets land elsewhere (withSocketContext's " +
      "suites pass there)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/socket-io.test.ts",
    test: "socket.io-client 4 > websocket: listeners and ack callbacks run in the Context the client was made in",
    reason:
      "pins that socket.io-client's listeners run in the Context io() was called in, as Node's net socket " +
      "callbacks do; on Deno they run in the root Context (await emitWithAck still resumes in the caller's)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/message-brokers.test.ts",
    test: "an MQTT consumer on aedes > a plain message listener runs every message in the Context connect() was called in",
    reason:
      "pins that the mqtt client's message listener runs in the Context mqtt.connect() was called in, as " +
      "Node's net socket callbacks do; on Deno 2.9.6 it runs in the root Context (the first message started " +
      "with nothing set, and the connecting Context kept its value); the messages still share that one " +
      "Context (each later one started with another's values, 299 of 300 read another's id where they " +
      "acked), and the bind(handler, new Context()) tests pass there",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/http.test.ts",
    test: "contextvars/http withContext > a request sent with Expect: 100-continue reaches a 'checkContinue' listener",
    reason:
      "the test's second half pins that an unwrapped 'checkContinue' listener's sets land in the Context " +
      "of server.listen(); Deno's node:http calls a server's listeners in the root Context (the node:http " +
      "row of docs/runtimes.md), so they land there instead (the wrapped half passes)",
    pinnedBy: PINNED,
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/otel-node-sdk.test.ts",
    test: /(^the SDK's default propagators > .*\(plain fetch, |carry\.propagator\(\): a field set in A's handler reaches B through fetch)/,
    reason:
      "instrumentation-undici reads the diagnostics channels of Node's own fetch (undici), which Bun's and " +
      "Deno's fetch are not: it writes no headers there, so B receives no baggage at all (the http.get " +
      "tests beside them pass)",
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/http-clients.test.ts",
    test: /^undici 7 > (an interceptor|undici's retry interceptor)/,
    reason:
      "Bun resolves `undici` to its own built-in module, whose Pool has no compose() (nor close()), " +
      "so there are no interceptors to test; the file's request() on a Pool, fetch, node:http, axios " +
      "and got tests pass there",
  },
  {
    runtimes: ["node24", "node26", "deno"],
    path: "test/leaks/observability.test.ts",
    test: "contextPropagation keeps no finished Context > pinned (Node's fetch): ",
    reason:
      "pins that the fetch of Node 20 and 22 (undici 6) starts its timer wheel in the Context of the fetch " +
      "that finds it stopped, and keeps that Context; the fetch of Node 24 (undici 7) and 26 (undici 8) " +
      "and Deno's own keep none (the test beside it, that 20 fetches leave nothing alive, passes there)",
  },
  {
    runtimes: ["deno"],
    path: "test/leaks/requests.test.ts",
    test: "Node's Date-header cache pinned > the first response in a second holds its Context",
    reason:
      "pins Node's Date-header cache timer, which holds the first response of each second; Deno's " +
      "node:http has none, so that response's Context is let go at once, as every other one is " +
      "(the checks that nothing else holds it pass there)",
  },
  {
    runtimes: ["bun"],
    path: "test/leaks/requests.test.ts",
    test: "Node's Date-header cache pinned > the first response in a second holds its Context",
    reason:
      "pins Node's Date-header cache timer, which holds the first response of each second; Bun's " +
      "node:http has none, so that response's Context is let go at once, as every other one is. Bun's " +
      "collector scans the stack conservatively, so now and then the first response outlives the " +
      "collection that lets the second go, and the pin holds by chance (seen once in a .ci/run on " +
      "Bun 1.4.5): a pass there is not stale",
    mayPass: true,
  },
  {
    runtimes: ["bun"],
    path: "test/leaks/requests.test.ts",
    test: "Node's keep-alive pinned > ",
    reason:
      "pins that Node's idle keep-alive connection holds its last request's Context; Bun's holds its first " +
      "request's instead, and lets it go when the connection closes (seen on Bun 1.4.5: the test stops at " +
      "its check that only the last request is held, before the one after the close)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/core/propagation.test.ts",
    test: "MessagePort listeners > ",
    reason:
      "MessagePort listeners run in the creating Context on Node, in the registering one on Deno, in none on Bun",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/core/bind-emitter.test.ts",
    test: "bindEmitter on a node:http IncomingMessage > req.on('data'/'end') see each request's own run",
    reason:
      "also pins that an unbound 'data' listener sees the listen() Context; on Deno it sees none " +
      "(the bound listeners the test is about do see their run)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/tasks/cancellation.test.ts",
    test: "cancellation and unhandled rejections > ",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/package/imports.test.ts",
    test: "#carrier under a server bundle's conditions > ",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/tasks/task.test.ts",
    // The tests that read a child process's unhandled rejections.
    test: /^(Task: a PromiseLike > (a failed task nobody awaits is reported|unhandled: |default names count from Task-1)|currentTask\(\) and the Context slot, further > (cancelling the task behind run\(\)'s promise|a main that cancels its own task before returning))/,
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/tasks/timeout.test.ts",
    test: "timeout: unhandled rejections > ",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/bad-input/two-copies.test.ts",
    test: "two copies of the package > contextvars/http loads where globalThis is frozen",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/bad-input/two-copies.test.ts",
    test: "two copies of the package > contextvars/http loads where there is no WeakRef",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/tasks/abort-listeners.test.ts",
    test: "onAbort / offAbort > a callback that throws is reported as uncaught",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/http.test.ts",
    test: "contextvars/http withContext > under captureRejections, ",
    reason: NODE_CLI,
  },
  {
    runtimes: ["deno"],
    path: "test/leaks/requests.test.ts",
    test: "Node's keep-alive pinned > ",
    reason:
      "pins how Node's own http server keeps an idle keep-alive connection's Context; on Deno it depends on timing",
    mayPass: true,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/request-scope.test.ts",
    test: "the OpenTelemetry context is the one var a request takes from where it arrives > ",
    reason:
      "makes an OpenTelemetry context active where the server listens, for requests to arrive in; Deno's " +
      "node:http runs the request listener in no Context (test/integrations/otel-sdk.test.ts carries it " +
      "in from a Context entered around the listener, on every runtime)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/otel-sdk.test.ts",
    test: "200 concurrent requests > a server that listens inside a span makes it every request's parent",
    reason:
      "pins that a request takes the span active where the server listens; Deno's node:http runs the " +
      "request listener in no Context, so a request without a traceparent has no parent there " +
      "(docs/observability.md says so)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/http-upgrade.test.ts",
    test: "withUpgradeContext: failures, nesting, a raw upgrade > a send callback runs in the Context of the code that called send",
    reason:
      "Bun resolves `ws` to its own built-in implementation, which calls a send callback in the root " +
      "Context, not in the one that called send (docs/integrations.md says to bind it there)",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/koa.test.ts",
    test: "contextvars/koa contextMiddleware > a web ReadableStream body without withContext: ",
    reason:
      "pins where Node's web streams run the pulls that Koa's own wrapper stream makes (the Context the " +
      "server listens in); Bun runs them in the request's Context, Deno in none",
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/hono-streaming.test.ts",
    test: /^contextvars\/hono streamed responses \((node-server|fetch path)\) > a web ReadableStream body \(\/lazy\/(response|body)\) without withContext: /,
    reason:
      "pins where Node's web streams run the pulls that @hono/node-server's reads of a web ReadableStream " +
      "body make (the Context the server listens in); Bun runs them in the request's Context, Deno in none",
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/graphql.test.ts",
    test: "graphql-yoga 5 > behind Hono's contextMiddleware: subscription events over SSE see no request value",
    reason:
      "pins where Node's web streams run the pulls that @hono/node-server's reads of graphql-yoga's SSE " +
      "body make (outside the request, so each event steps the subscription there); Bun runs them in the " +
      "request's Context, and every event sees its own subscription's values",
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/graphql.test.ts",
    test: "Apollo's startStandaloneServer: no Context per request > a var set in `context` lands in the Context the server listens in",
    reason:
      "Deno's node:http runs the request listener in no Context (the node:http row of docs/runtimes.md), so " +
      "the set lands in the root Context instead of the listen() one; the queries still share it, and the " +
      "file's other standalone test, every query reading the user the last one set, passes there",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/hono.test.ts",
    test: "contextvars/hono contextMiddleware > malformed ids are replaced, well-formed ones pass",
    reason:
      "Bun's node:http answers with a chunked body where Node sends Content-Length, and sendRaw in " +
      "test/helpers/request-scenario.ts reads the raw body without decoding chunks",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/transfer.test.ts",
    test: /^(problemIn: what survives structured clone > names what would fail|Worker: what may cross > an uncloneable value throws|contextPool: what may cross > an uncloneable value rejects)/,
    reason:
      "pins V8's DataCloneError wording ('#<Object> could not be cloned.') inside our message; " +
      "JavaScriptCore's is 'The object can not be cloned.'",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/transfer.test.ts",
    test: "Worker: what may cross > Node's SocketAddress and BlockList cross",
    reason:
      "pins Node's clone of a SocketAddress; Bun's structured clone cannot clone one (DataCloneError), " +
      "so the Worker throws a TransferError naming the var, as for any value that cannot cross",
  },
  {
    runtimes: ["deno"],
    path: "test/threads/transfer.test.ts",
    test: "Worker: what may cross > Node's SocketAddress and BlockList cross",
    reason:
      "pins Node's clone of a SocketAddress and a BlockList; Deno's structured clone makes each a plain " +
      "object, so the Worker throws a TransferError naming the var, as for any value that cannot cross",
  },
  {
    runtimes: ["deno"],
    path: "test/threads/transfer.test.ts",
    test: "problemIn: what survives structured clone > plain objects and arrays of another realm are plain",
    reason:
      "makes a class named Object in a function that also uses the global Object; Deno's TypeScript " +
      "transpiler renames that class Object1, so the message names an Object1",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/transfer.test.ts",
    test: "contextPool: what may cross > a value nested deeper than postMessage can go",
    reason:
      "pins V8's serializer, which recurses and overflows its stack on a value 20 000 levels deep; " +
      "Bun's posts such a value, so the job runs and nothing rejects",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/pool.test.ts",
    test: "contextPool: jobs that fail > a job over piscina's resourceLimits rejects",
    reason:
      "pins V8's heap limit for a worker (resourceLimits, ERR_WORKER_OUT_OF_MEMORY); Bun applies " +
      "none, so the job's bounded allocation (about 128 MB) completes instead",
  },
  {
    runtimes: ["bun"],
    path: "test/tasks/timeout.test.ts",
    test: "timeout: its timer > ",
    reason:
      "counts live timers with process.getActiveResourcesInfo(), which lists no timers on Bun",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/pool.test.ts",
    test: "contextPool > a default pool that failed to be made is made at the next toThread",
    reason:
      "fails piscina's first import with a node:module register() resolve hook, which Bun does not run",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/pool.test.ts",
    test: "contextPool > toThread with no pool given: one default pool",
    reason:
      "counts the pools made through a node:module register() resolve hook, which Bun does not run",
  },
  {
    runtimes: ["bun"],
    path: "test/threads/postmessage.test.ts",
    test: "a long-lived worker taking jobs by postMessage > with no help: ",
    reason:
      "pins that a Worker's 'message' listener runs in the Context that made the Worker; Bun runs it in " +
      "none (the root Context), so the listener reads no requestId (the awaited replies still resume in " +
      "each caller's Context, and the contextPool tests pass there)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/faults/process-handlers.test.ts",
    test: /"unhandledRejection" handler sees/,
    reason: "Bun runs process 'unhandledRejection' listeners in no Context (the root Context)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/faults/process-handlers.test.ts",
    test: /(listener \/throw|seed \/seed): "uncaughtException" handler sees "server\.listen"$/,
    reason:
      "Bun reports a node:http request listener's synchronous throw to 'uncaughtException' in no " +
      "Context (the root Context), not in the server.listen() Context it runs the listener in",
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/logging-faults.test.ts",
    test: /rejection is logged/,
    reason:
      "Bun runs process 'unhandledRejection' listeners, winston's among them, in no Context (the root " +
      "Context), so a rejection's log line has no request fields",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["deno"],
    path: "test/integrations/logging-faults.test.ts",
    test: /a timer's throw is logged/,
    reason:
      "Deno runs process 'uncaughtException' listeners, winston's among them, in no Context (the root " +
      "Context), so a thrown error's log line has no request fields",
    pinnedBy: PINNED,
  },
  {
    runtimes: NODE_WITH_FRAME,
    frame: "on",
    path: "test/faults/process-handlers.test.ts",
    test: /(queueMicrotask|queueMicrotask, from a timer): "uncaughtException" handler sees the root Context$/,
    reason:
      "with AsyncContextFrame, a queueMicrotask callback's throw reaches 'uncaughtException' in the " +
      "callback's Context; with async_hooks (Node 20, frame off) in the root Context",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/http-upgrade.test.ts",
    test: /^(contextvars\/http withUpgradeContext > 200 concurrent connections: every message, timer, pong and close|withUpgradeContext: failures, nesting, a raw upgrade > a WebSocket's ping and error listeners)/,
    reason:
      "Bun resolves `ws` to its own built-in implementation, whose handleUpgrade hands the connection to " +
      "Bun's native server: a WebSocket's message, ping, pong and error events come from there, not from " +
      "the socket's data listener withUpgradeContext binds, and run in the root Context (the upgrade listener, seed, " +
      "handleUpgrade's callback and ws's headers event run in the upgrade's; the other tests of the file " +
      "pass); docs/integrations.md says to bind() those listeners on Bun",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/fastify-websocket.test.ts",
    test: /^contextPlugin with @fastify\/websocket > (60 concurrent connections|a second round)/,
    reason:
      "@fastify/websocket's ws is Bun's own, whose WebSocket takes its frames from Bun's native server, " +
      "not from the socket contextPlugin binds: message listeners run in the root Context (the hooks and " +
      "the route's handler run in the request's; ordinary requests beside them pass)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/express-websocket.test.ts",
    test: /^contextMiddleware with express-ws, upgrade listener under withUpgradeContext > (60 concurrent connections|a second round)/,
    reason:
      "express-ws's ws is Bun's own: message listeners run in the root Context although " +
      "withUpgradeContext bound the socket (the middleware and the route run in the request's, and " +
      "bind()-wrapped listeners see its values, as the file's last test pins)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/hono-websocket.test.ts",
    test: /^contextMiddleware with @hono\/node-ws > (60 concurrent connections|a second round|onError, called for a protocol error)/,
    reason:
      "@hono/node-ws's ws is Bun's own: onMessage and onError run in the root Context although the " +
      "middleware bound the upgrade's socket (the middleware, the route and onOpen run in the request's)",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/trpc.test.ts",
    test: "tRPC 11's WebSocket adapter on ws under withUpgradeContext, alone > ",
    reason:
      "tRPC's WebSocket adapter runs on Bun's own ws: its message listener runs in the root Context, so " +
      "calls and subscription events see none of the upgrade's values (createContext, called from the " +
      "connection listener, runs in the upgrade's); with bindEmitter, as the file's bound suite shows, they do",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/graphql-ws.test.ts",
    test: "graphql-ws on ws under withUpgradeContext > ",
    reason:
      "graphql-ws's useServer runs on Bun's own ws: its message listener runs in the root Context, so " +
      "onConnect, the context function and the subscriptions see none of the upgrade's values; with " +
      "bindEmitter, as the file's bound suite shows, each message sees them",
    pinnedBy: PINNED,
  },
  {
    runtimes: ["bun"],
    path: "test/integrations/koa-websocket.test.ts",
    test: /^contextMiddleware with koa-websocket(, upgrade listener under withUpgradeContext)? > /,
    reason:
      "koa-websocket's ws is Bun's own: message listeners run in the root Context although the " +
      "socket is bound (app.ws's middleware runs in the upgrade's)",
    pinnedBy: PINNED,
  },
  {
    runtimes: NOT_NODE,
    path: "test/integrations/typeorm-transactional.test.ts",
    test: "typeorm-transactional 0.5 beside contextvars, over PGlite > the cls-hooked driver: ",
    reason:
      "cls-hooked keeps its context through async_hooks.createHook's callbacks, which Bun and Deno do " +
      "not call: under typeorm-transactional's cls-hooked driver, runInTransaction's first set throws " +
      '"No context available. ns.run() or ns.bind() must be called first." (the fixture with the ' +
      "AsyncLocalStorage driver sees what it sees on Node, run directly on either); on Deno the fixture " +
      `is also started with Node's flags: ${NODE_CLI}`,
  },
];

function matchesPath(pattern: string, file: string): boolean {
  return pattern.endsWith("/") ? file.startsWith(pattern) : file === pattern;
}

/** The skip that applies to `file` on `runtime`, if any. */
export function skipOf(runtime: RuntimeId, file: string): Skip | undefined {
  return SKIPS.find((s) => s.runtimes.includes(runtime) && matchesPath(s.path, file));
}

/** The differences that apply to `file` there. */
export function differencesOf(where: Where, file: string): Difference[] {
  return DIFFERENCES.filter(
    (d) =>
      d.runtimes.includes(where.runtime) &&
      (d.frame === undefined || where.frame) &&
      d.path === file,
  );
}

/** Whether a test of that name is covered by the difference. */
export function covers(difference: Difference, testName: string): boolean {
  return typeof difference.test === "string"
    ? testName.startsWith(difference.test)
    : difference.test.test(testName);
}

/** Whether the test differs between AsyncContextFrame on and off by a listed difference. */
export function differsByFrame(file: string, testName: string): boolean {
  return DIFFERENCES.some((d) => d.frame === "on" && d.path === file && covers(d, testName));
}

/** Entries that name a file that does not exist (the list has gone stale). */
export function missingPaths(files: readonly string[]): string[] {
  return [...SKIPS, ...DIFFERENCES]
    .filter((e) => !files.some((f) => matchesPath(e.path, f)))
    .map((e) => e.path);
}
