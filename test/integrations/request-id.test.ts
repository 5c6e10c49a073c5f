import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LookupError } from "contextvars";
import { requestId } from "contextvars/http";
import { requestIdFor, resolveOptions } from "../../src/integrations/request-id.ts";
import { UUID } from "../helpers/http.ts";

/** The id the default options give a request that sends `incoming`. */
const acceptRequestId = (incoming: unknown): string =>
  requestIdFor(incoming, resolveOptions(undefined), undefined);

describe("requestId and requestIdFor", () => {
  it("requestId has no default: get() outside a request throws LookupError", () => {
    assert.equal(requestId.name, "requestId");
    assert.throws(() => requestId.get(), LookupError);
    assert.equal(requestId.get("-"), "-");
  });

  it("well-formed ids pass through unchanged", () => {
    for (const id of [
      "a",
      "req-42",
      "0af7651916cd43dd8448eb211c80319c",
      "a.b:c=d+e/f_g",
      "x".repeat(200),
    ]) {
      assert.equal(acceptRequestId(id), id);
    }
  });

  it("too long, control characters, newlines and other characters are replaced", () => {
    const bad = [
      "x".repeat(201),
      "",
      "abc\ndef",
      "abc\r\nX-Injected: 1",
      "ok\n2024-01-01 INFO forged log line",
      "nul\0byte",
      "tab\there",
      "del\x7f",
      "esc\x1b[31m",
      "a b",
      "one, two",
      '"quoted"',
      "<script>",
      "café",
      "🙂",
    ];
    const replaced = new Set<string>();
    for (const id of bad) {
      const got = acceptRequestId(id);
      assert.match(got, UUID, JSON.stringify(id));
      replaced.add(got);
    }
    assert.equal(replaced.size, bad.length, "a fresh UUID each time");
  });

  it("a missing or non-string header (an array of values) gets a fresh UUID", () => {
    assert.match(acceptRequestId(undefined), UUID);
    assert.match(acceptRequestId(null), UUID);
    assert.match(acceptRequestId(["a", "b"]), UUID);
  });

  it("resolveOptions fills defaults, lower-cases the header, and checks types", () => {
    const defaults = {
      header: "x-request-id",
      echo: true,
      trustHeader: true,
      generateId: undefined,
      seed: undefined,
    };
    assert.deepEqual(resolveOptions(undefined), defaults);
    assert.deepEqual(resolveOptions({}), defaults);
    const seen: string[] = [];
    const seed = (request: string) => {
      seen.push(request);
    };
    const generateId = () => "id";
    const resolved = resolveOptions({
      header: "X-Trace-Id",
      echo: false,
      trustHeader: false,
      generateId,
      seed,
    });
    assert.deepEqual(
      { ...resolved, seed: typeof resolved.seed },
      { header: "x-trace-id", echo: false, trustHeader: false, generateId, seed: "function" },
    );
    resolved.seed?.("req");
    assert.deepEqual(seen, ["req"], "the given seed is what runs");
    for (const options of [null, 42, { header: "" }, { header: "a b" }, { header: "x\n" }]) {
      assert.throws(() => resolveOptions(options as never), TypeError);
    }
    // Connection-specific names, which HTTP/2 refuses on a response (setHeader
    // would throw on every request), and Content-Length, in any case.
    for (const header of [
      "Connection",
      "keep-alive",
      "Proxy-Connection",
      "transfer-encoding",
      "Upgrade",
      "TE",
      "http2-settings",
      "Content-Length",
    ]) {
      assert.throws(() => resolveOptions({ header }), /options\.header.*connection-specific/);
    }
    assert.throws(() => resolveOptions({ echo: "no" as never }), /options\.echo/);
    assert.throws(() => resolveOptions({ seed: 1 as never }), /options\.seed/);
    assert.throws(() => resolveOptions({ trustHeader: "no" as never }), /options\.trustHeader/);
    assert.throws(() => resolveOptions({ generateId: "uuid" as never }), /options\.generateId/);
  });

  it("resolveOptions: each TypeError names the option and says what it expected", () => {
    const cases: [unknown, string][] = [
      [null, "Expected `options` to be an object, got `null` (null)"],
      [42, "Expected `options` to be an object, got `42` (number)"],
      [{ header: 42 }, "Expected `options.header` to be a header name, got `42` (number)"],
      [{ header: "a b" }, 'Expected `options.header` to be a header name, got `"a b"` (string)'],
      [{ echo: "no" }, 'Expected `options.echo` to be a boolean, got `"no"` (string)'],
      [{ trustHeader: 1 }, "Expected `options.trustHeader` to be a boolean, got `1` (number)"],
      [
        { generateId: "uuid" },
        'Expected `options.generateId` to be a function, got `"uuid"` (string)',
      ],
      [{ seed: 1 }, "Expected `options.seed` to be a function, got `1` (number)"],
    ];
    for (const [options, message] of cases) {
      assert.throws(() => resolveOptions(options as never), new TypeError(message));
    }
  });

  it("a seed that returns a promise throws a TypeError; its rejection is not left unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { seed } = resolveOptions<string>({
        // @ts-expect-error an async seed does not compile; from JavaScript it fails the request
        seed: async () => {
          await null;
          throw new Error("token invalid");
        },
      });
      assert.throws(
        () => seed?.("req"),
        (e) =>
          e instanceof TypeError &&
          /^Expected `options\.seed` to be synchronous \(set values that need an await in your own async middleware\), got `\[object Promise\]`/.test(
            e.message,
          ),
      );
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("a seed that returns a thenable that is not a native promise throws a TypeError too", () => {
    // biome-ignore lint/suspicious/noThenProperty: a foreign thenable on purpose
    const { seed } = resolveOptions<string>({ seed: () => ({ then() {} }) as never });
    assert.throws(() => seed?.("req"), TypeError);
  });

  it("requestIdFor: a well-formed incoming id, else generateId(request), else a UUID", () => {
    const request = { path: "/orders" };
    const seen: unknown[] = [];
    const options = resolveOptions({
      generateId: (r: typeof request) => {
        seen.push(r);
        return `gen${r.path}`;
      },
    });
    assert.equal(requestIdFor("in-1", options, request), "in-1");
    assert.deepEqual(seen, [], "not called when the incoming id is used");
    assert.equal(requestIdFor("bad id", options, request), "gen/orders");
    assert.equal(requestIdFor(undefined, options, request), "gen/orders");
    assert.deepEqual(seen, [request, request]);
    assert.match(requestIdFor("bad id", resolveOptions(undefined), request), UUID);
  });

  it("requestIdFor: a malformed generated id is replaced by a UUID; a throw propagates", () => {
    const replaced = new Set<string>();
    for (const wrong of ["", "a b", "line\nbreak", "x".repeat(201), 42, undefined, null]) {
      const options = resolveOptions({ generateId: () => wrong as string });
      const id = requestIdFor(undefined, options, {});
      assert.match(id, UUID, JSON.stringify(wrong));
      replaced.add(id);
    }
    assert.equal(replaced.size, 7, "a fresh UUID each time");
    const throwing = resolveOptions({
      generateId: () => {
        throw new RangeError("out of ids");
      },
    });
    assert.throws(() => requestIdFor(undefined, throwing, {}), RangeError);
  });
});
