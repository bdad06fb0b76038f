import { HttpError } from '../errors.js'
import { retryAfterSeconds } from '../limits/token-bucket.js'

/** Who asked for a score: the feed pipeline or a REST caller (a metric label). */
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

/** The outcome label of a failed call: never the key, never a user. */
export function outcomeOf(err: UpstreamError): string {
  if (err.kind === 'limited') return '429'
  if (err.kind === 'status') return err.status !== undefined && err.status >= 500 ? '5xx' : '4xx'
  return err.kind
}

/**
 * Why a retry would get the same answer, or null when it may not: a 4xx other than 429 (429 is
 * `limited`), or a 2xx whose body is not the score event of the rating sent.
 */
export function refusedForGood(err: UpstreamError): 'rejected' | 'invalid_response' | null {
  if (err.kind === 'invalid') return 'invalid_response'
  if (err.kind === 'status' && err.status !== undefined && err.status >= 400 && err.status < 500) return 'rejected'
  return null
}

/** What a REST caller sees when OpenClaw fails: 502 / 504, or 429 with OpenClaw's own Retry-After. */
export function upstreamHttpError(err: UpstreamError): HttpError {
  if (err.kind === 'timeout') return new HttpError(504, 'OpenClaw did not answer in time')
  if (err.kind === 'limited') {
    const seconds = retryAfterSeconds(err.retryAfterMs ?? 1000)
    return new HttpError(429, 'OpenClaw is rate limiting, retry later', { 'retry-after': String(seconds) })
  }
  return new HttpError(502, `OpenClaw failed: ${err.message}`)
}
