import fp from 'fastify-plugin'
import type { Rating, ScoreEvent } from '../src/domain/rating.js'

export type Source = 'feed' | 'rest'

/** Why a call to OpenClaw did not produce a score event. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: 'status' | 'limited' | 'timeout' | 'network' | 'invalid',
    message: string,
    readonly status?: number,
    /** On `limited` (429): OpenClaw's Retry-After, in milliseconds. */
    readonly retryAfterMs?: number
  ) {
    super(message)
    this.name = 'UpstreamError'
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    openclaw: {
      /** POST the rating to OpenClaw; resolves to its validated score event or throws UpstreamError. */
      rate(rating: Rating, source: Source): Promise<ScoreEvent>
    }
  }
}

// PLACEHOLDER: replaced by the OpenClaw work.
export default fp(async () => {}, { name: 'openclaw' })
