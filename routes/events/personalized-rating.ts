import type { FastifyInstance } from 'fastify'
import { Type, type Static } from 'typebox'
import { BEARER, errorResponses } from '../../src/errors.js'
import { parseItems } from '../../src/events/items.js'

const Query = Type.Object(
  {
    items: Type.Optional(Type.String({ minLength: 1, maxLength: 8192, description: 'Comma-separated item ids' })),
    lastEventId: Type.Optional(Type.String({ description: 'Resume after this position (like the Last-Event-ID header)' })),
    ticket: Type.Optional(Type.String({ description: 'Single-use ticket from POST /v1/sse-tickets' }))
  },
  { additionalProperties: false }
)

/** The caller's score events as Server-Sent Events, resumable with Last-Event-ID. */
export default async function (app: FastifyInstance) {
  app.get<{ Querystring: Static<typeof Query> }>(
    '/events/personalized-rating',
    {
      config: { stream: true },
      schema: {
        summary: 'SSE stream of personalized score events (JWT header, cookie or ticket)',
        querystring: Query,
        produces: ['text/event-stream'],
        response: errorResponses(400, 401, 429, 503),
        security: BEARER
      }
    },
    async (request, reply) => {
      const header = request.headers['last-event-id']
      const { lastEventId } = request.query
      const resume =
        typeof header === 'string' && header !== ''
          ? { id: header, field: 'headers/last-event-id' }
          : lastEventId
            ? { id: lastEventId, field: 'querystring/lastEventId' }
            : null
      await app.sseHub.open(request, reply, { items: parseItems(request.query.items), resume })
      return reply
    }
  )
}
