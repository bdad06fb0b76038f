import type { FastifyReply, FastifyRequest } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import { Http2ServerResponse } from 'node:http2'
import { endStreamRequestSpan } from '../tracing/requests.js'
import { HTTP1_SSE_HEADERS, SSE_HEADERS } from './frame.js'
import type { StreamSink } from './stream-contract.js'

/**
 * Takes the response from Fastify, keeping the headers its hooks set, and sends the SSE head.
 * All in one writeHead: headers set one by one would stay on the response (a table of their own,
 * an array per header) for as long as the stream is open.
 */
export function sendHead(request: FastifyRequest, reply: FastifyReply): void {
  void reply.hijack()
  endStreamRequestSpan(request)
  const raw = reply.raw
  const http2 = raw instanceof Http2ServerResponse
  // Names in lower case (as Fastify keeps them), so a stream header replaces a hook's of that name.
  const headers: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(reply.getHeaders())) headers[name] = value ?? ''
  for (const [name, value] of Object.entries(http2 ? SSE_HEADERS : { ...SSE_HEADERS, ...HTTP1_SSE_HEADERS })) headers[name.toLowerCase()] = value
  // Over HTTP/2 writeHead sends the head at once: the stream is written to directly (below), after it.
  raw.writeHead(200, headers)
}

/**
 * Where the stream writes: the response, or over HTTP/2 the response's own HTTP/2 stream (Node's
 * compatibility response has no `destroyed`, so a client gone before the first write would be missed).
 */
export function sinkOf(reply: FastifyReply): StreamSink {
  return reply.raw instanceof Http2ServerResponse ? reply.raw.stream : reply.raw
}
