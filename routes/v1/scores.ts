import type { FastifyInstance } from 'fastify'
import { createHash } from 'node:crypto'
import { Type, type Static } from 'typebox'
import { ID_MAX_LENGTH, ScoreEventSchema } from '../../src/rating.js'
import { BEARER, errorResponses, HttpError } from '../../src/errors.js'
import { parseItems } from '../../src/events/items.js'

/** Items one call may ask for: a page's worth of cards. */
const MAX_ITEMS = 100

const Query = Type.Object(
  { items: Type.String({ minLength: 1, maxLength: 16384, description: `Comma-separated item ids (1 to ${MAX_ITEMS})` }) },
  { additionalProperties: false }
)
const Scores = Type.Object({ scores: Type.Array(ScoreEventSchema) })
/** The caller's latest score per listed item, so a page paints before its stream opens. */
export default async function (app: FastifyInstance) {
  app.get<{ Querystring: Static<typeof Query> }>(
    '/v1/scores',
    {
      config: { bucket: 'read' },
      schema: {
        summary: "The caller's latest score event per listed item",
        querystring: Query,
        response: { 200: Scores, 304: Type.Null(), ...errorResponses(400, 401, 429, 503) },
        security: BEARER
      }
    },
    async (request, reply) => {
      const items = parseItems(request.query.items)
      if (!items || items.length > MAX_ITEMS || items.some((item) => item.length > ID_MAX_LENGTH)) {
        throw new HttpError(400, `querystring/items must list 1 to ${MAX_ITEMS} item ids of at most ${ID_MAX_LENGTH} characters`)
      }
      const body = { scores: await app.events.latest(request.principal.sub, [...new Set(items)]) }
      const etag = `"${createHash('sha256').update(JSON.stringify(body)).digest('base64url').slice(0, 27)}"`
      // Added to the Vary that CORS may have set (Origin), not in its place.
      const vary = [reply.getHeader('Vary'), 'Authorization, Cookie'].filter(Boolean).join(', ')
      reply.header('ETag', etag).header('Cache-Control', 'private').header('Vary', vary)
      const match = request.headers['if-none-match']
      if (match && match.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)) {
        return reply.code(304).send()
      }
      return body
    }
  )
}
