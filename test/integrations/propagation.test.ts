/**
 * contextPropagation: ContextVars and the trace into headers and back, via
 * OpenTelemetry's W3C propagators; hostile input ignored without a throw.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type Baggage,
  baggageEntryMetadataFromString,
  context,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { Context, ContextVar } from "contextvars";
import {
  baggageField,
  ContextVarsContextManager,
  codecs,
  contextPropagation,
} from "contextvars/otel";
import { close, listen } from "../helpers/http.ts";

context.setGlobalContextManager(new ContextVarsContextManager().enable());

const user = new ContextVar<string>("user");
const attempt = new ContextVar<number>("attempt");
const admin = new ContextVar<boolean>("admin");
interface Cart {
  items: number;
}
const isCart = (v: unknown): v is Cart =>
  typeof v === "object" && v !== null && typeof (v as Cart).items === "number";
const cart = new ContextVar<Cart>("cart");

const carry = contextPropagation({
  "user.id": user,
  attempt: baggageField(attempt, codecs.integer),
  admin: baggageField(admin, codecs.boolean),
  cart: baggageField(cart, codecs.json(isCart)),
});

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;
const remote: SpanContext = {
  traceId: TRACE_ID,
  spanId: SPAN_ID,
  traceFlags: TraceFlags.SAMPLED,
  isRemote: true,
};

/** Runs fn in a fresh Context, as a request would. */
function fresh<T>(fn: () => T): T {
  return new Context().run(fn);
}

describe("inject", () => {
  /** What inject writes with user.id and attempt set, under `upstream` as the active baggage. */
  const injectFieldsUnder = (upstream: Baggage): Record<string, string> =>
    fresh(() => {
      user.set("local");
      attempt.set(2);
      return context.with(propagation.setBaggage(ROOT_CONTEXT, upstream), () =>
        carry.inject({} as Record<string, string>),
      );
    });

  it("writes the set vars as baggage and the active span as traceparent", () => {
    const headers = fresh(() => {
      user.set("alice");
      attempt.set(3);
      cart.set({ items: 2 });
      return context.with(trace.setSpanContext(ROOT_CONTEXT, remote), () =>
        carry.inject({} as Record<string, string>),
      );
    });
    assert.equal(headers.traceparent, TRACEPARENT);
    const baggage = new Map(
      (headers.baggage ?? "").split(",").map((pair) => pair.split("=") as [string, string]),
    );
    assert.equal(baggage.get("user.id"), "alice");
    assert.equal(baggage.get("attempt"), "3");
    assert.equal(decodeURIComponent(baggage.get("cart") ?? ""), '{"items":2}');
    assert.equal(baggage.has("admin"), false, "an unset var is not sent");
  });

  it("writes into a fetch Headers, and nothing when there is nothing to send", () => {
    const headers = fresh(() => {
      user.set("bob");
      return carry.inject(new Headers({ accept: "text/plain" }));
    });
    assert.equal(headers.get("baggage"), "user.id=bob");
    assert.equal(headers.get("accept"), "text/plain");
    assert.equal(headers.get("traceparent"), null);
    assert.deepEqual(
      fresh(() => carry.inject({})),
      {},
    );
  });

  it("passes other baggage entries through; a field's var overrides or removes its key", () => {
    const incoming = propagation.createBaggage({
      other: { value: "kept" },
      "user.id": { value: "upstream" },
      attempt: { value: "9" },
    });
    const headers = fresh(() => {
      user.set("local");
      return context.with(propagation.setBaggage(ROOT_CONTEXT, incoming), () =>
        carry.inject({} as Record<string, string>),
      );
    });
    assert.deepEqual((headers.baggage ?? "").split(",").sort(), ["other=kept", "user.id=local"]);
  });

  it("upstream baggage at the W3C limits does not crowd out the fields: they are sent, within the limits, in place of the last upstream members", () => {
    const entries = (count: number, value: string) =>
      Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${i}`, { value }]));
    const members = propagation.createBaggage(entries(180, "v"));
    // 90 members of 89 or 90 bytes, with their commas 8179 bytes.
    const bytes = propagation.createBaggage(entries(90, "x".repeat(90 - 4)));
    const setter = {
      set(carrier: Record<string, string>, key: string, value: string) {
        carrier[key] = value;
      },
    };
    for (const upstream of [members, bytes]) {
      const [viaInject, viaPropagator] = fresh(() => {
        user.set("local");
        attempt.set(2);
        const active = propagation.setBaggage(ROOT_CONTEXT, upstream);
        const written: Record<string, string> = {};
        carry.propagator().inject(active, written, setter);
        return [context.with(active, () => carry.inject({} as Record<string, string>)), written];
      });
      for (const headers of [viaInject, viaPropagator]) {
        const baggage = headers?.baggage ?? "";
        const sent = baggage.split(",");
        assert.ok(sent.includes("user.id=local"), "the set field is sent");
        assert.ok(sent.includes("attempt=2"));
        assert.ok(sent.length <= 180 && baggage.length <= 8192);
        assert.ok(sent.length >= Math.min(180, upstream.getAllEntries().length) - 2);
      }
    }
  });

  it("upstream baggage past 8192 bytes only once percent-encoded, or with its metadata, does not crowd out the fields either", () => {
    // 90 members of 13 characters that encode to 95 bytes ("€" is %E2%82%AC), 8549 in all.
    const encoded = propagation.createBaggage(
      Object.fromEntries(
        Array.from({ length: 90 }, (_, i) => [`k${i + 10}`, { value: "€".repeat(10) }]),
      ),
    );
    // Two members of 3 characters whose metadata makes them 4096 and 4095 bytes: 8192 in all.
    const described = propagation.createBaggage({
      a: { value: "v", metadata: baggageEntryMetadataFromString("m".repeat(4092)) },
      b: { value: "v", metadata: baggageEntryMetadataFromString("m".repeat(4091)) },
    });
    for (const upstream of [encoded, described]) {
      const headers = injectFieldsUnder(upstream);
      const baggage = headers.baggage ?? "";
      const sent = baggage.split(",");
      assert.ok(sent.includes("user.id=local"), "the set field is sent");
      assert.ok(sent.includes("attempt=2"));
      assert.ok(baggage.length <= 8192 && sent.length >= 3);
    }
  });

  it("fills the 8192 bytes as OpenTelemetry's inject does once the fields are in: a member over 4096 bytes, or one past what is left, is skipped and a later one that fits is kept", () => {
    const member = (bytes: number) => ({ value: "x".repeat(bytes - 2) }); // "k=" and the value
    const upstream = propagation.createBaggage({
      z: member(4097),
      a: member(4096),
      b: member(4072), // one byte more than is left after the fields and a
      c: member(4071), // exactly what is left
    });
    const baggage = injectFieldsUnder(upstream).baggage ?? "";
    assert.deepEqual(
      baggage.split(",").map((pair) => pair.split("=")[0]),
      ["user.id", "attempt", "a", "c"],
    );
    assert.equal(baggage.length, 8192);
  });

  it("replaces a traceparent already in the headers, in a fetch Headers as in an object, with the active span's", () => {
    const stale = `00-${"1".repeat(32)}-${"2".repeat(16)}-01`;
    for (const given of [new Headers({ traceparent: stale }), { traceparent: stale }]) {
      const headers = fresh(() =>
        context.with(trace.setSpanContext(ROOT_CONTEXT, remote), () => carry.inject(given)),
      );
      const sent = headers instanceof Headers ? headers.get("traceparent") : headers.traceparent;
      assert.equal(sent, TRACEPARENT);
    }
  });

  it("replaces a traceparent an object holds under another spelling: one header goes out", () => {
    const stale = `00-${"1".repeat(32)}-${"2".repeat(16)}-01`;
    for (const name of ["Traceparent", "TRACEPARENT", "TraceParent"]) {
      const headers = fresh(() =>
        context.with(trace.setSpanContext(ROOT_CONTEXT, remote), () =>
          carry.inject({ accept: "*/*", [name]: stale } as Record<string, string>),
        ),
      );
      assert.deepEqual(headers, { accept: "*/*", traceparent: TRACEPARENT }, name);
    }
    // With no span active nothing is written, and the caller's header stays as it is.
    assert.deepEqual(
      fresh(() => carry.inject({ Traceparent: stale })),
      { Traceparent: stale },
    );
  });

  it("writes traceparent beside a baggage header the caller wrote", () => {
    const headers = fresh(() => {
      user.set("local");
      return context.with(trace.setSpanContext(ROOT_CONTEXT, remote), () =>
        carry.inject({ baggage: "tenant=acme" } as Record<string, string>),
      );
    });
    assert.equal(headers.traceparent, TRACEPARENT);
    assert.deepEqual(headers.baggage?.split(",").sort(), ["tenant=acme", "user.id=local"]);
  });

  it("merges a baggage header the caller wrote, as upstream baggage: its members pass through, a field's var overrides or removes its key", () => {
    const members = (value: string | string[] | number | undefined) =>
      String(value ?? "")
        .split(",")
        .sort();
    const incoming = propagation.createBaggage({ upstream: { value: "u" } });
    const headers = fresh(() => {
      user.set("local");
      return context.with(propagation.setBaggage(ROOT_CONTEXT, incoming), () =>
        carry.inject({
          accept: "text/plain",
          baggage: "tenant=acme,user.id=caller,attempt=7,upstream=caller",
        } as Record<string, string>),
      );
    });
    // The caller's members win over the active context's; the vars over both.
    assert.deepEqual(members(headers.baggage), ["tenant=acme", "upstream=caller", "user.id=local"]);
    assert.equal(headers.accept, "text/plain");

    const fetchHeaders = fresh(() => {
      user.set("local");
      return carry.inject(new Headers({ baggage: "tenant=acme;prop=1" }));
    });
    assert.deepEqual(members(fetchHeaders.get("baggage") ?? ""), [
      "tenant=acme;prop=1",
      "user.id=local",
    ]);
  });

  it("a caller's header under another spelling, or repeated, still makes one baggage header", () => {
    const headers = fresh(() => {
      user.set("local");
      return carry.inject({ Baggage: ["tenant=acme", "region=eu"] } as Record<string, string[]>);
    });
    assert.deepEqual(Object.keys(headers), ["baggage"]);
    assert.deepEqual(String(headers.baggage).split(",").sort(), [
      "region=eu",
      "tenant=acme",
      "user.id=local",
    ]);
    // A spelling left undefined (as a spread of defaults leaves it) is no header.
    const spread = fresh(() => {
      user.set("local");
      return carry.inject({ Baggage: undefined, baggage: "tenant=acme" });
    });
    assert.deepEqual(String(spread.baggage).split(",").sort(), ["tenant=acme", "user.id=local"]);
  });

  it("with nothing to add, a caller's header is kept; one whose members were all unset fields goes", () => {
    assert.deepEqual(
      fresh(() => carry.inject({ baggage: "tenant=acme" })),
      { baggage: "tenant=acme" },
    );
    assert.deepEqual(
      fresh(() => carry.inject({ BAGGAGE: "user.id=stale,attempt=2", accept: "*/*" })),
      { accept: "*/*" },
    );
  });

  it("a caller's header it cannot read (past the W3C limits, no member) is kept when nothing is written, replaced when something is", () => {
    const oversized = Array.from({ length: 181 }, (_, i) => `k${i}=v`).join(",");
    for (const given of [oversized, "no members here"]) {
      assert.deepEqual(
        fresh(() => carry.inject({ baggage: given })),
        { baggage: given },
      );
      const headers = fresh(() => {
        user.set("local");
        return carry.inject({ baggage: given });
      });
      assert.deepEqual(headers, { baggage: "user.id=local" });
      // Baggage of the active context is written over it too, with no field set.
      const upstream = propagation.createBaggage({ tenant: { value: "acme" } });
      assert.deepEqual(
        fresh(() =>
          context.with(propagation.setBaggage(ROOT_CONTEXT, upstream), () =>
            carry.inject({ baggage: given }),
          ),
        ),
        { baggage: "tenant=acme" },
      );
    }
  });

  it("leaves out a value its codec cannot encode, without throwing", () => {
    const cyclic = { items: 1 } as Cart & { self?: unknown };
    cyclic.self = cyclic;
    const headers = fresh(() => {
      user.set("carol");
      cart.set(cyclic);
      return carry.inject({} as Record<string, string>);
    });
    assert.equal(headers.baggage, "user.id=carol");
  });

  it("percent-encodes values that are not baggage-safe, and they come back as they were", () => {
    const odd = 'a b,c;d=e"ü\\';
    const headers = fresh(() => {
      user.set(odd);
      return carry.inject({} as Record<string, string>);
    });
    assert.match(headers.baggage ?? "", /^user\.id=[A-Za-z0-9%._~*'()!-]+$/);
    assert.equal(
      fresh(() => carry.extract(headers).values["user.id"]),
      odd,
    );
  });
});

describe("inject: values that cannot travel are left out, never a throw", () => {
  const baggageOf = (headers: Record<string, string>): Map<string, string> =>
    new Map(
      (headers.baggage ?? "")
        .split(",")
        .filter(Boolean)
        .map((pair) => pair.split("=") as [string, string]),
    );

  it("a string with a lone surrogate (cut inside a pair) is not sent; the other fields are", () => {
    const headers = fresh(() => {
      user.set("😀 party".slice(1)); // "\uDE00 party"
      attempt.set(2);
      return carry.inject({} as Record<string, string>);
    });
    assert.deepEqual([...baggageOf(headers)], [["attempt", "2"]]);
  });

  it("a field over 4096 bytes once percent-encoded is not sent, nor fields past 8192 bytes together; a later field that fits still is, by inject and by the propagator; extract skips such a member", () => {
    const [a, b, c, d] = ["a", "b", "c", "d"].map((name) => new ContextVar<string>(name));
    const large = contextPropagation({ a, b, c, d, "user.id": user });
    const setter = {
      set(carrier: Record<string, string>, key: string, value: string) {
        carrier[key] = value;
      },
    };
    const sent = (values: [ContextVar<string>, string][]) =>
      fresh(() => {
        for (const [v, value] of values) v.set(value);
        const written: Record<string, string> = {};
        large.propagator().inject(ROOT_CONTEXT, written, setter);
        return [large.inject({} as Record<string, string>), written].map((headers) => [
          ...baggageOf(headers).keys(),
        ]);
      });
    // "user.id=" and 4088 characters make 4096 bytes; 455 "日" encode to 4095 bytes (%E6%97%A5).
    assert.deepEqual(
      sent([
        [user, "x".repeat(4088)],
        [a, "日".repeat(455)],
      ]),
      [["user.id"], ["user.id"]],
    );
    assert.equal(
      fresh(() => {
        user.set("x".repeat(4088));
        return carry.extract(carry.inject({} as Record<string, string>)).values["user.id"]?.length;
      }),
      4088,
    );
    // One that arrives over 4096 bytes is skipped by OpenTelemetry's parser; the rest arrive.
    assert.deepEqual(
      fresh(() => ({
        ...carry.extract({ baggage: `user.id=${"x".repeat(4089)},attempt=1` }).values,
      })),
      { attempt: 1 },
    );
    // a and b take 8005 bytes: c (302 more) does not fit, d (102 more) does.
    assert.deepEqual(
      sent([
        [a, "x".repeat(4000)],
        [b, "x".repeat(4000)],
        [c, "x".repeat(300)],
        [d, "x".repeat(100)],
      ]),
      [
        ["a", "b", "d"],
        ["a", "b", "d"],
      ],
    );
  });

  it("a ContextVar<string | undefined> is a bare field: sent when a string, not sent when undefined, set by extractInto", () => {
    const tenant = new ContextVar<string | undefined>("tenant", { default: undefined });
    const optional = contextPropagation({ tenant, "user.id": user });
    const sent = (value: string | undefined) =>
      fresh(() => {
        tenant.set(value);
        user.set("u1");
        return [...baggageOf(optional.inject({} as Record<string, string>))];
      });
    assert.deepEqual(sent("acme"), [
      ["tenant", "acme"],
      ["user.id", "u1"],
    ]);
    assert.deepEqual(sent(undefined), [["user.id", "u1"]]);
    // From the default alone, too: nothing to send.
    assert.deepEqual(
      fresh(() => [...baggageOf(optional.inject({} as Record<string, string>))]),
      [],
    );
    assert.equal(
      fresh(() => {
        optional.extractInto({ baggage: "tenant=acme" });
        return tenant.get();
      }),
      "acme",
    );
  });

  it('"" is not sent, as OpenTelemetry\'s parser would drop it and it would arrive unset', () => {
    const headers = fresh(() => {
      user.set("");
      attempt.set(0);
      return carry.inject({} as Record<string, string>);
    });
    assert.deepEqual([...baggageOf(headers)], [["attempt", "0"]]);
    assert.equal(
      fresh(() => carry.extract(headers).values["user.id"]),
      undefined,
    );
  });

  it("baggage other code put in the context that cannot be written: no baggage, the trace still goes", () => {
    const bad = propagation.createBaggage({ note: { value: "\uD800" } });
    const headers = fresh(() =>
      context.with(propagation.setBaggage(trace.setSpanContext(ROOT_CONTEXT, remote), bad), () =>
        carry.inject({} as Record<string, string>),
      ),
    );
    assert.equal(headers.traceparent, TRACEPARENT);
    assert.equal(headers.baggage, undefined);
  });

  it("an entry other code put in the context that cannot be written leaves out that entry only: the fields and the rest go", () => {
    const upstream = propagation.createBaggage({
      note: { value: "\uD800" },
      "k\uDC00": { value: "v" },
      tenant: { value: "acme" },
    });
    const sent = (given?: string) =>
      fresh(() => {
        user.set("alice");
        return context.with(propagation.setBaggage(ROOT_CONTEXT, upstream), () => {
          const viaInject = carry.inject(
            (given === undefined ? {} : { baggage: given }) as Record<string, string>,
          );
          const viaPropagator: Record<string, string> = {};
          carry.propagator().inject(context.active(), viaPropagator, {
            set: (carrier, key, value) => {
              carrier[key] = value;
            },
          });
          return [[...baggageOf(viaInject)], [...baggageOf(viaPropagator)]];
        });
      });
    const expected = [
      ["tenant", "acme"],
      ["user.id", "alice"],
    ];
    assert.deepEqual(sent(), [expected, expected]);
    assert.deepEqual(sent("region=eu")[0], [
      ["tenant", "acme"],
      ["region", "eu"],
      ["user.id", "alice"],
    ]);
  });
});

describe("extract and extractInto", () => {
  it("decodes each field with its codec: values arrive typed", () => {
    const { values, context: extracted } = fresh(() =>
      carry.extract({
        traceparent: TRACEPARENT,
        baggage: "user.id=alice,attempt=2,admin=true,cart=%7B%22items%22%3A5%7D",
      }),
    );
    const typed: { attempt?: number; admin?: boolean; cart?: Cart; "user.id"?: string } = values;
    assert.deepEqual(
      { ...typed },
      { "user.id": "alice", attempt: 2, admin: true, cart: { items: 5 } },
    );
    assert.equal(trace.getSpanContext(extracted)?.traceId, TRACE_ID);
    assert.equal(trace.getSpanContext(extracted)?.isRemote, true);
  });

  it("extractInto sets the vars in the current Context and makes the trace active", () => {
    fresh(() => {
      carry.extractInto(
        new Headers({ traceparent: TRACEPARENT, baggage: "user.id=dave,attempt=7" }),
      );
      assert.equal(user.get(), "dave");
      assert.equal(attempt.get(), 7);
      assert.equal(admin.get("unset"), "unset");
      assert.equal(trace.getActiveSpan()?.spanContext().spanId, SPAN_ID);
      assert.equal(propagation.getActiveBaggage()?.getEntry("user.id")?.value, "dave");
    });
    assert.equal(trace.getActiveSpan(), undefined, "nothing outside the request's Context");
    assert.equal(user.get("unset"), "unset");
  });

  it("from a fetch Headers, the trace arrives without baggage and the baggage without a trace", () => {
    const traceOnly = fresh(() => carry.extract(new Headers({ traceparent: TRACEPARENT })));
    assert.equal(trace.getSpanContext(traceOnly.context)?.spanId, SPAN_ID);
    assert.deepEqual({ ...traceOnly.values }, {});
    const baggageOnly = fresh(() => carry.extract(new Headers({ baggage: "user.id=ivy" })));
    assert.equal(trace.getSpanContext(baggageOnly.context), undefined);
    assert.deepEqual({ ...baggageOnly.values }, { "user.id": "ivy" });
  });

  it("extractInto keeps a span already active (as instrumentation-http's) and takes the baggage", () => {
    const serverSpan: SpanContext = { ...remote, spanId: "1111111111111111", isRemote: false };
    fresh(() =>
      context.with(trace.setSpanContext(ROOT_CONTEXT, serverSpan), () => {
        carry.extractInto({ traceparent: TRACEPARENT, baggage: "user.id=hana" });
        assert.equal(trace.getActiveSpan()?.spanContext().spanId, "1111111111111111");
        assert.equal(propagation.getActiveBaggage()?.getEntry("user.id")?.value, "hana");
        assert.equal(user.get(), "hana");
      }),
    );
  });

  it("extract, unlike extractInto, takes the incoming trace over a span already active", () => {
    const serverSpan: SpanContext = { ...remote, spanId: "1111111111111111", isRemote: false };
    const extracted = fresh(() =>
      context.with(trace.setSpanContext(ROOT_CONTEXT, serverSpan), () =>
        carry.extract({ traceparent: TRACEPARENT }),
      ),
    );
    assert.equal(trace.getSpanContext(extracted.context)?.spanId, SPAN_ID);
  });

  it("a value its codec rejects is left out; the others still arrive", () => {
    const values = fresh(
      () =>
        carry.extract({
          baggage: "user.id=erin,attempt=1.5,admin=yes,cart=%7B%22items%22%3A%22x%22%7D",
        }).values,
    );
    assert.deepEqual({ ...values }, { "user.id": "erin" });
    assert.deepEqual(
      { ...fresh(() => carry.extract({ baggage: "attempt=,cart=%7Bnot-json" }).values) },
      {},
    );
  });

  // [what, headers, the user the request ends up with]
  const hostile: [string, Record<string, string>, string][] = [
    [
      "an invalid traceparent",
      { traceparent: "00-zzzz-b7ad6b7169203331-01", baggage: "user.id=ok" },
      "ok",
    ],
    [
      "an all-zero trace id",
      { traceparent: `00-${"0".repeat(32)}-${SPAN_ID}-01`, baggage: "user.id=ok" },
      "ok",
    ],
    ["version 00 with extra fields", { traceparent: `${TRACEPARENT}-extra` }, "unset"],
    ["a traceparent with CR/LF", { traceparent: `${TRACEPARENT}\r\nx-evil: 1` }, "unset"],
    ["malformed percent-encoding", { baggage: "user.id=%E0%A4%A,attempt=%ZZ" }, "unset"],
    ["members without '='", { baggage: "user.id,,;;,=,attempt" }, "unset"],
    ["control characters", { baggage: "user.id=a\u0000b,attempt=1" }, "unset"],
    ["non-ASCII bytes", { baggage: "user.id=héllo" }, "unset"],
    [
      "181 members",
      {
        baggage: Array.from({ length: 181 }, (_, i) => `k${i}=v`)
          .concat("user.id=x")
          .join(","),
      },
      "unset",
    ],
    ["more than 8192 bytes", { baggage: `user.id=${"x".repeat(8200)}` }, "unset"],
    ["a 4097-byte member", { baggage: `user.id=${"x".repeat(4097)}` }, "unset"],
    [
      "prototype keys",
      { baggage: "__proto__=polluted,constructor=x,prototype=y,toString=z,user.id=ok" },
      "ok",
    ],
  ];
  for (const [name, headers, expected] of hostile) {
    it(`ignores ${name} without throwing`, () => {
      const result = fresh(() => {
        const extracted = carry.extractInto(headers);
        return { extracted, user: user.get("unset"), span: trace.getActiveSpan() };
      });
      assert.equal(trace.getSpanContext(result.extracted), undefined, "no trace parent");
      assert.equal(result.span, undefined, "no active span");
      assert.equal(result.user, expected);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal(Object.getPrototypeOf({}), Object.prototype);
    });
  }

  it("a carrier that throws when read carries nothing, and extraction does not throw", () => {
    const unreadable = [
      new Proxy(
        {},
        {
          get() {
            throw new Error("unreadable");
          },
        },
      ),
      {
        traceparent: TRACEPARENT,
        get baggage(): string {
          throw new Error("unreadable");
        },
      },
    ];
    for (const headers of unreadable) {
      const result = fresh(() => {
        const extracted = carry.extractInto(headers);
        return { extracted, user: user.get("unset"), span: trace.getActiveSpan() };
      });
      assert.equal(trace.getSpanContext(result.extracted), undefined, "no trace parent");
      assert.equal(result.span, undefined, "no active span");
      assert.equal(result.user, "unset");
    }
  });

  it("keeps a valid traceparent beside an oversized tracestate, which OpenTelemetry trims", () => {
    const extracted = fresh(() =>
      carry.extractInto({ traceparent: TRACEPARENT, tracestate: `a=${"b".repeat(100_000)}` }),
    );
    const span = trace.getSpanContext(extracted);
    assert.equal(span?.traceId, TRACE_ID);
    assert.ok((span?.traceState?.serialize() ?? "").length <= 512);
  });

  it("reads baggage with a tab as optional whitespace after a comma", () => {
    const { values } = fresh(() => carry.extract({ baggage: "user.id=alice,\tattempt=2" }));
    assert.deepEqual({ ...values }, { "user.id": "alice", attempt: 2 });
  });

  it("joins a duplicated baggage header, as Node keeps repeated headers", () => {
    const values = fresh(() => carry.extract({ baggage: ["user.id=twice", "attempt=1"] }).values);
    assert.deepEqual({ ...values }, { "user.id": "twice", attempt: 1 });
  });

  it("drops oversized or malformed baggage whole, and keeps a header at the limits", () => {
    const at180 = Array.from({ length: 179 }, (_, i) => `k${i}=v`).concat("user.id=edge");
    assert.equal(
      fresh(() => carry.extract({ baggage: at180.join(",") }).values["user.id"]),
      "edge",
    );
    const over = [...at180, "k999=v"].join(",");
    assert.equal(
      fresh(() => carry.extract({ baggage: over }).values["user.id"]),
      undefined,
    );
    const long = `user.id=long,pad=${"x".repeat(8192 - 17 - 1)}`;
    assert.equal(long.length, 8191);
    assert.equal(
      fresh(() => carry.extract({ baggage: long }).values["user.id"]),
      "long",
    );
    assert.equal(
      fresh(() => carry.extract({ baggage: `${long}x` }).values["user.id"]),
      "long",
      "8192 bytes is at the limit",
    );
    assert.equal(
      fresh(() => carry.extract({ baggage: `${long}xx` }).values["user.id"]),
      undefined,
    );
    // Repeated headers count as one list: 90 + 91 members are 181.
    const members = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => `k${from + i}=v`).join(",");
    const split = [members(0, 89).concat(",user.id=split"), members(100, 91)];
    assert.equal(
      fresh(() => carry.extract({ baggage: split }).values["user.id"]),
      undefined,
    );
    assert.equal(
      fresh(() => carry.extract({ baggage: [split[0] ?? "", members(100, 90)] }).values["user.id"]),
      "split",
    );
  });

  it("fields named like prototype keys are plain keys: nothing is polluted", () => {
    assert.throws(() => contextPropagation({ ["__proto__"]: user }), /not __proto__/);
    const weird = contextPropagation({
      constructor: baggageField(attempt, codecs.integer),
      hasOwnProperty: user,
    });
    const found = fresh(() => {
      const { values } = weird.extract({ baggage: "__proto__=x,constructor=5,toString=z" });
      weird.extractInto({ baggage: "__proto__=x,constructor=5,hasOwnProperty=h" });
      return { values, user: user.get(), attempt: attempt.get() };
    });
    assert.equal(Object.getPrototypeOf(found.values), null);
    assert.deepEqual(Object.keys(found.values), ["constructor"]);
    assert.equal(found.user, "h");
    assert.equal(found.attempt, 5);
    assert.equal(({} as Record<string, unknown>).x, undefined);
    assert.equal(Object.getPrototypeOf({}), Object.prototype);
  });

  it("reads only own header keys", () => {
    const inherited = Object.create({ baggage: "user.id=from-prototype" }) as Record<
      string,
      string
    >;
    assert.equal(
      fresh(() => carry.extract(inherited).values["user.id"]),
      undefined,
    );
  });

  it("without a ContextVarsContextManager as the global manager, sets the vars and returns the trace", () => {
    const saved = new ContextVarsContextManager(); // made but not global: must not be used
    context.disable();
    try {
      const extracted = fresh(() => {
        const ctx = carry.extractInto({ traceparent: TRACEPARENT, baggage: "user.id=frank" });
        assert.equal(user.get(), "frank");
        assert.equal(trace.getActiveSpan(), undefined);
        return ctx;
      });
      assert.equal(trace.getSpanContext(extracted)?.spanId, SPAN_ID);
      assert.ok(saved);
    } finally {
      context.setGlobalContextManager(new ContextVarsContextManager().enable());
    }
  });
});

describe("extractInto makes the trace active in the global manager", () => {
  // Each in a fresh process: which managers exist, and in what order, is process-wide.
  const run = async (scenario: string): Promise<string> => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--conditions=contextvars-source",
        "--import",
        "tsx",
        fileURLToPath(new URL("./fixtures/extract-into-manager.ts", import.meta.url)),
        scenario,
      ],
      { timeout: 30_000 },
    );
    return stdout.trim();
  };

  for (const scenario of [
    "a manager made after the global one",
    "a manager made before the global one",
    "a manager made before the global one, which is never enabled",
    "the global manager disabled and replaced, without enable()",
  ]) {
    it(`with ${scenario}`, async () => {
      assert.equal(await run(scenario), SPAN_ID);
    });
  }
});

describe("contextPropagation(fields)", () => {
  it("rejects keys that are not baggage keys and fields that are not vars", () => {
    assert.throws(() => contextPropagation({ "bad key": user }), TypeError);
    assert.throws(() => contextPropagation({ "": user }), TypeError);
    assert.throws(() => contextPropagation({ ok: "user" as never }), /Expected `fields\["ok"\]`/);
    assert.throws(() => contextPropagation(null as never), TypeError);
    assert.throws(() => baggageField(attempt, {} as never), TypeError);
    assert.throws(() => carry.wrapFetch(42 as never), TypeError);
    // Passes instanceof, but is no var: refused here, not at the first request.
    const fake = Object.create(ContextVar.prototype) as ContextVar<string>;
    assert.throws(() => contextPropagation({ fake }), /Expected `fields\["fake"\]`/);
    assert.throws(
      () => baggageField(fake, codecs.string),
      new TypeError("Expected `v` to be a ContextVar, got `[object ContextVar]` (object)"),
    );
    // A field that only looks like a baggageField is refused by contextPropagation itself.
    assert.throws(
      () => contextPropagation({ fake: { var: fake, codec: codecs.string } as never }),
      /Expected `fields\["fake"\]`/,
    );
    // As baggageField, a codec needs both: one without encode could never send its var.
    const decodeOnly = { var: user, codec: { decode: (text: string) => text } };
    assert.throws(
      () => contextPropagation({ "user.id": decodeOnly as never }),
      /Expected `fields\["user.id"\]`/,
    );
    assert.throws(() => carry.inject(undefined as never), /Expected `headers`/);
  });

  it("its TypeErrors say which argument or field is wrong and what was expected", () => {
    const cases: [unknown, string][] = [
      [42, "Expected `fields` to be an object of ContextVars, got `42` (number)"],
      [null, "Expected `fields` to be an object of ContextVars, got `null` (null)"],
      [
        [user],
        "Expected `fields` to be an object of ContextVars keyed by baggage key (`{ user }`), not an array, got `[object Array]` (object)",
      ],
      [
        { "bad key": user },
        'Expected each key of `fields` to be a baggage key (an HTTP token, not __proto__), got `"bad key"` (string)',
      ],
      [
        { ok: undefined },
        'Expected `fields["ok"]` to be a ContextVar or a baggageField, got `undefined` (undefined)',
      ],
      [
        { ok: { var: user } },
        'Expected `fields["ok"]` to be a ContextVar or a baggageField, got `[object Object]` (object)',
      ],
    ];
    for (const [fields, message] of cases) {
      assert.throws(() => contextPropagation(fields as never), new TypeError(message));
    }
    for (const headers of [null, undefined]) {
      assert.throws(
        () => carry.inject(headers as never),
        new TypeError(
          `Expected \`headers\` to be a Headers or an object, got \`${headers}\` (${headers})`,
        ),
      );
    }
    // node:http's and undici's array forms, fetch's pairs, a Map: each would take the
    // headers as properties it never sends.
    for (const headers of [["accept", "*/*"], [["accept", "*/*"]], new Map()]) {
      const kind = Object.prototype.toString.call(headers);
      assert.throws(
        () => carry.inject(headers as never),
        new TypeError(
          `Expected \`headers\` to be a Headers or an object of header names, not an iterable, got \`${kind}\` (object)`,
        ),
      );
    }
    assert.throws(
      () => carry.wrapFetch(42 as never),
      new TypeError("Expected `fetchFn` to be a function, got `42` (number)"),
    );
  });

  it("codecs.matching and codecs.json refuse what is not a RegExp or a function, at once", () => {
    // Taken silently, such a codec would reject every value at every request.
    assert.throws(
      () => codecs.matching("^[a-z]+$" as never),
      new TypeError('Expected `pattern` to be a RegExp, got `"^[a-z]+$"` (string)'),
    );
    assert.throws(() => codecs.json(undefined as never), /Expected `isT` to be a function/);
  });

  it("codecs reject what they cannot read, with an error that says why", () => {
    const notFinite = new RangeError("not a finite number");
    const notSafe = new RangeError("not a safe integer");
    assert.throws(() => codecs.number.decode("NaN"), notFinite);
    assert.throws(() => codecs.number.decode(" "), notFinite);
    // integer reads as number does first: a blank value is no 0.
    for (const blank of ["", " "]) assert.throws(() => codecs.integer.decode(blank), notFinite);
    assert.throws(() => codecs.integer.decode("1e400"), notFinite);
    assert.throws(() => codecs.integer.decode("1.5"), notSafe);
    assert.equal(codecs.integer.decode("-12"), -12);
    assert.throws(() => codecs.boolean.decode("TRUE"), new RangeError("not true or false"));
    assert.throws(
      () => codecs.matching(/^[a-z]+$/).decode("A"),
      new RangeError("does not match /^[a-z]+$/"),
    );
    assert.throws(
      () => codecs.json(isCart).decode('{"items":"1"}'),
      new TypeError("JSON value of the wrong shape"),
    );
    assert.deepEqual(codecs.json(isCart).decode('{"items":1}'), { items: 1 });
    assert.throws(() => codecs.number.decode("Infinity"), notFinite);
    assert.throws(() => codecs.number.decode("1e400"), notFinite);
    assert.throws(() => codecs.integer.decode("9007199254740993"), notSafe); // past MAX_SAFE_INTEGER
  });

  it("number and integer refuse to encode what their decode rejects, so it is not sent", () => {
    assert.throws(() => codecs.number.encode(Number.NaN), new RangeError("not a finite number"));
    assert.throws(() => codecs.number.encode(-Infinity), new RangeError("not a finite number"));
    assert.throws(() => codecs.integer.encode(1.5), new RangeError("not a safe integer"));
    assert.throws(() => codecs.integer.encode(2 ** 53), new RangeError("not a safe integer"));
    assert.equal(codecs.integer.encode(-12), "-12");
    const ratio = new ContextVar<number>("ratio");
    const carryNumbers = contextPropagation({
      attempt: baggageField(attempt, codecs.integer),
      ratio: baggageField(ratio, codecs.number),
      "user.id": user,
    });
    const headers = fresh(() => {
      attempt.set(1.5);
      ratio.set(Number.NaN);
      user.set("dana");
      return carryNumbers.inject({} as Record<string, string>);
    });
    assert.equal(headers.baggage, "user.id=dana");
  });

  it("each codec's value crosses inject and extract as it was", () => {
    const ratio = new ContextVar<number>("ratio");
    const region = new ContextVar<string>("region");
    const every = contextPropagation({
      ratio: baggageField(ratio, codecs.number),
      attempt: baggageField(attempt, codecs.integer),
      admin: baggageField(admin, codecs.boolean),
      region: baggageField(region, codecs.matching(/^[a-z]+-\d$/)),
      cart: baggageField(cart, codecs.json(isCart)),
    });
    for (const flag of [true, false]) {
      const headers = fresh(() => {
        ratio.set(-0.25);
        attempt.set(12);
        admin.set(flag);
        region.set("eu-3");
        cart.set({ items: 4 });
        return every.inject({} as Record<string, string>);
      });
      const { values } = fresh(() => every.extract(headers));
      assert.deepEqual(
        { ...values },
        { ratio: -0.25, attempt: 12, admin: flag, region: "eu-3", cart: { items: 4 } },
      );
    }
  });

  it("baggageField refuses a codec without both functions, saying what it expected", () => {
    for (const codec of [null, { encode: String }, { decode: Number }]) {
      assert.throws(
        () => baggageField(attempt, codec as never),
        /^TypeError: Expected `codec` to be an object with encode and decode functions, got /,
      );
    }
  });

  it("matching with a /g pattern accepts the same value every time", () => {
    const lowercase = codecs.matching(/^[a-z]+$/g);
    assert.equal(lowercase.decode("abc"), "abc");
    assert.equal(lowercase.decode("abc"), "abc");
  });
});

describe("wrapFetch", () => {
  let base = "";
  // Answers with the request's headers, its method as x-method and its body as x-body.
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ ...req.headers, "x-method": req.method, "x-body": body }));
  });
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("injects into init headers, a Request's headers, or none, keeping the caller's", async () => {
    const tracedFetch = carry.wrapFetch(fetch);
    const seen = await fresh(async () => {
      user.set("gina");
      return context.with(trace.setSpanContext(ROOT_CONTEXT, remote), async () => {
        const plain = await (await tracedFetch(`${base}/a`)).json();
        const withInit = await (
          await tracedFetch(`${base}/b`, { headers: { "x-kept": "1" } })
        ).json();
        const request = new Request(`${base}/c`, { headers: { "x-from-request": "2" } });
        const fromRequest = await (await tracedFetch(request)).json();
        return [plain, withInit, fromRequest] as Record<string, string>[];
      });
    });
    for (const headers of seen) {
      assert.equal(headers.baggage, "user.id=gina");
      assert.equal(headers.traceparent, TRACEPARENT);
    }
    assert.equal(seen[1]?.["x-kept"], "1");
    assert.equal(seen[2]?.["x-from-request"], "2");
  });

  it("a baggage header in init or on a Request is merged with the fields, not replaced", async () => {
    const tracedFetch = carry.wrapFetch(fetch);
    const seen = await fresh(async () => {
      user.set("gina");
      const withInit = await (
        await tracedFetch(`${base}/b`, { headers: { baggage: "tenant=acme" } })
      ).json();
      const request = new Request(`${base}/c`, { headers: { baggage: "tenant=acme" } });
      const fromRequest = await (await tracedFetch(request)).json();
      return [withInit, fromRequest] as Record<string, string>[];
    });
    for (const headers of seen) {
      assert.deepEqual(headers.baggage?.split(",").sort(), ["tenant=acme", "user.id=gina"]);
    }
  });

  it("keeps the rest of init (method, body); without an argument it wraps the global fetch", async () => {
    const tracedFetch = carry.wrapFetch();
    const echoed = await fresh(async () => {
      user.set("jo");
      const response = await tracedFetch(`${base}/post`, {
        method: "POST",
        body: "payload",
        headers: { "x-kept": "1" },
      });
      return (await response.json()) as Record<string, string>;
    });
    assert.equal(echoed["x-method"], "POST");
    assert.equal(echoed["x-body"], "payload");
    assert.equal(echoed["x-kept"], "1");
    assert.equal(echoed.baggage, "user.id=jo");
  });

  it("bad headers reject, as fetch's own do, instead of throwing", async () => {
    const tracedFetch = carry.wrapFetch(fetch);
    let returned: Promise<Response> | undefined;
    assert.doesNotThrow(() => {
      returned = tracedFetch(`${base}/bad`, { headers: { "bad header": "x" } });
    });
    await assert.rejects(returned as Promise<Response>, TypeError);
    await assert.rejects(fetch(`${base}/bad`, { headers: { "bad header": "x" } }), TypeError);
  });

  it("an init whose getter throws rejects, as fetch's own does, instead of throwing", async () => {
    const boom = new Error("method getter");
    const init = Object.defineProperty({}, "method", {
      get() {
        throw boom;
      },
      enumerable: true,
    }) as RequestInit;
    let called = false;
    const tracedFetch = carry.wrapFetch(async () => {
      called = true;
      return new Response();
    });
    let returned: Promise<Response> | undefined;
    assert.doesNotThrow(() => {
      returned = tracedFetch(`${base}/getter`, init);
    });
    await assert.rejects(returned as Promise<Response>, (e) => e === boom);
    await assert.rejects(fetch(`${base}/getter`, init), (e) => e === boom);
    assert.equal(called, false);
  });

  it("a value that cannot travel does not stop the request", async () => {
    const tracedFetch = carry.wrapFetch(fetch);
    const seen = await fresh(async () => {
      user.set("\uD83D");
      attempt.set(1);
      return (await (await tracedFetch(`${base}/lone`)).json()) as Record<string, string>;
    });
    assert.equal(seen.baggage, "attempt=1");
  });
});

describe("propagator(): the fields as a TextMapPropagator for the global propagator", () => {
  const fieldsPropagator = carry.propagator();
  const setter = {
    set(carrier: Record<string, string>, key: string, value: string) {
      carrier[key] = value;
    },
  };
  const getter = {
    keys: (carrier: Record<string, string>) => Object.keys(carrier),
    get: (carrier: Record<string, string>, key: string) => carrier[key],
  };
  const entries = (headers: Record<string, string>) => (headers.baggage ?? "").split(",").sort();

  it("the same instance every time; its one header is baggage", () => {
    assert.equal(carry.propagator(), fieldsPropagator);
    assert.deepEqual(fieldsPropagator.fields(), ["baggage"]);
  });

  it("inject writes the context's baggage and the fields whose vars are set where it runs; no traceparent", () => {
    const upstream = propagation.setBaggage(
      trace.setSpanContext(ROOT_CONTEXT, remote),
      propagation.createBaggage({ tenant: { value: "acme" }, "user.id": { value: "upstream" } }),
    );
    const headers: Record<string, string> = {};
    fresh(() => {
      user.set("local");
      attempt.set(2);
      fieldsPropagator.inject(upstream, headers, setter);
    });
    assert.deepEqual(entries(headers), ["attempt=2", "tenant=acme", "user.id=local"]);
    assert.equal(headers.traceparent, undefined, "the trace is the trace-context propagator's");
    // Another Context's values, into the same OpenTelemetry context: that Context's own.
    const other: Record<string, string> = {};
    fresh(() => fieldsPropagator.inject(upstream, other, setter));
    assert.deepEqual(entries(other), ["tenant=acme"], "an unset field's key is removed");
  });

  it("inject leaves out what cannot travel, and throws nothing", () => {
    const unwritable = propagation.setBaggage(
      ROOT_CONTEXT,
      propagation.createBaggage({ bad: { value: "\uD83D" } }),
    );
    const headers: Record<string, string> = {};
    assert.doesNotThrow(() =>
      fresh(() => {
        user.set("\uD83D");
        attempt.set(1);
        fieldsPropagator.inject(ROOT_CONTEXT, headers, setter);
        fieldsPropagator.inject(unwritable, {}, setter);
        const readOnly = {
          set() {
            throw new TypeError("read-only headers");
          },
        };
        fieldsPropagator.inject(ROOT_CONTEXT, {}, readOnly);
      }),
    );
    assert.equal(headers.baggage, "attempt=1");
  });

  it("extract puts the incoming baggage in the context, within the W3C limits, and sets no var", () => {
    const extracted = fresh(() => {
      const result = fieldsPropagator.extract(
        ROOT_CONTEXT,
        { baggage: "user.id=alice,tenant=acme" },
        getter,
      );
      return { result, user: user.get("unset") };
    });
    const baggage = propagation.getBaggage(extracted.result);
    assert.equal(baggage?.getEntry("user.id")?.value, "alice");
    assert.equal(baggage?.getEntry("tenant")?.value, "acme");
    assert.equal(extracted.user, "unset", "setting vars is extractInto's job");
    const over = Array.from({ length: 181 }, (_, i) => `k${i}=v`).join(",");
    for (const baggageHeader of [over, `user.id=${"x".repeat(8200)}`, "user.id=\u00e9"]) {
      assert.equal(
        fieldsPropagator.extract(ROOT_CONTEXT, { baggage: baggageHeader }, getter),
        ROOT_CONTEXT,
      );
    }
    const throwing = {
      keys: () => [],
      get: (): string => {
        throw new Error("unreadable");
      },
    };
    assert.equal(fieldsPropagator.extract(ROOT_CONTEXT, {}, throwing), ROOT_CONTEXT);
  });
});
