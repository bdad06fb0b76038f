import type { FastifyReply, FastifyRequest } from 'fastify'
import { Http2ServerResponse } from 'node:http2'
import { endStreamRequestSpan } from '../tracing/requests.js'
import { HTTP1_SSE_HEADERS, SSE_HEADERS } from './frame.js'
import type { StreamSink } from './stream-contract.js'

/** Takes the response from Fastify, keeping the headers its hooks set, and sends the SSE head. */
export function sendHead(request: FastifyRequest, reply: FastifyReply): void {
  void reply.hijack()
  endStreamRequestSpan(request)
  const raw = reply.raw
  for (const [name, value] of Object.entries(reply.getHeaders())) raw.setHeader(name, value ?? '')
  const http2 = raw instanceof Http2ServerResponse
  const headers = http2 ? SSE_HEADERS : { ...SSE_HEADERS, ...HTTP1_SSE_HEADERS }
  for (const [name, value] of Object.entries(headers)) raw.setHeader(name, value)
  raw.statusCode = 200
  // Over HTTP/2 the stream is written to directly (below): the head must be out before it.
  if (http2) raw.flushHeaders()
}

/**
 * Where the stream writes: the response, or over HTTP/2 the response's own HTTP/2 stream (Node's
 * compatibility response has no `destroyed`, so a client gone before the first write would be missed).
 */
export function sinkOf(reply: FastifyReply): StreamSink {
  return reply.raw instanceof Http2ServerResponse ? reply.raw.stream : reply.raw
}
