import type { FastifyRequest } from 'fastify'
import { tracingEnabled } from './spans.js'

/**
 * Ends the request span of a stream once its head is sent (@fastify/otel ends request spans in
 * onSend, which a hijacked reply skips): the span covers the opening (authentication, ticket,
 * history read), not the hours the stream may stay open.
 */
export function endStreamRequestSpan(request: FastifyRequest): void {
  if (!tracingEnabled()) return
  const { span } = request.opentelemetry()
  span?.setAttribute('http.response.status_code', 200)
  span?.end()
}
