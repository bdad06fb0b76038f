import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses } from '../../src/errors.js'
import { Id } from '../../src/rating.js'

const Body = Type.Object(
  { user_id: Type.Optional(Id), agent_id: Type.Optional(Id) },
  { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'Exactly one of user_id, agent_id' }
)
const Revoked = Type.Object({
  kind: Type.Enum(['user', 'agent']),
  id: Type.String(),
  revoked_at: Type.Integer({ description: "Unix ms: tokens issued before it are refused (those of its own second too: iat has whole seconds)" })
})

/** POST /admin/revoke: ends a user's or an agent's streams on every replica and refuses its older tokens. */
const revoke: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/admin/revoke',
    {
      schema: {
        summary: "Revoke a user or an agent: close its open streams on every replica, refuse its tokens issued before now",
        tags: ['admin'],
        security: BEARER,
        body: Body,
        response: { 200: Revoked, ...errorResponses(400, 401, 403, 503) }
      }
    },
    async (request) => {
      const { user_id: userId, agent_id: agentId } = request.body
      const [kind, id] = userId !== undefined ? (['user', userId] as const) : (['agent', agentId ?? ''] as const)
      return { kind, id, revoked_at: await app.revocations.revoke(kind, id) }
    }
  )
}

export default revoke
