import { SpanKind } from '@opentelemetry/api'
import { EventEmitter } from 'node:events'
import { Pool, errors } from 'undici'
import type { Metrics } from '../metrics.js'
import { clampDelay } from '../shared/clock.js'
import { scoreEventValidator, toRating, toScoreEvent, type Rating, type ScoreEvent } from '../rating.js'
import { activeTraceparent, traced } from '../tracing/spans.js'
import { outcomeOf, UpstreamError, type Source } from './errors.js'
import { parseRetryAfter } from './retry-after.js'

export interface OpenClawOptions {
  url: string
  apiKey: string
  timeoutMs: number
  /** Connections (and so concurrent calls) to OpenClaw. */
  connections: number
  /** Longest Retry-After honoured (FORWARD_RETRY_AFTER_MAX_MS): an absurd one must not stall the feed for days. */
  retryAfterMaxMs: number
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
export class OpenClawClient {
  private readonly pool: Pool
  private readonly path: string
  private readonly headers: Record<string, string>

  constructor(
    private readonly options: OpenClawOptions,
    private readonly metrics: Pick<Metrics, 'forwardAttempts' | 'forwardDuration'>
  ) {
    const base = new URL(options.url)
    this.path = `${base.pathname.replace(/\/$/, '')}/v1/rating`
    this.pool = new Pool(base.origin, {
      connections: options.connections,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: { timeout: options.timeoutMs }
    })
    this.headers = { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' }
  }

  /** POST the rating; resolves to its validated score event or throws UpstreamError. */
  async rate(rating: Rating, source: Source): Promise<ScoreEvent> {
    const stop = this.metrics.forwardDuration.startTimer({ source })
    try {
      const score = await traced('openclaw.rate', () => this.call(rating), { kind: SpanKind.CLIENT })
      this.metrics.forwardAttempts.inc({ source, outcome: '2xx' })
      return score
    } catch (err) {
      if (err instanceof UpstreamError) this.metrics.forwardAttempts.inc({ source, outcome: outcomeOf(err) })
      throw err
    } finally {
      stop()
    }
  }

  async close(): Promise<void> {
    await this.pool.close()
  }

  private async call(rating: Rating): Promise<ScoreEvent> {
    const { timeoutMs } = this.options
    let response
    let text: string
    // Overall deadline too: a trickling body could pass the per-read timeouts forever. An
    // EventEmitter signal (undici takes one) costs ~0.5 µs a call, AbortSignal.timeout ~10 µs.
    const deadline = new EventEmitter()
    const timer = setTimeout(() => deadline.emit('abort'), clampDelay(timeoutMs))
    try {
      response = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: withTraceparent(this.headers),
        body: JSON.stringify(toRating(rating)),
        signal: deadline
      })
      text = await response.body.text()
    } catch (err) {
      throw transportError(err, timeoutMs)
    } finally {
      clearTimeout(timer)
    }
    const { statusCode } = response
    if (statusCode === 429) {
      const retryAfterMs = Math.min(parseRetryAfter(response.headers['retry-after'], Date.now()), this.options.retryAfterMaxMs)
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
}

/** OpenClaw's own tracing joins the rating's trace (W3C `traceparent`), when tracing is on. */
function withTraceparent(headers: Record<string, string>): Record<string, string> {
  const traceparent = activeTraceparent()
  return traceparent ? { ...headers, traceparent } : headers
}
