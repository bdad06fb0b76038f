import cookie from '@fastify/cookie'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from 'typebox'
import { bearer } from '../../src/auth/authenticate.js'
import { BEARER, errorResponses } from '../../src/errors.js'

/**
 * How a browser gets into its stream without a JWT in the URL: a single-use ticket for one
 * connection (POST /v1/sse-tickets), or the HttpOnly stream cookie that a plain EventSource
 * sends on every reconnect (POST / DELETE /v1/sse-session). Both trade the Bearer header.
 */
const Ticket = Type.Object({
  ticket: Type.String({ description: 'Single use: pass it as ?ticket= to GET /events/personalized-rating' }),
  expires_in: Type.Integer({ description: 'Seconds the ticket stays redeemable' })
})
const Session = Type.Object({
  expires_in: Type.Optional(Type.Integer({ description: "Seconds the cookie lasts (the token's remaining life); absent for a token without exp" }))
})

/** A Bearer route charged to the caller's `read` bucket. */
const withBearer = (summary: string, status: number, body: TSchema) => ({
  config: { bucket: 'read' as const },
  schema: { summary, security: BEARER, response: { [status]: body, ...errorResponses(401, 429, 503) } }
})

const streamAccess: FastifyPluginAsyncTypebox = async (app) => {
  // Only these routes (and the demo login) set cookies: only their answers pass through the cookie writer.
  await app.register(cookie, { hook: false })
  app.post('/v1/sse-tickets', withBearer('Single-use ticket that opens one SSE stream for the caller (any replica)', 201, Ticket), async (request, reply) => {
    const { ticket, expiresIn } = await app.tickets.issue(request.principal)
    reply.code(201).header('Cache-Control', 'no-store')
    return { ticket, expires_in: expiresIn }
  })

  app.post('/v1/sse-session', withBearer('Sets the stream cookie (HttpOnly, SameSite=Lax, Path=/events), expiring with the token', 200, Session), async (request, reply) => {
    // The auth hook verified this very header: the cookie holds the same token.
    const expiresIn = app.sessionCookie.set(reply, bearer(request) ?? '', request.principal.exp)
    reply.header('Cache-Control', 'no-store')
    return expiresIn === undefined ? {} : { expires_in: expiresIn }
  })

  app.delete(
    '/v1/sse-session',
    {
      schema: {
        summary: 'Clears the stream cookie; open streams end when their token expires',
        security: BEARER,
        response: { 204: Type.Null(), ...errorResponses(401, 503) }
      }
    },
    async (_request, reply) => {
      app.sessionCookie.clear(reply)
      return reply.code(204).send(null)
    }
  )
}

export default streamAccess
