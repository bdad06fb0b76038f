import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses } from '../../src/errors.js'

const Streams = Type.Object({
  total: Type.Integer(),
  agents: Type.Array(Type.Object({ agent_id: Type.String(), streams: Type.Integer() }), { description: 'Most streams first' })
})

/** GET /admin/streams: open SSE streams per agent, summed over every replica. */
const streams: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/admin/streams',
    {
      schema: {
        summary: 'Open SSE streams per agent, over every replica',
        tags: ['admin'],
        security: BEARER,
        response: { 200: Streams, ...errorResponses(401, 403) }
      }
    },
    async () => {
      const counts = await app.sseHub.openPerAgent()
      const agents = [...counts].map(([agent_id, streams]) => ({ agent_id, streams })).sort((a, b) => b.streams - a.streams)
      return { total: agents.reduce((sum, agent) => sum + agent.streams, 0), agents }
    }
  )
}

export default streams
