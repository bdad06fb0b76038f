import type { FastifyInstance } from 'fastify'
import { Type, type Static } from 'typebox'
import { isEventId } from '../../src/events/event-id.js'
import { BEARER, errorResponses, HttpError } from '../../src/errors.js'
import { parseItems } from '../../src/events/items.js'

const Query = Type.Object(
  {
    items: Type.Optional(Type.String({ minLength: 1, maxLength: 8192, description: 'Comma-separated item ids' })),
    lastEventId: Type.Optional(Type.String({ description: 'Resume after this id (like the Last-Event-ID header)' })),
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
      const lastEventId = (typeof header === 'string' && header !== '' ? header : request.query.lastEventId) || null
      if (lastEventId !== null && !isEventId(lastEventId)) {
        const field = typeof header === 'string' && header !== '' ? 'headers/last-event-id' : 'querystring/lastEventId'
        throw new HttpError(400, `${field} must be an event id (<ms>-<seq>)`)
      }
      await app.sseHub.open(request, reply, { items: parseItems(request.query.items), lastEventId })
      return reply
    }
  )
}
