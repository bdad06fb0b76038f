import type { FastifyPluginCallback, FastifyRequest } from 'fastify'
import { enableTracing } from './spans.js'

export interface TracingSettings {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string
  OTEL_SERVICE_NAME?: string
}

export interface Tracing {
  /** @fastify/otel: a span per request, the parent of what the request does. */
  plugin: FastifyPluginCallback
  /** Sends the spans still buffered. */
  shutdown(): Promise<void>
}

/** The path without its query: a stream's `?ticket=` never becomes a span attribute. */
function pathOf(request: FastifyRequest): string {
  const query = request.url.indexOf('?')
  return query < 0 ? request.url : request.url.slice(0, query)
}

/**
 * Null while no OTLP endpoint is configured: then nothing of the SDK is even loaded. Otherwise
 * the SDK is registered for the process (W3C trace context, spans batched to the OTLP/HTTP
 * endpoint the standard OTEL_* variables name) and the pipeline's spans start recording.
 */
export async function startTracing(settings: TracingSettings, replicaId: string): Promise<Tracing | null> {
  if (!settings.OTEL_EXPORTER_OTLP_ENDPOINT && !settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return null
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { FastifyOtelInstrumentation }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@fastify/otel')
    ])
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': settings.OTEL_SERVICE_NAME ?? 'moltbridge', 'service.instance.id': replicaId }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())]
  })
  provider.register()
  enableTracing()
  const instrumentation = new FastifyOtelInstrumentation({
    // One span per request: its hooks' and handler's own spans would say little and cost a lot.
    instrumentHooks: false,
    instrumentHandler: false,
    requestHook: (span, request) => span.setAttribute('url.path', pathOf(request))
  })
  instrumentation.setTracerProvider(provider)
  return { plugin: instrumentation.plugin(), shutdown: () => provider.shutdown() }
}
