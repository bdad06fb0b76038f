import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api'

/**
 * The spans of the pipeline. Until src/tracing/sdk.ts registers an SDK (an OTLP endpoint is
 * configured) every helper here calls its work directly: no span object, no context switch, so
 * tracing off costs a branch per call (README "Tracing" has the bench figures).
 */
let enabled = false
const tracer = trace.getTracer('moltbridge')

export function enableTracing(): void {
  enabled = true
}

export function tracingEnabled(): boolean {
  return enabled
}

export interface SpanOptions {
  /**
   * A traceparent carried in a queue entry or an event: the span continues that trace; null: a
   * trace of its own; absent: a child of the active span.
   */
  parent?: string | null
  kind?: SpanKind
  attributes?: Attributes
}

function parentContext(parent: string | null | undefined): Context {
  if (parent === undefined) return context.active()
  return parent === null ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, { traceparent: parent })
}

function failed(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err))
  span.setStatus({ code: SpanStatusCode.ERROR })
}

function inSpan<T>(name: string, options: SpanOptions, run: (span: Span) => T): T {
  const { kind = SpanKind.INTERNAL, attributes } = options
  return tracer.startActiveSpan(name, { kind, attributes }, parentContext(options.parent), run)
}

/** Runs `work` inside a span named `name` (the active span while it runs); an error marks it failed. */
export function traced<T>(name: string, work: () => Promise<T>, options: SpanOptions = {}): Promise<T> {
  if (!enabled) return work()
  return inSpan(name, options, (span) =>
    work().then(
      (value) => {
        span.end()
        return value
      },
      (err: unknown) => {
        failed(span, err)
        span.end()
        throw err
      }
    )
  )
}

/** `traced` for synchronous work. */
export function tracedSync<T>(name: string, work: () => T, options: SpanOptions = {}): T {
  if (!enabled) return work()
  return inSpan(name, options, (span) => {
    try {
      return work()
    } catch (err) {
      failed(span, err)
      throw err
    } finally {
      span.end()
    }
  })
}

/** The active span as a W3C traceparent, to carry in a queue entry or an event; undefined when off. */
export function activeTraceparent(): string | undefined {
  if (!enabled) return undefined
  const carrier: { traceparent?: string } = {}
  propagation.inject(context.active(), carrier)
  return carrier.traceparent
}

/**
 * One new trace per item (a feed rating): `work` gets their traceparents, in order, and the
 * spans end when it has settled. Off: `work` gets an empty array.
 */
export async function traceEach<T>(name: string, count: number, work: (traceparents: (string | undefined)[]) => Promise<T>): Promise<T> {
  if (!enabled) return work([])
  const spans = Array.from({ length: count }, () => tracer.startSpan(name, { kind: SpanKind.CONSUMER }, ROOT_CONTEXT))
  const traceparents = spans.map((span) => {
    const carrier: { traceparent?: string } = {}
    propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier)
    return carrier.traceparent
  })
  try {
    return await work(traceparents)
  } catch (err) {
    for (const span of spans) failed(span, err)
    throw err
  } finally {
    for (const span of spans) span.end()
  }
}
