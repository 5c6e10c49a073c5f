/**
 * The shapes `contextPropagation` works with: the fields it carries, what
 * extraction returns, the headers it reads and writes, and the helpers it
 * returns. Re-exported by `contextvars/otel`.
 */
import type { Context as OtelContext, TextMapPropagator } from "@opentelemetry/api";
import type { ContextVar } from "../core/context-var.ts";
import type { BaggageField } from "./baggage-codecs.ts";

/**
 * Fields to carry, by baggage key (an HTTP token): a `ContextVar<string>`,
 * or `baggageField(var, codec)` for any other type.
 *
 * @example
 * const fields = { "user.id": user, attempt: baggageField(attempt, codecs.integer) } satisfies PropagatedFields;
 */
export type PropagatedFields = Readonly<Record<string, StringVar | BaggageField<unknown>>>;

/**
 * A var that takes every string, as a bare field must: extraction sets it
 * to whatever text the baggage brings. `set` is written as a property,
 * whose parameter TypeScript checks contravariantly (a method's it does
 * not), so a `ContextVar<"on" | "off">`, assignable to `ContextVar<string>`,
 * is not a StringVar: give it a codec with `baggageField`. A
 * `ContextVar<string | undefined>` is one: where its value is undefined,
 * the field is not sent, as where it is unset.
 */
export type StringVar =
  | (ContextVar<string> & { readonly set: (value: string) => unknown })
  | (ContextVar<string | undefined> & { readonly set: (value: string | undefined) => unknown });

/**
 * What extraction found, typed per field; a field absent or rejected by its
 * codec is missing.
 *
 * @example
 * const { values } = carry.extract(req.headers);
 * values.attempt; // number | undefined, for a field `baggageField(attempt, codecs.integer)`
 */
export type ExtractedValues<F extends PropagatedFields> = {
  [K in keyof F]?: F[K] extends BaggageField<infer T> ? T : string;
};

/**
 * Incoming headers: Node's `req.headers` (what every Node framework exposes,
 * keys lower-case), or a fetch `Headers` (Hono's `c.req.raw.headers`).
 *
 * @example
 * carry.extractInto(req.headers); // or c.req.raw.headers in Hono
 */
export type IncomingHeaders = Headers | Readonly<Record<string, string | string[] | undefined>>;

/**
 * Headers to write into: a fetch `Headers`, or a plain object (the `headers`
 * option of node:http and undici).
 *
 * @example
 * http.request(url, { headers: carry.inject({ accept: "application/json" }) });
 */
export type OutgoingHeaders = Headers | Record<string, string | string[] | number | undefined>;

/**
 * The helpers `contextPropagation(fields)` returns. None of them throws on
 * what arrives in headers; see `contextPropagation`.
 *
 * @example
 * app.use(contextMiddleware({ seed: (req) => carry.extractInto(req.headers) }));
 * const tracedFetch = carry.wrapFetch(fetch);
 */
export interface ContextPropagation<F extends PropagatedFields> {
  /** The fields, as given. */
  readonly fields: F;
  /**
   * Writes `traceparent`/`tracestate` (when a span is active) and `baggage` into `headers`; returns them.
   * A `baggage` header already there is merged: its members pass through, a field's var decides its key.
   * @throws {TypeError} if headers is neither a Headers nor an object, or is an array or another iterable.
   */
  inject<H extends OutgoingHeaders>(headers: H): H;
  /** Reads the headers without changing anything: the OpenTelemetry context they carry and the typed values. */
  extract(headers: IncomingHeaders): { context: OtelContext; values: ExtractedValues<F> };
  /**
   * Sets each field's var from the incoming baggage in the current Context and,
   * when a `ContextVarsContextManager` is the global manager, makes the incoming
   * trace the active parent for the rest of it (unless a span is active already,
   * as instrumentation-http's server span is). Made for a web integration's `seed`.
   * Returns the extracted OpenTelemetry context (for `context.with` under another manager).
   */
  extractInto(headers: IncomingHeaders): OtelContext;
  /**
   * A `fetch` that injects into every request it sends (default: the global `fetch`).
   * @throws {TypeError} if fetchFn is not a function.
   */
  wrapFetch(fetchFn?: typeof fetch): typeof fetch;
  /**
   * A `TextMapPropagator` for the `baggage` header, to register globally in
   * place of `W3CBaggagePropagator` (beside `W3CTraceContextPropagator`, in
   * a `CompositePropagator` or sdk-node's `textMapPropagator`), so that
   * instrumentation that injects by itself (instrumentation-http)
   * sends the fields too: `inject` writes the OpenTelemetry context's
   * baggage with each field's key set from its var where the request is
   * made, or left out where the var is unset (an upstream entry of that
   * key included);
   * `extract` is `W3CBaggagePropagator`'s, with the same limits as here.
   * Setting the vars from incoming baggage stays `extractInto`'s job.
   * The same instance on every call. Throws nothing, nor do its methods.
   */
  propagator(): TextMapPropagator;
}
