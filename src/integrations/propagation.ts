/**
 * Chosen ContextVars and the active trace across services, as W3C `baggage`
 * beside `traceparent`/`tracestate`, through OpenTelemetry's own
 * `W3CBaggagePropagator` and `W3CTraceContextPropagator` (no header parsing
 * here). Re-exported by `contextvars/otel`; needs `@opentelemetry/api` and
 * `@opentelemetry/core`, and works with or without an OpenTelemetry SDK.
 */
import {
  type Baggage,
  type BaggageEntry,
  context as contextApi,
  type Context as OtelContext,
  propagation,
  ROOT_CONTEXT,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { type ContextVar, isContextVar } from "../core/context-var.ts";
import { NativePromise } from "../core/native-promise.ts";
import { argumentError, describeValue } from "../errors.ts";
import { type BaggageCodec, type BaggageField, codecs } from "./baggage-codecs.ts";
import type {
  ContextPropagation,
  ExtractedValues,
  IncomingHeaders,
  OutgoingHeaders,
  PropagatedFields,
} from "./propagation-types.ts";

export { type BaggageCodec, type BaggageField, baggageField, codecs } from "./baggage-codecs.ts";
export type {
  ContextPropagation,
  ExtractedValues,
  IncomingHeaders,
  OutgoingHeaders,
  PropagatedFields,
  StringVar,
} from "./propagation-types.ts";

// W3C Baggage §3.3.2: at most 180 list-members and 8192 bytes. A header over
// either limit, or with bytes outside printable ASCII (which the grammar
// forbids, and which would make its length differ from its size), is
// dropped whole rather than truncated as OpenTelemetry's extractor would.
const MAX_BAGGAGE_BYTES = 8192;
const MAX_BAGGAGE_MEMBERS = 180;
const NOT_BAGGAGE = /[^\t\x20-\x7e]/;
// OpenTelemetry's inject also leaves out a member over 4096 bytes.
const MAX_MEMBER_BYTES = 4096;
// RFC 9110 token: what a baggage key may be.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const traceContext = new W3CTraceContextPropagator();
const baggagePropagator = new W3CBaggagePropagator();
const UNSET = Symbol("unset");

const headersGetter: TextMapGetter<IncomingHeaders> = {
  keys: (carrier) =>
    carrier instanceof Headers ? [...carrier.keys()] : Object.keys(carrier as object),
  get(carrier, key) {
    if (carrier instanceof Headers) return carrier.get(key) ?? undefined;
    // Own keys only: nothing is read from a prototype.
    return Object.hasOwn(carrier, key) ? carrier[key] : undefined;
  },
};

const headersSetter: TextMapSetter<OutgoingHeaders> = {
  set(carrier, key, value) {
    if (carrier instanceof Headers) {
      carrier.set(key, value);
      return;
    }
    // As Headers#set: the header replaces one under any other spelling of its
    // name (`Traceparent`), which fetch and undici would send beside it, and
    // which the receiver would join with it into a header it cannot read.
    for (const name of Object.keys(carrier)) {
      if (name !== key && name.length === key.length && name.toLowerCase() === key) {
        delete carrier[name];
      }
    }
    carrier[key] = value;
  },
};

function acceptableBaggage(value: string | string[] | undefined): boolean {
  if (value === undefined) return true;
  const text = Array.isArray(value) ? value.join(",") : value;
  if (text.length > MAX_BAGGAGE_BYTES || NOT_BAGGAGE.test(text)) return false;
  let members = 1;
  for (let at = text.indexOf(","); at !== -1; at = text.indexOf(",", at + 1)) members++;
  return members <= MAX_BAGGAGE_MEMBERS;
}

/**
 * The baggage header already in outgoing headers, under any spelling of its
 * name in a plain object (Node sends `Baggage` and `baggage` as one header
 * name): its key there and its value, repeated values joined.
 */
function givenBaggage(headers: OutgoingHeaders): { key: string; value: string } | undefined {
  if (headers instanceof Headers) {
    const value = headers.get("baggage");
    return value === null ? undefined : { key: "baggage", value };
  }
  for (const key of Object.keys(headers)) {
    if (key.length !== 7 || key.toLowerCase() !== "baggage") continue;
    const value = headers[key];
    if (value === undefined) continue;
    return { key, value: Array.isArray(value) ? value.join(",") : String(value) };
  }
  return undefined;
}

/**
 * context's baggage with the members of a header added over it; undefined
 * for a header past the W3C limits or with no member that can be read.
 */
function withMembersOf(context: OtelContext, header: string): OtelContext | undefined {
  if (!acceptableBaggage(header)) return undefined;
  let parsed: Baggage | undefined;
  try {
    parsed = propagation.getBaggage(
      baggagePropagator.extract(ROOT_CONTEXT, { baggage: header }, headersGetter),
    );
  } catch {
    return undefined;
  }
  if (parsed === undefined) return undefined;
  let baggage = propagation.getBaggage(context) ?? propagation.createBaggage();
  for (const [key, entry] of parsed.getAllEntries()) baggage = baggage.setEntry(key, entry);
  return propagation.setBaggage(context, baggage);
}

/** The size of an entry as OpenTelemetry's inject writes it: `key=value;metadata`, percent-encoded. */
function memberBytes(key: string, entry: BaggageEntry): number {
  const metadata = entry.metadata === undefined ? 0 : 1 + entry.metadata.toString().length;
  return encodeURIComponent(key).length + 1 + encodeURIComponent(entry.value).length + metadata;
}

/**
 * baggage cut to what OpenTelemetry's inject will write whole, the entries
 * under fieldKeys kept first. Its inject keeps members in order until a limit
 * is reached, and upstream entries come before fields a service sets itself:
 * baggage that arrived at the limits would otherwise push every such field out.
 */
function withinLimits(baggage: Baggage, fieldKeys: ReadonlySet<string>): Baggage {
  const all = baggage.getAllEntries();
  if (all.length <= MAX_BAGGAGE_MEMBERS) {
    // Nine bytes at most per UTF-16 unit once percent-encoded ("€" is %E2%82%AC).
    let most = 0;
    for (const [key, entry] of all) {
      most += 9 * (key.length + entry.value.length) + 2;
      if (entry.metadata !== undefined) most += 1 + entry.metadata.toString().length;
    }
    if (most <= MAX_BAGGAGE_BYTES) return baggage;
  }
  const kept: Record<string, BaggageEntry> = Object.create(null);
  let members = 0;
  let bytes = -1; // no comma before the first member
  for (const fields of [true, false]) {
    for (const [key, entry] of all) {
      if (fieldKeys.has(key) !== fields) continue;
      const size = memberBytes(key, entry);
      if (size > MAX_MEMBER_BYTES || members === MAX_BAGGAGE_MEMBERS) continue;
      if (bytes + 1 + size > MAX_BAGGAGE_BYTES) continue;
      kept[key] = entry;
      members++;
      bytes += 1 + size;
    }
  }
  // Everything kept is written, so the order of the record's keys does not matter.
  return propagation.createBaggage(kept);
}

function isEmpty(context: OtelContext): boolean {
  return (propagation.getBaggage(context)?.getAllEntries().length ?? 0) === 0;
}

// Set by otel.ts: makes an OpenTelemetry context active in the current Context
// if a ContextVarsContextManager is the global manager.
let activate: (context: OtelContext) => boolean = () => false;

/** Internal: how otel.ts hands over the activation above. */
export function provideActivation(fn: (context: OtelContext) => boolean): void {
  activate = fn;
}

interface Entry {
  readonly key: string;
  readonly var: ContextVar<unknown>;
  readonly codec: BaggageCodec<unknown>;
}

function entriesOf(fields: PropagatedFields): Entry[] {
  if (typeof fields !== "object" || fields === null) {
    throw argumentError("fields", "an object of ContextVars", fields);
  }
  // The types refuse an array, but JavaScript callers can pass one, and its
  // entries would become fields named "0", "1", …
  if (Array.isArray(fields)) {
    throw argumentError(
      "fields",
      "an object of ContextVars keyed by baggage key (`{ user }`), not an array",
      fields,
    );
  }
  return Object.entries(fields).map(([key, field]) => {
    // `__proto__` is a token, but OpenTelemetry's parser stores entries in a plain object
    // and so drops it: a field under it could never arrive.
    if (!TOKEN.test(key) || key === "__proto__") {
      throw new TypeError(
        `Expected each key of \`fields\` to be a baggage key (an HTTP token, not __proto__), got ${describeValue(key)}`,
      );
    }
    if (isContextVar(field))
      return { key, var: field as ContextVar<unknown>, codec: codecs.string };
    const f = field as BaggageField<unknown> | undefined;
    if (
      isContextVar(f?.var) &&
      typeof f.codec?.encode === "function" &&
      typeof f.codec.decode === "function"
    ) {
      return { key, var: f.var, codec: f.codec };
    }
    throw argumentError(`fields[${JSON.stringify(key)}]`, "a ContextVar or a baggageField", field);
  });
}

// In a string of UTF-16 units, a surrogate that is not half of a pair.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Carries `fields` (baggage key → ContextVar) and the active trace across
 * services. On the way in, use `extractInto` from a web integration's
 * `seed`; on the way out, `wrapFetch(fetch)` or `inject(headers)`. Values
 * the codec rejects, malformed or oversized baggage (over 180 members or
 * 8192 bytes, or a member over 4096) and an invalid `traceparent` are
 * ignored, never thrown: the request goes on without them. On the way out, a
 * field over 4096 bytes once percent-encoded is not sent. Other baggage
 * entries pass through.
 *
 * @example
 * import { ContextVar } from "contextvars";
 * import { contextMiddleware } from "contextvars/express";
 * import { baggageField, codecs, contextPropagation } from "contextvars/otel";
 *
 * const user = new ContextVar<string>("user");
 * const attempt = new ContextVar<number>("attempt");
 * const carry = contextPropagation({ user, attempt: baggageField(attempt, codecs.integer) });
 * const app = express();
 * app.use(contextMiddleware({ seed: (req) => carry.extractInto(req.headers) }));
 * const tracedFetch = carry.wrapFetch(fetch); // sends user, attempt and the trace on
 * declare function express(): import("express").Express;
 * @throws {TypeError} if fields is not an object or is an array, a key is not a valid baggage key or a field is not a ContextVar or baggageField.
 */
export function contextPropagation<F extends PropagatedFields>(fields: F): ContextPropagation<F> {
  const entries = entriesOf(fields);
  const fieldKeys: ReadonlySet<string> = new Set(entries.map((entry) => entry.key));

  function withFields(base: OtelContext): OtelContext {
    let baggage: Baggage = propagation.getBaggage(base) ?? propagation.createBaggage();
    // An entry other code put in the context with a lone surrogate in its key or
    // value goes: OpenTelemetry's inject would throw on it and send no baggage at all.
    for (const [key, { value }] of baggage.getAllEntries()) {
      if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value))
        baggage = baggage.removeEntry(key);
    }
    for (const { key, var: v, codec } of entries) {
      const value = v.get(UNSET);
      let text: string | undefined;
      try {
        text = value === UNSET ? undefined : codec.encode(value);
      } catch {
        text = undefined; // a value its codec cannot write is not sent
      }
      // Not sent either: a lone surrogate (a string cut inside a pair), which
      // the W3C encoding cannot write, and "", which OpenTelemetry's parser
      // drops, so that it would arrive unset anyway.
      if (text === "" || (text !== undefined && LONE_SURROGATE.test(text))) text = undefined;
      baggage =
        typeof text === "string"
          ? baggage.setEntry(key, { value: text })
          : baggage.removeEntry(key);
    }
    return propagation.setBaggage(base, withinLimits(baggage, fieldKeys));
  }

  function extract(
    headers: IncomingHeaders,
    keepActiveSpan = false,
  ): { context: OtelContext; values: ExtractedValues<F> } {
    const values = Object.create(null) as ExtractedValues<F>;
    const base = contextApi.active();
    let context = base;
    try {
      // A span already active here (instrumentation-http's server span, itself a child
      // of this traceparent) stays the parent.
      if (!(keepActiveSpan && trace.getSpanContext(base) !== undefined)) {
        context = traceContext.extract(context, headers, headersGetter);
      }
      if (acceptableBaggage(headersGetter.get(headers, "baggage"))) {
        context = baggagePropagator.extract(context, headers, headersGetter);
      }
    } catch {
      return { context: base, values }; // a carrier that cannot be read carries nothing
    }
    const baggage = propagation.getBaggage(context);
    if (baggage === undefined) return { context, values };
    for (const { key, codec } of entries) {
      const text = baggage.getEntry(key)?.value;
      if (text === undefined) continue;
      try {
        (values as Record<string, unknown>)[key] = codec.decode(text);
      } catch {
        // rejected by its codec: left out
      }
    }
    return { context, values };
  }

  // For a global propagator: instrumentation calls inject where the outgoing
  // request is made, so the vars read are that code's.
  const propagator: TextMapPropagator = {
    inject(context, carrier, setter) {
      try {
        baggagePropagator.inject(withFields(context), carrier, setter);
      } catch {
        // As inject below: baggage that cannot be written is not sent.
      }
    },
    extract(context, carrier, getter) {
      try {
        const header = getter.get(carrier, "baggage");
        return acceptableBaggage(header)
          ? baggagePropagator.extract(context, carrier, getter)
          : context;
      } catch {
        return context; // a carrier that cannot be read carries nothing
      }
    },
    fields: () => baggagePropagator.fields(),
  };

  const carry: ContextPropagation<F> = {
    fields,
    propagator: () => propagator,
    inject(headers) {
      if (typeof headers !== "object" || headers === null) {
        throw argumentError("headers", "a Headers or an object", headers);
      }
      // An array (node:http's and undici's flat form, fetch's pairs) or a Map would
      // take the headers as properties, which nothing sends.
      if (!(headers instanceof Headers) && Symbol.iterator in headers) {
        const expected = "a Headers or an object of header names, not an iterable";
        throw argumentError("headers", expected, headers);
      }
      // A baggage header the caller wrote joins the outgoing baggage as
      // upstream baggage does (its members pass through; a field's key is
      // its var's), rather than being overwritten by it.
      const given = givenBaggage(headers);
      if (given === undefined) {
        const context = withFields(contextApi.active());
        traceContext.inject(context, headers, headersSetter);
        try {
          baggagePropagator.inject(context, headers, headersSetter);
        } catch {
          // withFields has dropped the entries OpenTelemetry throws on (a lone
          // surrogate); should anything else throw, no baggage is sent.
        }
        return headers;
      }
      const merged = withMembersOf(contextApi.active(), given.value);
      const context = withFields(merged ?? contextApi.active());
      traceContext.inject(context, headers, headersSetter);
      const written: Record<string, string> = {};
      try {
        baggagePropagator.inject(context, written, headersSetter);
      } catch {
        // As above.
      }
      const baggage = written.baggage;
      // The caller's header goes (whatever its spelling: one header) for the
      // merged one, or when its members were all fields left unset; one this
      // could not read stays unless baggage is written over it.
      if (baggage !== undefined || (merged !== undefined && isEmpty(context))) {
        if (headers instanceof Headers) headers.delete("baggage");
        else delete headers[given.key];
      }
      if (baggage !== undefined) headersSetter.set(headers, "baggage", baggage);
      return headers;
    },
    extract: (headers) => extract(headers),
    extractInto(headers) {
      const found = extract(headers, true);
      const values = found.values as Record<string, unknown>;
      for (const { key, var: v } of entries) if (key in values) v.set(values[key]);
      if (found.context !== contextApi.active()) activate(found.context);
      return found.context;
    },
    wrapFetch(fetchFn = globalThis.fetch) {
      if (typeof fetchFn !== "function") throw argumentError("fetchFn", "a function", fetchFn);
      return function propagatingFetch(input: RequestInfo | URL, init?: RequestInit) {
        let options: RequestInit;
        try {
          const given = init?.headers ?? (input instanceof Request ? input.headers : undefined);
          // The copy of init inside the try too: a getter that throws rejects, as fetch's own would.
          options = { ...init, headers: carry.inject(new Headers(given)) };
        } catch (error) {
          return NativePromise.reject(error); // as fetch itself reports bad headers
        }
        return fetchFn(input, options);
      };
    },
  };
  return carry;
}
