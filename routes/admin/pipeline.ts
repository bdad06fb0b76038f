import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses } from '../../src/errors.js'

const Queue = Type.Object({
  depth: Type.Integer({ description: 'Ratings waiting to be forwarded (unacknowledged), all partitions' }),
  partitions: Type.Array(Type.Object({ partition: Type.Integer(), depth: Type.Integer() })),
  dead_letters: Type.Integer({ description: 'Ratings OpenClaw refused for good (GET /admin/dead-letters)' })
})
const Leader = Type.Object({
  holder: Type.Union([Type.String(), Type.Null()], { description: 'The replica reading Moltbook, as this replica last saw the lease' }),
  fence: Type.Union([Type.Integer(), Type.Null()], { description: "The holder's fencing token" }),
  self: Type.String({ description: 'The replica that answered' }),
  leader: Type.Boolean({ description: 'Whether the replica that answered leads' })
})

/** GET /admin/queue and GET /admin/leader: where the feed pipeline stands. */
const pipeline: FastifyPluginAsyncTypebox = async (app) => {
  const common = { tags: ['admin'], security: BEARER }
  app.get(
    '/admin/queue',
    { schema: { ...common, summary: 'Forward queue depth per partition, and dead letters', response: { 200: Queue, ...errorResponses(401, 403) } } },
    async () => {
      const [partitions, deadLetters] = await Promise.all([app.forwarder.depths(), app.deadLetters.size()])
      return { depth: partitions.reduce((sum, p) => sum + p.depth, 0), partitions, dead_letters: deadLetters }
    }
  )
  app.get(
    '/admin/leader',
    { schema: { ...common, summary: 'The replica holding the ingest lease', response: { 200: Leader, ...errorResponses(401, 403) } } },
    async () => app.lease.detail()
  )
}

export default pipeline
