import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { UpstreamError } from '../../plugins/openclaw.js'
import { RatingSchema, ScoreEventSchema } from '../../src/domain/rating.js'
import { retryAfterSeconds } from '../../src/domain/token-bucket.js'
import { ErrorResponse, HttpError } from '../../src/errors.js'

/** What the caller sees when OpenClaw fails: 502 / 504, or 429 with OpenClaw's own Retry-After. */
export function upstreamHttpError(err: UpstreamError): HttpError {
  if (err.kind === 'timeout') return new HttpError(504, 'OpenClaw did not answer in time')
  if (err.kind === 'limited') {
    const seconds = retryAfterSeconds(err.retryAfterMs ?? 1000)
    return new HttpError(429, 'OpenClaw is rate limiting, retry later', { 'retry-after': String(seconds) })
  }
  return new HttpError(502, `OpenClaw failed: ${err.message}`)
}

/** POST /v1/rating: the REST proxy (SPEC 3). Validate, charge the bucket (preHandler), forward, publish. */
export default async function ratingRoute(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  app.post(
    '/v1/rating',
    {
      config: { bucket: 'rest' },
      schema: {
        summary: 'Forward a rating to OpenClaw and answer its personalized score event',
        security: [{ bearer: [] }],
        body: RatingSchema,
        response: {
          200: ScoreEventSchema,
          400: ErrorResponse,
          401: ErrorResponse,
          413: ErrorResponse,
          429: ErrorResponse,
          502: ErrorResponse,
          503: ErrorResponse,
          504: ErrorResponse
        }
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
      // The one place a REST score reaches the SSE subscribers; the caller has its answer either way.
      try {
        await app.events.publish(score, 'rest')
      } catch (err) {
        request.log.error({ err }, 'publishing a REST score event failed')
      }
      return score
    }
  )
}
