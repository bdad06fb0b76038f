import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses, HttpError } from '../../src/errors.js'
import { FeedRatingSchema } from '../../src/rating.js'

const Params = Type.Object({ id: Type.String({ pattern: '^\\d{1,15}-\\d{1,15}$', description: 'A dead letter id' }) })
// Query strings are not coerced (v1 is strict about types): `limit` is digits, read as a number.
const Query = Type.Object(
  { limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,2}|1000)$', description: 'How many, 1 to 1000 (default 100)' })) },
  { additionalProperties: false }
)
const DeadLetter = Type.Object({
  id: Type.String(),
  rating: FeedRatingSchema,
  reason: Type.Enum(['rejected', 'invalid_response'], { description: 'rejected: a 4xx other than 429; invalid_response: a 2xx that is not the score event' }),
  status: Type.Union([Type.Integer(), Type.Null()], { description: "OpenClaw's HTTP status" }),
  detail: Type.String(),
  attempts: Type.Integer({ description: 'Calls to OpenClaw' }),
  at: Type.Integer({ description: 'When it was set aside (Unix ms)' })
})
const List = Type.Object({ total: Type.Integer(), dead_letters: Type.Array(DeadLetter, { description: 'Oldest first' }) })

const unknown = (id: string) => new HttpError(404, `no dead letter ${id}`)

/** Ratings OpenClaw refused for good: list them, put one back in the queue once, or drop it. */
const deadLetters: FastifyPluginAsyncTypebox = async (app) => {
  const common = { tags: ['admin'], security: BEARER }
  app.get(
    '/admin/dead-letters',
    {
      schema: { ...common, summary: 'Dead-lettered ratings, oldest first', querystring: Query, response: { 200: List, ...errorResponses(400, 401, 403) } }
    },
    async (request) => {
      const [total, letters] = await Promise.all([app.deadLetters.size(), app.deadLetters.list(Number(request.query.limit ?? 100))])
      return { total, dead_letters: letters }
    }
  )
  app.post(
    '/admin/dead-letters/:id/retry',
    {
      schema: {
        ...common,
        summary: 'Put a dead-lettered rating back into the forward queue, once',
        params: Params,
        response: { 200: Type.Object({ retried: Type.String() }), ...errorResponses(400, 401, 403, 404) }
      }
    },
    async (request) => {
      if (!(await app.deadLetters.retry(request.params.id))) throw unknown(request.params.id)
      return { retried: request.params.id }
    }
  )
  app.delete(
    '/admin/dead-letters/:id',
    {
      schema: { ...common, summary: 'Drop a dead-lettered rating', params: Params, response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404) } }
    },
    async (request, reply) => {
      if (!(await app.deadLetters.drop(request.params.id))) throw unknown(request.params.id)
      return reply.code(204).send(null)
    }
  )
}

export default deadLetters
