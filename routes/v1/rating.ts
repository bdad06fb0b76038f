import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { assertMayRateFor } from '../../src/auth/credentials.js'
import { RatingSchema, ScoreEventSchema } from '../../src/rating.js'
import { BEARER, errorResponses } from '../../src/errors.js'
import { REQUEST_STORE_BUDGET_MS } from '../../src/shared/store-budget.js'
import { withTimeout } from '../../src/shared/timeout.js'
import { UpstreamError, upstreamHttpError } from '../../src/upstream/errors.js'

/**
 * POST /v1/rating: the REST proxy. Validate, check the caller may rate for `user_id`, charge the
 * `rest` bucket (a preHandler added from config.bucket, after this route's own), forward, publish.
 */
export default async function ratingRoute(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  app.post(
    '/v1/rating',
    {
      config: { bucket: 'rest' },
      // Before the bucket: a refused caller spends no token and nothing reaches OpenClaw.
      preHandler: async (request) => assertMayRateFor(request.principal, request.body.user_id),
      schema: {
        summary: 'Forward a rating to OpenClaw and answer its personalized score event',
        security: BEARER,
        body: RatingSchema,
        response: { 200: ScoreEventSchema, ...errorResponses(400, 401, 403, 413, 429, 502, 503, 504) }
      }
    },
    async (request) => {
      let score
      try {
        score = await app.openclaw.rate(request.body, 'rest')
      } catch (err) {
        if (err instanceof UpstreamError) {
          request.log.warn({ upstream: err.kind, status: err.status }, 'OpenClaw call failed')
          throw upstreamHttpError(err)
        }
        throw err
      }
      // The one place a REST score reaches the SSE subscribers. The caller gets its score either way
      // (a retry would rate twice at OpenClaw), within the store budget even when Redis hangs.
      try {
        await withTimeout(app.events.publish(score, 'rest'), REQUEST_STORE_BUDGET_MS)
      } catch (err) {
        request.log.error({ err }, 'publishing a REST score event failed')
      }
      return score
    }
  )
}
