import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { bearer } from '../../src/auth/authenticate.js'
import { BEARER, errorResponses } from '../../src/errors.js'

const Session = Type.Object({
  expires_in: Type.Optional(Type.Integer({ description: "Seconds the cookie lasts (the token's remaining life); absent for a token without exp" }))
})

/**
 * POST /v1/sse-session puts the caller's JWT (header) into the HttpOnly stream cookie, so a plain
 * EventSource (withCredentials across origins) opens and reconnects by itself; DELETE clears it.
 */
const sseSession: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/v1/sse-session',
    {
      config: { bucket: 'read' },
      schema: {
        summary: 'Sets the stream cookie (HttpOnly, SameSite=Lax, Path=/events), expiring with the token',
        security: BEARER,
        response: { 200: Session, ...errorResponses(401, 429, 503) }
      }
    },
    async (request, reply) => {
      // The auth hook verified this very header: the cookie holds the same token.
      const token = bearer(request) ?? ''
      const expiresIn = app.sessionCookie.set(reply, token, request.principal.exp)
      reply.header('Cache-Control', 'no-store')
      return expiresIn === undefined ? {} : { expires_in: expiresIn }
    }
  )

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

export default sseSession
