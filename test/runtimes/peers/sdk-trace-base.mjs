// `@opentelemetry/sdk-trace-base` as the tests use it, on OpenTelemetry JS 3
// (the otel3 line of hooks.mjs): `BasicTracerProvider` is `TracerProvider`
// there, and `SimpleSpanProcessor` takes `{ exporter }` where 2.x took the exporter.
import { SimpleSpanProcessor as OptionsSimpleSpanProcessor } from "@opentelemetry/sdk-trace";

export * from "@opentelemetry/sdk-trace";
export { TracerProvider as BasicTracerProvider } from "@opentelemetry/sdk-trace";

export class SimpleSpanProcessor extends OptionsSimpleSpanProcessor {
  constructor(exporter) {
    super({ exporter });
  }
}
