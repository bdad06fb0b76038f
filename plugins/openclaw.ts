import fp from 'fastify-plugin'
import { HttpError } from '../src/errors.js'
import type { Rating, ScoreEvent } from '../src/rating.js'
import type { Source } from '../src/upstream/errors.js'
import { OpenClawClient } from '../src/upstream/openclaw-client.js'

declare module 'fastify' {
  interface FastifyInstance {
    openclaw: {
      /** POST the rating to OpenClaw; resolves to its validated score event or throws UpstreamError. */
      rate(rating: Rating, source: Source): Promise<ScoreEvent>
    }
  }
}

/** The OpenClaw client (OPENCLAW_URL); without it every call is a 503. */
export default fp(
  async (app) => {
    const { OPENCLAW_URL, OPENCLAW_API_KEY, OPENCLAW_TIMEOUT_MS, OPENCLAW_CONCURRENCY, FORWARD_RETRY_AFTER_MAX_MS } = app.config
    if (!OPENCLAW_URL || !OPENCLAW_API_KEY) {
      app.decorate('openclaw', {
        rate: () => Promise.reject(new HttpError(503, 'OpenClaw is not configured'))
      })
      return
    }
    const client = new OpenClawClient(
      {
        url: OPENCLAW_URL,
        apiKey: OPENCLAW_API_KEY,
        timeoutMs: OPENCLAW_TIMEOUT_MS,
        connections: OPENCLAW_CONCURRENCY,
        retryAfterMaxMs: FORWARD_RETRY_AFTER_MAX_MS
      },
      app.metrics
    )
    app.decorate('openclaw', client)
    app.addHook('onClose', () => client.close())
  },
  { name: 'openclaw', dependencies: ['metrics'] }
)
