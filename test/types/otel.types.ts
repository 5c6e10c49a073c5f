/**
 * Type tests for `contextvars/otel`: ContextVarsContextManager is an
 * OpenTelemetry ContextManager (with/bind keep their argument, `this` and
 * return types), and contextPropagation's fields, codecs and extracted
 * values are typed per field; a codec must fit its var. Only typechecked.
 */
import { EventEmitter } from "node:events";
import {
  type ContextManager,
  context,
  type Context as OtelContext,
  propagation as propagationApi,
  ROOT_CONTEXT,
  type TextMapPropagator,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { ContextVar } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import {
  type AttachToken,
  type BaggageCodec,
  type BaggageField,
  baggageField,
  type ContextPropagation,
  ContextVarsContextManager,
  codecs,
  contextPropagation,
  type ExtractedValues,
  type IncomingHeaders,
  type OutgoingHeaders,
  type PropagatedFields,
  type StringVar,
} from "contextvars/otel";
import { type Equal, type Extends, expectFalse, expectType } from "./expect.ts";

export function contextManager(): void {
  const manager = new ContextVarsContextManager();
  const asManager: ContextManager = manager;
  expectType<Extends<ContextVarsContextManager, ContextManager>>();
  // Interchangeable with OpenTelemetry's own manager.
  const either: ContextManager[] = [manager, new AsyncLocalStorageContextManager()];
  context.setGlobalContextManager(new ContextVarsContextManager().enable());
  expectType<Equal<ReturnType<typeof manager.enable>, ContextVarsContextManager>>();
  expectType<Equal<ReturnType<typeof manager.disable>, ContextVarsContextManager>>();
  // attach (API 1.10's optional member) hands back a token that `using` takes.
  expectType<Equal<ReturnType<typeof manager.attach>, AttachToken>>();
  expectType<Extends<AttachToken, Disposable & { dispose(): void }>>();
  {
    using _attached = manager.attach(ROOT_CONTEXT);
  }
  // @ts-expect-error: attach takes an OpenTelemetry context
  manager.attach("span");
  expectType<Equal<ReturnType<typeof manager.active>, OtelContext>>();

  const sum = manager.with(ROOT_CONTEXT, (a: number, b: number) => a + b, undefined, 1, 2);
  expectType<Equal<typeof sum, number>>();
  const later = manager.with(manager.active(), async () => "done");
  expectType<Equal<typeof later, Promise<string>>>();
  const self = { n: 1 };
  const withThis = manager.with(
    ROOT_CONTEXT,
    function (this: { n: number }) {
      return this.n;
    },
    self,
  );
  expectType<Equal<typeof withThis, number>>();

  const bound = manager.bind(ROOT_CONTEXT, (name: string) => name.length);
  expectType<Equal<typeof bound, (name: string) => number>>();
  const emitter = manager.bind(ROOT_CONTEXT, new EventEmitter());
  expectType<Equal<typeof emitter, EventEmitter>>();

  // @ts-expect-error with needs an OpenTelemetry context
  manager.with({}, () => 1);
  // @ts-expect-error the arguments must fit fn
  manager.with(ROOT_CONTEXT, (a: number) => a, undefined, "1");
  void asManager;
  void either;
}

interface User {
  readonly id: number;
}
const isUser = (value: unknown): value is User =>
  typeof value === "object" && value !== null && "id" in value;

export function propagation(headers: Headers, nodeHeaders: Record<string, string>): void {
  const user = new ContextVar<string>("user");
  const attempt = new ContextVar<number>("attempt");
  const admin = new ContextVar<boolean>("admin");
  const profile = new ContextVar<User>("profile");

  const carry = contextPropagation({
    user,
    attempt: baggageField(attempt, codecs.integer),
    admin: baggageField(admin, codecs.boolean),
    profile: baggageField(profile, codecs.json(isUser)),
    "request.id": baggageField(user, codecs.matching(/^[\w-]+$/)),
  });
  const { context: extracted, values } = carry.extract(headers);
  expectType<Equal<typeof extracted, OtelContext>>();
  expectType<
    Equal<
      typeof values,
      {
        user?: string;
        attempt?: number;
        admin?: boolean;
        profile?: User;
        "request.id"?: string;
      }
    >
  >();
  expectType<Equal<ReturnType<typeof carry.extractInto>, OtelContext>>();
  expectType<Equal<typeof carry.fields.attempt, BaggageField<number>>>();
  carry.extractInto(nodeHeaders);
  carry.extractInto({ baggage: ["a=1", "b=2"], traceparent: undefined });

  // inject returns the headers it was given, typed as given.
  const injected = carry.inject({ accept: "application/json" });
  expectType<Equal<typeof injected, { accept: string }>>();
  const fetchHeaders = carry.inject(new Headers());
  expectType<Equal<typeof fetchHeaders, Headers>>();
  const tracedFetch = carry.wrapFetch(fetch);
  expectType<Equal<typeof tracedFetch, typeof fetch>>();
  carry.wrapFetch();
  // A TextMapPropagator, for a CompositePropagator or setGlobalPropagator.
  expectType<Equal<ReturnType<typeof carry.propagator>, TextMapPropagator>>();
  propagationApi.setGlobalPropagator(carry.propagator());

  // From a web integration's seed.
  contextMiddleware({ seed: (req) => carry.extractInto(req.headers) });

  const fields = {
    user,
    attempt: baggageField(attempt, codecs.integer),
  } satisfies PropagatedFields;
  const typed: ContextPropagation<typeof fields> = contextPropagation(fields);
  expectType<Equal<ExtractedValues<typeof fields>, { user?: string; attempt?: number }>>();
  const date: BaggageCodec<Date> = {
    encode: (value) => value.toISOString(),
    decode: (text) => new Date(text),
  };
  baggageField(new ContextVar<Date>("at"), date);
  expectType<Equal<ReturnType<typeof codecs.json<User>>, BaggageCodec<User>>>();
  expectType<Extends<Headers, IncomingHeaders>>();
  expectType<Extends<Headers, OutgoingHeaders>>();

  // @ts-expect-error a bare var must be a ContextVar<string>: give others a codec
  contextPropagation({ attempt });
  // A bare var must take every string, which extraction may set it to; a
  // narrower one needs a codec that checks the text.
  const mode = new ContextVar<"on" | "off">("mode");
  // @ts-expect-error "on" | "off" is narrower than what the baggage brings
  contextPropagation({ user, mode });
  // @ts-expect-error a ContextVar<never> takes no string at all
  contextPropagation({ none: new ContextVar<never>("none") });
  const onOff: BaggageCodec<"on" | "off"> = {
    encode: (value) => value,
    decode: (text) => {
      if (text === "on" || text === "off") return text;
      throw new RangeError("not on or off");
    },
  };
  const checked = contextPropagation({ user, mode: baggageField(mode, onOff) });
  expectType<
    Equal<ExtractedValues<typeof checked.fields>, { user?: string; mode?: "on" | "off" }>
  >();
  expectType<Extends<ContextVar<string>, StringVar>>();
  expectFalse<Extends<ContextVar<"on" | "off">, StringVar>>();
  // A var that may hold undefined is a bare field too: undefined is not sent.
  expectType<Extends<ContextVar<string | undefined>, StringVar>>();
  contextPropagation({
    tenant: new ContextVar<string | undefined>("tenant", { default: undefined }),
  });
  expectFalse<Extends<ContextVar<"on" | "off" | undefined>, StringVar>>();
  expectFalse<Extends<ContextVar<string | null>, StringVar>>();
  expectFalse<Extends<ContextVar<string | number>, StringVar>>();
  // A generic wrapper passes its fields on as they are.
  const wrap = <F extends PropagatedFields>(given: F): ContextPropagation<F> =>
    contextPropagation(given);
  wrap({ user });
  // @ts-expect-error the codec must fit the var's type
  baggageField(attempt, codecs.string);
  const isText = (value: unknown): value is string => typeof value === "string";
  // @ts-expect-error the codec must fit the var's type
  baggageField(profile, codecs.json(isText));
  // @ts-expect-error a codec of a wider type would set values the var does not allow
  baggageField(new ContextVar<"on" | "off">("mode"), codecs.string);
  // @ts-expect-error not a codec
  baggageField(user, { encode: String });
  // @ts-expect-error inject takes headers, not a string
  carry.inject("accept: */*");
  void typed;
}
