import fp from 'fastify-plugin'
import { EventEmitter } from 'node:events'
import { Pool, errors } from 'undici'
import { scoreEventValidator, toRating, toScoreEvent, type Rating, type ScoreEvent } from '../src/domain/rating.js'
import { parseRetryAfter } from '../src/domain/retry-after.js'
import { HttpError } from '../src/errors.js'

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

/** The metric outcome of a failure (SPEC: never the key, never a user). */
function outcomeOf(err: UpstreamError): string {
  if (err.kind === 'limited') return '429'
  if (err.kind === 'status') return err.status !== undefined && err.status >= 500 ? '5xx' : '4xx'
  return err.kind
}

/** A transport failure from undici (or our overall deadline) as an UpstreamError; messages carry no secrets. */
function transportError(err: unknown, timeoutMs: number): UpstreamError {
  const timedOut =
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError ||
    (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError'))
  if (timedOut) return new UpstreamError('timeout', `OpenClaw did not answer within ${timeoutMs} ms`)
  const code = (err as { code?: unknown }).code
  return new UpstreamError('network', `OpenClaw unreachable (${typeof code === 'string' ? code : 'network error'})`)
}

/**
 * The OpenClaw client: one keep-alive connection pool, a deadline per call, the answer
 * validated against the score event schema. Every failure is an UpstreamError of one kind.
 */
export default fp(
  async (app) => {
    const { OPENCLAW_URL, OPENCLAW_API_KEY, OPENCLAW_TIMEOUT_MS, OPENCLAW_CONCURRENCY } = app.config
    if (!OPENCLAW_URL) {
      app.decorate('openclaw', {
        rate: async () => {
          throw new HttpError(503, 'OpenClaw is not configured')
        }
      })
      return
    }

    const base = new URL(OPENCLAW_URL)
    const path = `${base.pathname.replace(/\/$/, '')}/v1/rating`
    const pool = new Pool(base.origin, {
      connections: OPENCLAW_CONCURRENCY,
      headersTimeout: OPENCLAW_TIMEOUT_MS,
      bodyTimeout: OPENCLAW_TIMEOUT_MS,
      connect: { timeout: OPENCLAW_TIMEOUT_MS }
    })
    const headers = { authorization: `Bearer ${OPENCLAW_API_KEY}`, 'content-type': 'application/json' }
    const { forwardAttempts, forwardDuration } = app.metrics

    const call = async (rating: Rating): Promise<ScoreEvent> => {
      let response
      let text: string
      // Overall deadline too: a trickling body could pass the per-read timeouts forever. An
      // EventEmitter signal (undici takes one) costs ~0.5 µs a call, AbortSignal.timeout ~10 µs.
      const deadline = new EventEmitter()
      const timer = setTimeout(() => deadline.emit('abort'), OPENCLAW_TIMEOUT_MS)
      try {
        response = await pool.request({ method: 'POST', path, headers, body: JSON.stringify(toRating(rating)), signal: deadline })
        text = await response.body.text()
      } catch (err) {
        throw transportError(err, OPENCLAW_TIMEOUT_MS)
      } finally {
        clearTimeout(timer)
      }
      const { statusCode } = response
      if (statusCode === 429) {
        const retryAfterMs = parseRetryAfter(response.headers['retry-after'], Date.now())
        throw new UpstreamError('limited', 'OpenClaw is rate limiting', 429, retryAfterMs)
      }
      if (statusCode < 200 || statusCode >= 300) {
        throw new UpstreamError('status', `OpenClaw answered ${statusCode}`, statusCode)
      }
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        throw new UpstreamError('invalid', 'OpenClaw answered a body that is not JSON', statusCode)
      }
      if (!scoreEventValidator.Check(body)) {
        throw new UpstreamError('invalid', 'OpenClaw answered a body that is not a score event', statusCode)
      }
      // A score for another rating would be published to the wrong user's stream.
      if (body.user_id !== rating.user_id || body.item_id !== rating.item_id || body.timestamp !== rating.timestamp) {
        throw new UpstreamError('invalid', 'OpenClaw answered a score event for another rating', statusCode)
      }
      return toScoreEvent(body)
    }

    app.decorate('openclaw', {
      async rate(rating: Rating, source: Source) {
        const stop = forwardDuration.startTimer({ source })
        try {
          const score = await call(rating)
          forwardAttempts.inc({ source, outcome: '2xx' })
          return score
        } catch (err) {
          if (err instanceof UpstreamError) forwardAttempts.inc({ source, outcome: outcomeOf(err) })
          throw err
        } finally {
          stop()
        }
      }
    })

    app.addHook('onClose', async () => {
      await pool.close()
    })
  },
  { name: 'openclaw', dependencies: ['metrics'] }
)
