import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses } from '../../src/errors.js'

const Ticket = Type.Object({
  ticket: Type.String({ description: 'Single use: pass it as ?ticket= to GET /events/personalized-rating' }),
  expires_in: Type.Integer({ description: 'Seconds the ticket stays redeemable' })
})
/** POST /v1/sse-tickets: a browser trades its JWT (header) for a ticket it can put in an EventSource URL. */
const sseTickets: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/v1/sse-tickets',
    {
      config: { bucket: 'read' },
      schema: {
        summary: 'Single-use ticket that opens one SSE stream for the caller (any replica)',
        security: BEARER,
        response: { 201: Ticket, ...errorResponses(401, 429, 503) }
      }
    },
    async (request, reply) => {
      const { ticket, expiresIn } = await app.tickets.issue(request.principal)
      reply.code(201).header('Cache-Control', 'no-store')
      return { ticket, expires_in: expiresIn }
    }
  )
}

export default sseTickets
